"""Metrics: hand-worked confusion matrices and scores, numpy vs Keras on TF and JAX."""

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.metrics import ConfusionAccumulator, confusion_matrix, cross_entropy_sum, scores, split_loss

NAMES = ("precision", "sensitivity", "specificity", "f1", "dice", "iou")


# ---------------------------------------------------------------- confusion matrix


def test_confusion_matrix_by_hand_with_void():
    # void = 3. Pixels (true -> pred): 0->0, 0->1, 1->1, 1->2, 2->2, and one void pixel
    # (3 -> 0) that must not be counted. Rows = true, columns = predicted:
    #          p0 p1 p2
    #   t0  [  1, 1, 0 ]
    #   t1  [  0, 1, 1 ]
    #   t2  [  0, 0, 1 ]
    y_true = np.array([[0, 0, 1], [1, 2, 3]], np.uint8)
    y_pred = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    expected = [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    cm = confusion_matrix(y_true, y_pred, 3, ignore_index=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_void_pixels_never_counted():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, size=(3, 16, 16)).astype(np.uint8)
    y_true[:, :4] = 255  # void band, plus scattered void
    y_true[rng.random(y_true.shape) < 0.1] = 255
    y_pred = rng.integers(0, 4, size=y_true.shape).astype(np.uint8)
    cm = confusion_matrix(y_true, y_pred, 5, ignore_index=255)
    assert cm.sum() == (y_true != 255).sum()
    # Whatever is predicted on void pixels (even an out-of-range value) changes nothing.
    other = y_pred.copy()
    other[y_true == 255] = 200
    np.testing.assert_array_equal(confusion_matrix(y_true, other, 5, ignore_index=255), cm)
    # Same counts as the obvious (slow) loop over pixels.
    slow = np.zeros((5, 5), np.int64)
    for t, p in zip(y_true.ravel(), y_pred.ravel(), strict=True):
        if t != 255:
            slow[t, p] += 1
    np.testing.assert_array_equal(cm, slow)


def test_accumulator_sums_batches():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 4, size=(4, 8, 8)).astype(np.uint8)  # 3 = void
    y_pred = rng.integers(0, 3, size=(4, 8, 8)).astype(np.uint8)
    acc = ConfusionAccumulator(3, ignore_index=3)
    for i in range(4):
        acc.update(y_true[i], y_pred[i])
    np.testing.assert_array_equal(acc.cm, confusion_matrix(y_true, y_pred, 3, ignore_index=3))
    assert acc.pixels == (y_true != 3).sum()
    acc.reset()
    assert acc.pixels == 0


@pytest.mark.parametrize(
    "y_true, y_pred, fragment",
    [
        (np.array([0, 7, 9]), np.array([0, 1, 1]), "y_true holds values 7, 9"),
        (np.array([0, 1, 11]), np.array([0, 12, 1]), "y_pred holds values 12"),
        (np.array([0, -1]), np.array([0, 0]), "y_true holds values -1"),
        (np.array([0, 1]), np.array([0.2, 0.9]), "integer class indices"),
        (np.array([0, 1]), np.array([0, 1, 1]), "shape"),
    ],
)
def test_bad_values_are_named(y_true, y_pred, fragment):
    with pytest.raises(KsegError, match=fragment):
        confusion_matrix(y_true, y_pred, 3, ignore_index=11)


# ---------------------------------------------------------------- scores by hand

