"""kseg.losses: hand-worked values, numpy references, void, gradients, specs, saving."""

import copy
import json
import math
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.errors import KsegError
from kseg.losses import LOSS_NAMES, SegmentationLoss, build_loss, parse_loss

K = 4  # classes in the random batches


# ---------------------------------------------------------------- numpy references
# Written from the papers' definitions, independently of kseg.losses.terms: void pixels
# are filtered out with boolean indexing, classes looped over, float64 throughout.


def _log_softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _kept(logits, y, ignore, k, sw=None, region=False):
    """Flat (labels, log-probs, sample weights) of the non-void pixels (region: sw > 0 too)."""
    t = np.asarray(y).reshape(-1).astype(np.int64)
    keep = (t >= 0) & (t < k) & ((t != ignore) if ignore is not None else True)
    s = np.ones(t.shape) if sw is None else np.broadcast_to(np.asarray(sw, np.float64), y.shape).reshape(-1)
    if region:
        keep &= s > 0
    return t[keep], _log_softmax(np.asarray(logits).reshape(-1, k))[keep], s[keep]


def np_pixel_loss(kind, logits, y, k, ignore, cw=None, sw=None, gamma=2.0):
    t, logp, s = _kept(logits, y, ignore, k, sw)
    lp = logp[np.arange(t.size), t]
    per = -lp if kind == "ce" else -((1 - np.exp(lp)) ** gamma) * lp
    w = np.ones(t.size) if cw is None else np.asarray(cw, np.float64)[t]
    return float((w * s * per).sum() / w.sum()) if w.sum() > 0 else 0.0


def _class_mean(values, cw):
    """Weighted mean over the classes with a value (present classes)."""
    w = {c: (1.0 if cw is None else cw[c]) for c in values}
    total = sum(w.values())
    return sum(w[c] * v for c, v in values.items()) / total if total > 0 else 0.0


def np_region_loss(kind, logits, y, k, ignore, cw=None, sw=None, alpha=0.5, beta=0.5, smooth=1.0):
    t, logp, _ = _kept(logits, y, ignore, k, sw, region=True)
    p = np.exp(logp)
    values = {}
    for c in range(k):
        g = (t == c).astype(np.float64)
        if g.sum() == 0:
            continue  # absent class: left out of the mean
        pc = p[:, c]
        inter, fp, fn = (pc * g).sum(), (pc * (1 - g)).sum(), ((1 - pc) * g).sum()
        if kind == "dice":
            values[c] = 1 - (2 * inter + smooth) / (pc.sum() + g.sum() + smooth)
        elif kind == "tversky":
            values[c] = 1 - (inter + smooth / 2) / (inter + alpha * fp + beta * fn + smooth / 2)
        else:
            values[c] = _np_lovasz_class(g, pc)
    return _class_mean(values, cw)


def _np_lovasz_class(fg, prob):
    """Berman et al.'s reference lovasz_grad on the filtered pixels of one class."""
    errors = np.abs(fg - prob)
    perm = np.argsort(-errors, kind="stable")
    gt_sorted = fg[perm]
    gts = gt_sorted.sum()
    jaccard = 1.0 - (gts - np.cumsum(gt_sorted)) / (gts + np.cumsum(1 - gt_sorted))
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return float(errors[perm] @ jaccard)


def np_loss(name, logits, y, k, ignore, cw=None, sw=None):
    if name in ("ce", "focal"):
        return np_pixel_loss(name, logits, y, k, ignore, cw, sw)
    return np_region_loss(name, logits, y, k, ignore, cw, sw)