# 4 classes; class 2 occurs only in predictions, class 3 nowhere (absent).
#            p0 p1 p2 p3     row
#   t0   [   5, 1, 0, 0 ]     6
#   t1   [   2, 3, 1, 0 ]     6
#   t2   [   0, 0, 0, 0 ]     0
#   t3   [   0, 0, 0, 0 ]     0
#   col      7  4  1  0      N = 12
# TP = 5 3 0 0; FP = col - TP = 2 1 1 0; FN = row - TP = 1 3 0 0;
# TN = N - TP - FP - FN = 4 5 11 12. Present: rows + cols > 0 -> classes 0, 1, 2.
HAND_CM = np.array([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
HAND = {
    # class 2: precision 0/1; sensitivity 0/0 on a present class counts as 0.
    "precision": [5 / 7, 3 / 4, 0.0],
    "sensitivity": [5 / 6, 3 / 6, 0.0],
    "specificity": [4 / 6, 5 / 6, 11 / 12],
    "f1": [10 / 13, 6 / 10, 0.0],  # 2TP / (2TP + FP + FN)
    "dice": [10 / 13, 6 / 10, 0.0],  # 2TP / (row + col): the same fraction
    "iou": [5 / 8, 3 / 7, 0.0],  # TP / (TP + FP + FN)
}


def test_scores_by_hand():
    s = scores(HAND_CM)
    assert s["accuracy"] == pytest.approx(8 / 12)
    np.testing.assert_array_equal(s["present"], [True, True, True, False])
    np.testing.assert_array_equal(s["support"], [6, 6, 0, 0])
    for name, values in HAND.items():
        per_class = s[f"{name}_per_class"]
        np.testing.assert_allclose(per_class[:3], values, err_msg=name)
        assert math.isnan(per_class[3]), name
        assert s[name] == pytest.approx(sum(values) / 3), name  # macro over 3 present
    assert s["miou"] == pytest.approx((5 / 8 + 3 / 7) / 3)
    # Micro: sums TP=8, FP=4, FN=4, TN=32.
    assert s["precision_micro"] == pytest.approx(8 / 12)
    assert s["sensitivity_micro"] == pytest.approx(8 / 12)
    assert s["f1_micro"] == pytest.approx(16 / 24)
    assert s["iou_micro"] == pytest.approx(8 / 16)
    assert s["specificity_micro"] == pytest.approx(32 / 36)
    # Weighted by true-class frequency 6/12, 6/12, 0, 0.
    assert s["iou_weighted"] == pytest.approx(0.5 * 5 / 8 + 0.5 * 3 / 7)
    assert s["sensitivity_weighted"] == pytest.approx(0.5 * 5 / 6 + 0.5 * 3 / 6)  # = accuracy
    assert s["precision_weighted"] == pytest.approx(0.5 * 5 / 7 + 0.5 * 3 / 4)


def test_absent_class_no_division_warning_and_left_out():
    # Class 1 never appears: its row and column are zero.
    cm = np.array([[3, 0, 1], [0, 0, 0], [2, 0, 4]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        s = scores(cm)
        empty = scores(np.zeros((3, 3), np.int64))
    for name in NAMES:
        assert math.isnan(s[f"{name}_per_class"][1])
        assert not math.isnan(s[name])
        kept = s[f"{name}_per_class"][[0, 2]]
        assert s[name] == pytest.approx(kept.mean())
    # IoU by hand: class 0 = 3 / (3+2+1), class 2 = 4 / (4+1+2).
    assert s["miou"] == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert math.isnan(empty["accuracy"]) and math.isnan(empty["miou"])
    assert not empty["present"].any()


def test_micro_equals_accuracy_and_dice_equals_f1_on_random_data():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 7, size=(2, 32, 32))
    y_pred = np.where(rng.random(y_true.shape) < 0.6, y_true, rng.integers(0, 6, size=y_true.shape))
    s = scores(confusion_matrix(y_true, y_pred, 7))
    acc = (y_true == y_pred).mean()
    for key in ("accuracy", "precision_micro", "sensitivity_micro", "f1_micro", "dice_micro"):
        assert s[key] == pytest.approx(acc), key
    # Hard Dice is F1 per class, and F1 is the harmonic mean of precision and recall.
    p, r = s["precision_per_class"], s["sensitivity_per_class"]
    np.testing.assert_allclose(s["dice_per_class"], s["f1_per_class"])
    np.testing.assert_allclose(s["f1_per_class"], 2 * p * r / (p + r))
    assert s["sensitivity_weighted"] == pytest.approx(acc)


def test_scores_rejects_non_square():
    with pytest.raises(KsegError, match="square"):
        scores(np.zeros((2, 3)))


# ---------------------------------------------------------------- loss

# Three counted pixels, two classes, one void pixel (void = 2):
#   logits [0, 0],     true 0: p = 1/2  -> CE = log 2
#   logits [log 3, 0], true 0: p = 3/4  -> CE = log(4/3)
#   logits [0, log 3], true 1: p = 3/4  -> CE = log(4/3)
#   logits [9, -9],    void:   ignored
LOSS_LOGITS = np.array([[[[0, 0], [math.log(3), 0]], [[0, math.log(3)], [9, -9]]]], np.float32)
LOSS_TRUE = np.array([[[0, 0], [1, 2]]], np.uint8)
LOSS_MEAN = (math.log(2) + 2 * math.log(4 / 3)) / 3


def test_cross_entropy_sum_and_split_loss_by_hand():
    total, count = cross_entropy_sum(LOSS_LOGITS, LOSS_TRUE, ignore_index=2)
    assert count == 3
    assert total / count == pytest.approx(LOSS_MEAN)
    probs = np.exp(LOSS_LOGITS) / np.exp(LOSS_LOGITS).sum(-1, keepdims=True)
    assert cross_entropy_sum(probs, LOSS_TRUE, 2, from_logits=False)[0] == pytest.approx(total, rel=1e-6)
    # Over a split, batches weigh by pixel: batch A has 2 pixels (CEs log 2, log 4/3),
    # batch B 1 pixel (log 4/3), so the mean is LOSS_MEAN, not the mean of batch means.
    batches = [(LOSS_LOGITS[:, 0], LOSS_TRUE[:, 0]), (LOSS_LOGITS[:, 1], LOSS_TRUE[:, 1])]
    assert split_loss(batches, ignore_index=2) == pytest.approx(LOSS_MEAN)
    with pytest.raises(KsegError, match="5"):
        cross_entropy_sum(LOSS_LOGITS, np.full((1, 2, 2), 5, np.uint8), ignore_index=2)


# ---------------------------------------------------------------- soft dice

# Two classes, void = 2; softmax probabilities (logits = log p):
#   pixel  p0   p1   true
#     a    0.8  0.2   0
#     b    0.6  0.4   0
#     c    0.3  0.7   1
#     d    0.5  0.5   void (masked out)
# class 0: 2*(0.8+0.6) / ((0.8+0.6+0.3) + 2) = 2.8 / 3.7
# class 1: 2*0.7       / ((0.2+0.4+0.7) + 1) = 1.4 / 2.3
# Hard Dice: argmax = 0, 0, 1 is perfect -> 1.0, so soft and hard Dice differ.
DICE_P = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]], np.float32)
DICE_TRUE = np.array([0, 0, 1, 2], np.uint8)
SOFT_DICE = (2.8 / 3.7 + 1.4 / 2.3) / 2


# ---------------------------------------------------------------- keras, per backend


def keras_report():
    """Run every Keras-side check on the current backend; return plain numbers as JSON-able."""
    import keras

    from kseg.losses import build_loss
    from kseg.metrics import keras_metrics as km

    rng = np.random.default_rng(4)
    k, void = 5, 5
    y_true = rng.integers(0, k + 1, size=(2, 8, 8)).astype(np.uint8)  # values 0..5, 5 = void
    logits = rng.standard_normal((2, 8, 8, k)).astype(np.float32)
    sample_weight = (rng.random((2, 8, 8)) > 0.2).astype(np.float32) * 3.0  # 0 masks a pixel
    out = {"backend": keras.backend.backend()}

    cm_metric, acc, miou = km.ConfusionMatrixMetric(k, void), km.PixelAccuracy(k, void), km.MeanIoU(k, void)
    for m in (cm_metric, acc, miou):  # two batches, to exercise accumulation
        m.update_state(y_true[:1], logits[:1], sample_weight=sample_weight[:1])
        m.update_state(y_true[1:], logits[1:], sample_weight=sample_weight[1:])
    out["cm"] = keras.ops.convert_to_numpy(cm_metric.result()).tolist()
    out["accuracy"], out["miou"] = float(acc.result()), float(miou.result())
    out["scores_miou"] = float(cm_metric.scores()["miou"])
    weighted = km.PixelAccuracy(k, void, weighted=True)  # counts weighted pixels instead
    weighted.update_state(y_true, logits, sample_weight=rng.random((2, 8, 8)).astype(np.float32))
    out["weighted_accuracy"] = float(weighted.result())
    inner = km.ConfusionMatrixMetric(k, ignore_index=2)  # a void value inside [0, K)
    inner.update_state(np.minimum(y_true, k - 1), logits)
    out["cm_inner_void"] = keras.ops.convert_to_numpy(inner.result()).tolist()

    # Compiled path (jit on JAX, tf.function on TF): a 1x1-conv "model" on fixed logits.
    inputs = keras.Input((8, 8, k))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=build_loss("ce", k, void), metrics=km.training_metrics(k, void))
    logs = model.evaluate(logits, y_true, batch_size=1, verbose=0, return_dict=True)
    out["evaluate"] = {key: float(v) for key, v in logs.items()}

    dice = km.SoftDice(2, ignore_index=2)
    dice.update_state(DICE_TRUE[None, :2], np.log(DICE_P[None, :2]))  # batch A
    dice.update_state(DICE_TRUE[None, 2:], np.log(DICE_P[None, 2:]))  # batch B
    out["soft_dice"] = float(dice.result())
    out["loss"] = float(build_loss("ce", 2, 2)(LOSS_TRUE, LOSS_LOGITS))

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(miou))
    out["restored"] = [type(restored).__name__, restored.name, restored.num_classes, restored.ignore_index]
    return out