def random_batch(seed, ignore=K, k=K, void_fraction=0.2):
    """(logits (2, 8, 8, k) float32, labels (2, 8, 8) uint8 with some void)."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(2, 8, 8, k)) * 3).astype(np.float32)
    y = rng.integers(0, k, (2, 8, 8))
    if ignore is not None:
        y = np.where(rng.random((2, 8, 8)) < void_fraction, ignore, y)
    return logits, y.astype(np.uint8)


def value(loss, y, logits, sample_weight=None):
    return float(loss(y, logits, sample_weight=sample_weight))


# ---------------------------------------------------------------- by hand

LN2 = math.log(2)
# One image of three pixels, K = 2, void = 2:
#   pixel 0: logits (0, 0)     -> p = (1/2, 1/2), label 0
#   pixel 1: logits (ln 3, 0)  -> p = (3/4, 1/4), label 1
#   pixel 2: logits (5, -3), label 2 = void, in no sum
HAND_Y = np.array([[[0, 1, 2]]], np.uint8)
HAND_X = np.array([[[[0, 0], [math.log(3), 0], [5, -3]]]], np.float32)


@pytest.mark.parametrize("spec, options, expected", [
    # ce: (-ln 1/2 - ln 1/4) / 2 = (ln2 + 2 ln2) / 2 = 1.5 ln2
    ("ce", {}, 1.5 * LN2),
    # weighted ce, w = (1, 3): (1 * ln2 + 3 * 2 ln2) / (1 + 3) = 7/4 ln2
    ("ce", {"class_weights": [1, 3]}, 7 / 4 * LN2),
    # focal, gamma 2: ((1/2)^2 ln2 + (3/4)^2 2 ln2) / 2 = (1/4 + 9/8) / 2 ln2 = 11/16 ln2
    ("focal", {}, 11 / 16 * LN2),
    # dice, s = 0. class 0: I = 1/2, P = 1/2 + 3/4, G = 1 -> 1 - 1/(9/4) = 5/9
    #              class 1: I = 1/4, P = 1/2 + 1/4, G = 1 -> 1 - (1/2)/(7/4) = 5/7
    # mean (5/9 + 5/7) / 2 = 40/63
    ("dice", {"smooth": 0}, 40 / 63),
    # dice, s = 1: 1 - 2/(13/4) = 5/13 and 1 - (3/2)/(11/4) = 5/11, mean 60/143
    ("dice", {}, 60 / 143),
    # dice, s = 0, w = (1, 3): (5/9 + 3 * 5/7) / 4 = (35 + 135) / 252 = 85/126
    ("dice", {"smooth": 0, "class_weights": [1, 3]}, 85 / 126),
    # tversky alpha 1, beta 0, s = 0: 1 - I / (I + FP).
    # class 0: I = 1/2, FP = 3/4 -> 1 - 2/5 = 3/5; class 1: I = 1/4, FP = 1/2 -> 1 - 1/3 = 2/3
    # mean (3/5 + 2/3) / 2 = 19/30
    ("tversky", {"smooth": 0, "tversky_alpha": 1, "tversky_beta": 0}, 19 / 30),
    # lovasz. class 0: fg = (1, 0), errors |fg - p0| = (1/2, 3/4); sorted (3/4, 1/2) with
    #   fg (0, 1): gts 1, intersection (1, 0), union (2, 2), jaccard (1/2, 1), g = (1/2, 1/2)
    #   -> 3/4 * 1/2 + 1/2 * 1/2 = 5/8.
    # class 1: fg = (0, 1), errors (1/2, 3/4); sorted (3/4, 1/2) with fg (1, 0):
    #   intersection (0, 0), union (1, 2), jaccard (1, 1), g = (1, 0) -> 3/4.
    # mean (5/8 + 3/4) / 2 = 11/16
    ("lovasz", {}, 11 / 16),
    # a weighted sum: ce + 0.5 lovasz = 1.5 ln2 + 11/32
    ("ce:1,lovasz:0.5", {}, 1.5 * LN2 + 11 / 32),
])
def test_by_hand(spec, options, expected):
    options = dict(options)
    cw = options.pop("class_weights", None)
    loss = build_loss(spec, 2, ignore_index=2, class_weights=cw, **options)
    assert value(loss, HAND_Y, HAND_X) == pytest.approx(expected, rel=1e-6)


def test_dice_leaves_absent_classes_out():
    # Same pixels with K = 3: class 2 gets a logit of -inf-ish (-100), so probabilities
    # are those of the hand example; class 2 is absent, so dice is still 40/63 (smooth 0),
    # not (5/9 + 5/7 + 0) / 3 or with a smoothed absent term.
    x = np.concatenate([HAND_X, np.full((1, 1, 3, 1), -100, np.float32)], axis=-1)
    y = np.where(HAND_Y == 2, 9, HAND_Y).astype(np.uint8)  # void 9 >= K
    assert value(build_loss("dice", 3, 9, smooth=0), y, x) == pytest.approx(40 / 63, rel=1e-6)


# ---------------------------------------------------------------- numpy references


@pytest.mark.parametrize("ignore", [K, 255, 1, None])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_matches_numpy_reference(name, ignore):
    for seed in range(3):
        logits, y = random_batch(seed, ignore)
        cw = np.random.default_rng(100 + seed).uniform(0.2, 3, K).tolist()
        for weights in (None, cw):
            got = value(build_loss(name, K, ignore, weights), y, logits)
            assert got == pytest.approx(np_loss(name, logits, y, K, ignore, weights), rel=1e-5, abs=1e-6)


def _binned_lovasz(logits, y, bins):
    from kseg.losses.lovasz import lovasz_softmax
    from kseg.losses.terms import prepare

    return float(lovasz_softmax(prepare(y, logits, logits.shape[-1], None), bins=bins))


def test_lovasz_bins_stay_within_their_bound_of_the_sorted_loss():
    # K = 2, 16 pixels whose errors all lie inside one bin, labels alternating along the
    # errors. The binned loss then differs from the sorted one, by no more than the 1/BINS
    # the docstring promises; with bins 64x finer every pixel has a bin of its own and it
    # is exact.
    from kseg.losses.lovasz import BINS

    b = 1000  # bin 1000 holds errors in (1 - 1001/BINS, 1 - 1000/BINS]
    errors = 1 - (b + 1) / BINS + (0.1 + 0.8 * np.arange(16) / 15) / BINS
    y = np.tile([0, 1], 8)
    p1 = np.where(y == 0, errors, 1 - errors)  # class-0 error is p1 on label 0, p0 on label 1
    logits = np.stack([np.zeros(16), np.log(p1 / (1 - p1))], -1).reshape(1, 1, 16, 2).astype(np.float32)
    labels = y.reshape(1, 1, 16).astype(np.uint8)
    exact = np_region_loss("lovasz", logits, labels, 2, None)
    binned = _binned_lovasz(logits, labels, BINS)
    assert 1e-6 < abs(binned - exact) <= 1 / BINS
    assert _binned_lovasz(logits, labels, 64 * BINS) == pytest.approx(exact, abs=1e-6)


def test_lovasz_gradient_is_the_block_mean_of_the_sorted_gradient():
    # K = 3; three pixels whose class-0 errors share one bin: fg (label 0), bg (label 2),
    # fg, in decreasing order of error. Sorted, class 0 (2 fg pixels) has jaccard 1/2,
    # 2/3, 1, so g = (1/2, 1/6, 1/3); binned, each pixel gets the block mean 1/3. The loss
    # averages classes 0 and 2 (class 1 is absent), and the class-0 error is 1 - p0 on fg
    # pixels and p0 on bg, so d loss / d p0 = (-1/6, +1/6, -1/6).
    import tensorflow as tf

    from kseg.losses.lovasz import BINS, lovasz_softmax
    from kseg.losses.terms import Batch

    b = 1000
    errors = (BINS - b - 1 + np.array([0.7, 0.5, 0.3])) / BINS
    labels = np.array([0, 2, 0])
    onehot = np.eye(3, dtype=np.float32)[labels]
    p0 = np.where(labels == 0, 1 - errors, errors)
    probs = tf.Variable(np.stack([p0, np.full(3, 0.2), 1 - p0 - 0.2], -1), dtype=tf.float32)
    ones = tf.ones(3)
    with tf.GradientTape() as tape:
        batch = Batch(labels=tf.constant(labels), log_probs=None, probs=probs, onehot=tf.constant(onehot),
                      valid=ones, scale=ones, mask=ones)
        loss = lovasz_softmax(batch)
    grad = tape.gradient(loss, probs).numpy()
    assert grad[:, 0] == pytest.approx([-1 / 6, 1 / 6, -1 / 6], abs=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_sample_weights_match_numpy(name):
    # ce/focal: weights scale pixels (not in the normaliser); region terms: weight > 0 masks.
    logits, y = random_batch(7)
    sw = np.random.default_rng(8).uniform(0, 2, y.shape)
    sw[sw < 0.5] = 0
    for cw in (None, [0.5, 1, 2, 1.5]):
        got = value(build_loss(name, K, K, cw), y, logits, sample_weight=sw)
        assert got == pytest.approx(np_loss(name, logits, y, K, K, cw, sw), rel=1e-5, abs=1e-6)
    # A per-image weight (B,) is the same as that weight on every pixel of the image.
    per_image = np.array([0.5, 2.0])
    loss = build_loss(name, K, K)
    assert value(loss, y, logits, per_image) == pytest.approx(
        value(loss, y, logits, np.broadcast_to(per_image[:, None, None], y.shape)), rel=1e-6)


def test_ce_matches_keras_sparse_categorical_crossentropy():
    logits, y = random_batch(3)
    sw = np.random.default_rng(4).uniform(0, 2, y.shape).astype(np.float32)
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=K)
    ours = build_loss("ce", K, K)
    assert value(ours, y, logits) == pytest.approx(float(keras_ce(y, logits)), rel=1e-5)
    assert value(ours, y, logits, sw) == pytest.approx(float(keras_ce(y, logits, sample_weight=sw)), rel=1e-5)


def test_focal_with_gamma_0_is_cross_entropy():
    logits, y = random_batch(5)
    cw = [1, 2, 3, 4]
    assert value(build_loss("focal", K, K, cw, focal_gamma=0), y, logits) == pytest.approx(
        value(build_loss("ce", K, K, cw), y, logits), rel=1e-6)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_tversky_half_half_is_dice(smooth):
    for seed in range(3):
        logits, y = random_batch(seed)
        cw = [1, 0.5, 2, 1]
        dice = value(build_loss("dice", K, K, cw, smooth=smooth), y, logits)
        tversky = value(build_loss("tversky", K, K, cw, smooth=smooth, tversky_alpha=0.5, tversky_beta=0.5),
                        y, logits)
        assert tversky == pytest.approx(dice, rel=1e-6)
    # and other alpha/beta are not Dice (the test would pass trivially otherwise)
    skewed = value(build_loss("tversky", K, K, tversky_alpha=0.9, tversky_beta=0.1), y, logits)
    assert skewed != pytest.approx(value(build_loss("dice", K, K), y, logits), rel=1e-3)


def test_weighted_sum_is_sum_of_terms():
    logits, y = random_batch(11)
    cw = [1, 2, 0.5, 1]
    weights = {"ce": 1.0, "dice": 2.0, "lovasz": 0.5, "focal": 0.3, "tversky": 0.7}
    spec = ",".join(f"{n}:{w}" for n, w in weights.items())
    parts = sum(w * value(build_loss(n, K, K, cw), y, logits) for n, w in weights.items())
    assert value(build_loss(spec, K, K, cw), y, logits) == pytest.approx(parts, rel=1e-6)
    assert value(build_loss("ce+dice", K, K), y, logits) == pytest.approx(
        value(build_loss("ce", K, K), y, logits) + value(build_loss("dice", K, K), y, logits), rel=1e-6)


# ---------------------------------------------------------------- void


@pytest.mark.parametrize("spec", [*LOSS_NAMES, "ce:1,dice:1,lovasz:1,focal:1,tversky:1"])
def test_void_logits_do_not_matter(spec):
    logits, y = random_batch(2, ignore=255, void_fraction=0.3)
    y[0, 0, :3] = 7  # labels outside [0, K) are dropped like void
    void = (y == 255) | (y >= K)
    other = logits.copy()
    other[void] = np.random.default_rng(3).normal(size=(int(void.sum()), K)) * 20
    loss = build_loss(spec, K, 255, [1, 2, 3, 4])
    assert value(loss, y, other) == pytest.approx(value(loss, y, logits), rel=1e-6)
    # ...while changing one non-void pixel does change it
    other[~void] += np.random.default_rng(4).normal(size=(int((~void).sum()), K))
    assert value(loss, y, other) != pytest.approx(value(loss, y, logits), rel=1e-6)


# ---------------------------------------------------------------- gradients


def _loss_and_grad(loss, y, logits):
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        out = loss(tf.constant(y), x)
    return float(out), tape.gradient(out, x).numpy()


@pytest.mark.parametrize("spec", [*LOSS_NAMES, "ce+dice+lovasz+focal+tversky"])
def test_gradients_finite_with_absent_class_and_all_void(spec):
    logits, y = random_batch(6)
    y = np.where(y == 3, 0, y).astype(np.uint8)  # class 3 absent from the batch
    loss = build_loss(spec, K, K, [1, 1, 2, 5], focal_gamma=0.5, smooth=0)
    out, grad = _loss_and_grad(loss, y, logits)
    assert math.isfinite(out) and np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    assert np.all(grad[y == K] == 0)  # void pixels get no gradient
    # every pixel void: loss 0, gradient 0
    out, grad = _loss_and_grad(loss, np.full_like(y, K), logits)
    assert out == 0 and np.all(grad == 0)


def test_gradients_finite_at_saturated_probabilities():
    # p_t = 1 exactly in float32: focal with gamma < 1 and the Dice ratios stay finite.
    logits, y = random_batch(9, k=2)
    logits = np.where(np.eye(2, dtype=bool)[np.minimum(y, 1)], 200.0, -200.0).astype(np.float32)
    for spec in ("focal", "dice", "tversky", "lovasz", "ce"):
        out, grad = _loss_and_grad(build_loss(spec, 2, K, focal_gamma=0.3, smooth=0), y, logits)
        assert math.isfinite(out) and np.all(np.isfinite(grad)), spec


def test_mixed_bfloat16_logits_are_cast_to_float32():
    logits, y = random_batch(12)
    loss = build_loss("ce+dice+lovasz", K, K)
    bf16 = tf.cast(logits, tf.bfloat16)
    expected = value(loss, y, tf.cast(bf16, tf.float32).numpy())
    out = loss(y, bf16)
    assert out.dtype == tf.float32 and float(out) == pytest.approx(expected, rel=1e-6)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, keras.layers.Conv2D(K, 1)(inputs))
        model.compile(optimizer="sgd", loss=loss)
        history = model.fit(np.ones((2, 8, 8, 3), np.float32), y, epochs=1, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert math.isfinite(history.history["loss"][0])


# ---------------------------------------------------------------- specs and arguments


@pytest.mark.parametrize("spec, expected", [
    ("ce", (("ce", 1.0),)),
    ("ce+dice", (("ce", 1.0), ("dice", 1.0))),
    ("ce:1,lovasz:0.5", (("ce", 1.0), ("lovasz", 0.5))),
    (" Focal : 2 + tversky,LOVASZ:1e-1 ", (("focal", 2.0), ("tversky", 1.0), ("lovasz", 0.1))),
])
def test_parse_loss_good(spec, expected):
    assert parse_loss(spec) == expected


@pytest.mark.parametrize("spec, fragments", [
    ("", ["Empty loss spec", "ce, dice, lovasz, focal, tversky"]),
    ("   ", ["Empty loss spec"]),
    ("xent", ["Unknown loss 'xent'", "ce, dice, lovasz, focal, tversky"]),
    ("ce+diec:2", ["Unknown loss 'diec'", "'ce+diec:2'"]),
    ("ce+", ["Empty term", "'ce+'"]),
    ("ce,,dice", ["Empty term"]),
    ("ce:abc", ["Bad weight 'abc'", "'ce'"]),
    ("ce:-1", ["Bad weight '-1'"]),
    ("ce:0", ["Bad weight '0'"]),
    ("ce:nan", ["Bad weight 'nan'"]),
    ("ce:inf", ["Bad weight 'inf'"]),
    ("ce:", ["Bad weight ''"]),
    ("ce:1:2", ["Bad weight '1:2'"]),
    ("ce+ce:2", ["'ce' appears twice"]),
    (3, ["loss spec is a string", "3"]),
])
def test_parse_loss_bad(spec, fragments):
    with pytest.raises(KsegError) as err:
        parse_loss(spec)
    message = str(err.value.message)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_classes": None}, "num_classes must be an integer >= 1"),
    ({"num_classes": 0}, "num_classes must be an integer >= 1"),
    ({"class_weights": [1, 2]}, "class_weights must be 4 finite numbers"),
    ({"class_weights": [0, 0, 0, 0]}, "not all 0"),
    ({"class_weights": [1, -1, 1, 1]}, "class_weights must be 4"),
    ({"ignore_index": "void"}, "ignore_index must be an integer"),
    ({"focal_gamma": -1}, "focal_gamma must be a finite number >= 0"),
    ({"smooth": float("nan")}, "smooth must be"),
    ({"tversky_alpha": 0, "tversky_beta": 0}, "cannot both be 0"),
    ({"spec": "ce+foo"}, "Unknown loss 'foo'"),
])
def test_build_loss_bad_arguments(kwargs, fragment):
    args = {"spec": "ce", "num_classes": K, **kwargs}
    with pytest.raises(KsegError, match=fragment):
        build_loss(**args)


def test_parse_loss_does_not_import_keras(run_python):
    out = run_python("""
        import sys
        from kseg.losses import LOSS_NAMES, parse_loss
        parse_loss("ce:1,lovasz:0.5")
        print("keras" in sys.modules, LOSS_NAMES)
    """)
    assert out.strip() == "False ('ce', 'dice', 'lovasz', 'focal', 'tversky')"


# ---------------------------------------------------------------- serialisation


def test_serialize_round_trip():
    loss = build_loss("ce:1,lovasz:0.5,tversky:2", K, 255, [1, 2, 3, 4], tversky_alpha=0.7, tversky_beta=0.3)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))  # plain JSON
    assert config["registered_name"] == "kseg>SegmentationLoss"
    inner = config["config"]
    assert inner["terms"] == [["ce", 1.0], ["lovasz", 0.5], ["tversky", 2.0]]
    assert (inner["num_classes"], inner["ignore_index"], inner["class_weights"]) == (K, 255, [1, 2, 3, 4])
    back = keras.saving.deserialize_keras_object(config)
    assert isinstance(back, SegmentationLoss) and back.get_config() == loss.get_config()
    logits, y = random_batch(1, ignore=255)
    assert value(back, y, logits) == value(loss, y, logits)
    for copied in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
        assert isinstance(copied, SegmentationLoss) and value(copied, y, logits) == value(loss, y, logits)
    assert repr(loss) == "SegmentationLoss('ce:1,lovasz:0.5,tversky:2', num_classes=4, ignore_index=255)"


def test_checkpoint_loads_without_kseg_and_resumes_with_it(tmp_path, run_python):
    # Fit one step with the kseg loss and save as kseg fit does: a fresh process that never
    # imports kseg loads it with safe_mode=True and predicts the same; kseg resumes it.
    from kseg.training.checkpoints import save_checkpoint

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 4, (2, 8, 8)).astype(np.uint8)  # 3 = void with K = 3

    def compiled():
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
        loss = build_loss("ce+lovasz", 3, ignore_index=3, class_weights=[1, 2, 1])
        model.compile(optimizer="adam", loss=loss)
        return model

    model = compiled()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    save_checkpoint(model, path)
    assert model.get_compile_config() is not None  # the model itself keeps its compile state
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "pred.npy", model.predict(x, verbose=0))

    out = run_python(f"""
        import sys
        import numpy as np
        import keras
        model = keras.saving.load_model({str(path)!r}, safe_mode=True)
        x = np.load({str(tmp_path / "x.npy")!r})
        diff = np.abs(model.predict(x, verbose=0) - np.load({str(tmp_path / "pred.npy")!r})).max()
        print(diff, "kseg" in sys.modules)
    """)
    diff, kseg_imported = out.split()[-2:]
    assert float(diff) < 1e-6 and kseg_imported == "False"

    resumed = compiled()
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(path)  # weights and Adam's moments, as kseg fit resumes
    assert int(resumed.optimizer.iterations) == int(model.optimizer.iterations) == 1
    assert math.isfinite(resumed.fit(x, y, epochs=1, verbose=0).history["loss"][0])


def test_jax_backend_matches_numpy(tmp_path, run_python):
    logits, y = random_batch(21)
    cw = [1.0, 2.0, 0.5, 1.5]
    np.savez(tmp_path / "batch.npz", logits=logits, y=y)
    out = run_python(f"""
        import json
        import jax
        import numpy as np
        from kseg.losses import LOSS_NAMES, build_loss
        data = np.load({str(tmp_path / "batch.npz")!r})
        result = {{}}
        for name in LOSS_NAMES:
            loss = build_loss(name, {K}, {K}, {cw})
            f = lambda x: loss(data["y"], x)
            value, grad = jax.value_and_grad(f)(jax.numpy.asarray(data["logits"]))
            result[name] = [float(value), bool(np.all(np.isfinite(np.asarray(grad))))]
        print(json.dumps(result))
    """, backend="jax")
    result = json.loads(out.strip().splitlines()[-1])
    for name in LOSS_NAMES:
        got, finite = result[name]
        assert finite and got == pytest.approx(np_loss(name, logits, y, K, K, cw), rel=1e-5, abs=1e-6), name