def _check_report(out):
    rng = np.random.default_rng(4)
    k, void = 5, 5
    y_true = rng.integers(0, k + 1, size=(2, 8, 8)).astype(np.uint8)
    logits = rng.standard_normal((2, 8, 8, k)).astype(np.float32)
    keep = rng.random((2, 8, 8)) > 0.2
    w = rng.random((2, 8, 8))  # same draws as keras_report
    y_pred = logits.argmax(-1)
    # numpy path: zero-weight pixels are dropped, so mark them void before counting.
    masked_true = np.where(keep, y_true, void)
    cm = confusion_matrix(masked_true, y_pred, k, ignore_index=void)
    s = scores(cm)
    np.testing.assert_array_equal(np.asarray(out["cm"]), cm)
    assert out["accuracy"] == pytest.approx(s["accuracy"], rel=1e-6)
    assert out["miou"] == pytest.approx(s["miou"], rel=1e-6)
    assert out["scores_miou"] == pytest.approx(s["miou"], rel=1e-12)
    inner = confusion_matrix(np.minimum(y_true, k - 1), y_pred, k, ignore_index=2)
    assert inner[2].sum() == 0 and inner[:, 2].sum() > 0  # void row empty, column kept
    np.testing.assert_array_equal(np.asarray(out["cm_inner_void"]), inner)
    valid = y_true != void
    hits = (y_true == y_pred) & valid
    assert out["weighted_accuracy"] == pytest.approx((w * hits).sum() / (w * valid).sum(), rel=1e-5)

    full = scores(confusion_matrix(y_true, y_pred, k, ignore_index=void))
    ev = out["evaluate"]
    assert ev["accuracy"] == pytest.approx(full["accuracy"], rel=1e-6)
    assert ev["miou"] == pytest.approx(full["miou"], rel=1e-6)
    # evaluate averages per-batch losses; batches have different void counts, so compare
    # with the mean of per-frame means (the keras convention), not the pixel mean.
    per_frame = [np.divide(*cross_entropy_sum(logits[i], y_true[i], void)) for i in range(2)]
    assert ev["loss"] == pytest.approx(np.mean(per_frame), rel=1e-5)

    assert out["soft_dice"] == pytest.approx(SOFT_DICE, rel=1e-6)
    assert abs(out["soft_dice"] - 1.0) > 0.3  # hard Dice here is 1.0
    assert out["loss"] == pytest.approx(LOSS_MEAN, rel=1e-6)
    assert out["restored"] == ["MeanIoU", "miou", 5, 5]


def test_keras_matches_numpy_tensorflow():
    pytest.importorskip("tensorflow")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("this process runs another Keras backend; the JAX test covers the subprocess path")
    out = keras_report()
    assert out["backend"] == "tensorflow"
    _check_report(out)


def test_keras_matches_numpy_jax(run_python):
    pytest.importorskip("jax")
    code = f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_metrics
        print("REPORT" + json.dumps(test_metrics.keras_report()))
    """
    stdout = run_python(code, backend="jax", env={"JAX_PLATFORMS": "cpu"})
    lines = [line for line in stdout.splitlines() if line.startswith("REPORT")]
    assert lines, stdout[-2000:]
    out = json.loads(lines[-1][len("REPORT") :])
    assert out["backend"] == "jax"
    _check_report(out)


def test_soft_dice_is_accumulated_not_mean_of_batches():
    # Batch A (pixels a, b) alone: class 0 only -> 2.8 / 3.4; batch B (c, d): class 1
    # only -> 1.4 / 1.7. Their mean (0.82) is not the accumulated SOFT_DICE (0.68).
    mean_of_batches = (2.8 / 3.4 + 1.4 / 1.7) / 2
    assert abs(mean_of_batches - SOFT_DICE) > 0.1
    hard = scores(confusion_matrix(DICE_TRUE, DICE_P.argmax(-1), 2, ignore_index=2))
    assert hard["dice"] == 1.0


def test_measure_confusion_smoke():
    from kseg.bench.confusion_speed import measure_confusion

    out = measure_confusion(num_frames=2, size=(8, 12), num_classes=4, repeats=1)
    assert out["agree"] is True
    assert out["pixels"] == 2 * 8 * 12
    assert out["numpy_fps"] > 0 and out["keras_fps"] > 0
