"""Binary tasks: one sigmoid logit, the losses' binary modes, foreground scores, --threshold,
and the 0/255 disks folder trained end to end."""

import json

import keras
import kseg_tiny
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kseg
from kseg.cli import main
from kseg.data.dataset_spec import DatasetSpec
from kseg.errors import KsegError
from kseg.inference.frames import labels_from_logits, two_class_logits
from kseg.inference.scoring import SplitAccumulator, foreground_scores
from kseg.losses import SegmentationLoss
from kseg.metrics import scores
from kseg.metrics.keras_metrics import ForegroundIoU, training_metrics
from kseg.reporting.study_tables import table1
from kseg.training.task import logit_channels, resolve_task

# One batch of 2 x 2 x 3 pixels: logits z, labels (1 foreground, 0 background, 255 void).
Z = np.array([[[2.0, -1.0, 0.5], [-3.0, 1.5, 0.0]],
              [[0.2, -0.7, 4.0], [1.0, -2.0, -0.5]]], np.float32)[..., None]  # (B, H, W, 1)
Y = np.array([[[1, 0, 255], [0, 1, 1]],
              [[0, 0, 1], [255, 0, 1]]], np.uint8)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def kept():
    """(z, y) float64 of the non-void pixels."""
    keep = Y != 255
    return Z[..., 0][keep].astype(np.float64), Y[keep].astype(np.float64)


def loss_value(terms, **options):
    return float(SegmentationLoss(terms, num_classes=1, ignore_index=255, **options)(Y, Z))


def test_binary_ce_and_focal_are_bce_and_binary_focal():
    z, y = kept()
    p = sigmoid(z)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss_value("ce") == pytest.approx(bce.mean(), rel=1e-5)
    pt = np.where(y == 1, p, 1 - p)
    assert loss_value("focal") == pytest.approx((-(1 - pt) ** 2 * np.log(pt)).mean(), rel=1e-5)
    # Class weights (background, foreground): PyTorch's weighted mean.
    w = np.where(y == 1, 3.0, 1.0)
    assert loss_value("ce", class_weights=[1, 3]) == pytest.approx((w * bce).sum() / w.sum(), rel=1e-5)


def test_binary_dice_and_tversky_score_the_foreground_alone():
    z, y = kept()
    p = sigmoid(z)
    i, ps, g = (p * y).sum(), p.sum(), y.sum()
    assert loss_value("dice") == pytest.approx(1 - (2 * i + 1) / (ps + g + 1), rel=1e-5)
    fp, fn = ps - i, g - i
    tversky = 1 - (i + 0.5) / (i + 0.3 * fp + 0.7 * fn + 0.5)
    assert loss_value("tversky", tversky_alpha=0.3, tversky_beta=0.7) == pytest.approx(tversky, rel=1e-5)


def np_lovasz_hinge(z, y):
    """Berman et al.'s lovasz_hinge_flat, in numpy (sorted errors, Jaccard steps)."""
    errors = 1 - z * (2 * y - 1)
    order = np.argsort(-errors, kind="stable")
    e, gt = errors[order], y[order]
    inter = gt.sum() - np.cumsum(gt)
    union = gt.sum() + np.cumsum(1 - gt)
    jaccard = 1 - inter / union
    grad = np.concatenate([jaccard[:1], np.diff(jaccard)])
    return float(np.maximum(e, 0) @ grad)


def test_binary_lovasz_is_the_lovasz_hinge():
    z, y = kept()
    assert loss_value("lovasz") == pytest.approx(np_lovasz_hinge(z, y), rel=1e-5)
    # It is not Lovász-softmax on the two-class logits [0, z].
    softmax_two = float(SegmentationLoss("lovasz", num_classes=2, ignore_index=255)(Y, two_class_logits(Z)))
    assert abs(loss_value("lovasz") - softmax_two) > 1e-3


def test_binary_loss_gradients_reach_the_logit_and_not_void():
    z = keras.Variable(Z)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = SegmentationLoss("ce+dice+lovasz+focal+tversky", num_classes=1, ignore_index=255)(Y, z)
    grad = tape.gradient(value, z).numpy()[..., 0]
    assert np.isfinite(grad).all() and (grad[Y == 255] == 0).all() and (grad[Y != 255] != 0).all()


def test_binary_loss_saves_and_checks_its_class_weights():
    loss = SegmentationLoss("ce+lovasz", num_classes=1, class_weights=[1, 2])
    again = SegmentationLoss.from_config(json.loads(json.dumps(loss.get_config())))
    assert again.num_classes == 1 and again.class_weights == (1.0, 2.0)
    with pytest.raises(KsegError, match="class_weights must be 2 finite numbers"):
        SegmentationLoss("ce", num_classes=1, class_weights=[1, 2, 3])


def test_training_metrics_read_one_logit_as_two_classes():
    assert [m.name for m in training_metrics(2)] == ["accuracy", "miou", "soft_dice", "fg_iou"]
    assert "fg_iou" not in [m.name for m in training_metrics(3)]
    m = ForegroundIoU(2, ignore_index=255)
    m.update_state(Y, Z)
    z, y = kept()
    pred = z > 0
    tp = (pred & (y == 1)).sum()
    assert float(m.result()) == pytest.approx(tp / ((pred | (y == 1)).sum()), rel=1e-6)


def test_task_resolution_and_logit_channels():
    two, three = DatasetSpec("d", ("bg", "fg"), ()), DatasetSpec("d", ("a", "b", "c"), ())
    assert resolve_task("auto", two) == "binary" and resolve_task("auto", three) == "multiclass"
    assert resolve_task("multiclass", two) == "multiclass"
    assert logit_channels("auto", two) == 1 and logit_channels("multiclass", two) == 2
    with pytest.raises(KsegError, match="--task binary needs a dataset of two classes"):
        resolve_task("binary", three)


def test_threshold_moves_the_foreground_boundary():
    logits = two_class_logits(np.array([[-2.0], [-0.5], [0.5], [2.0]], np.float32))  # p = .12 .38 .62 .88
    assert labels_from_logits(logits).tolist() == [0, 0, 1, 1]
    assert labels_from_logits(logits, 0.3).tolist() == [0, 1, 1, 1]
    assert labels_from_logits(logits, 0.9).tolist() == [0, 0, 0, 0]


def test_foreground_scores_beside_table_one():
    # rows = true (background, foreground), columns = predicted:
    #   [[90, 2],     TP = 6, FP = 2, FN = 2:  IoU 6/10, Dice 12/16, precision 6/8, recall 6/8
    #    [ 2, 6]]
    s = foreground_scores(scores(np.array([[90, 2], [2, 6]])))
    assert s == pytest.approx({"fg_iou": 0.6, "fg_dice": 0.75, "fg_precision": 0.75, "fg_recall": 0.75})
    assert foreground_scores(scores(np.eye(3))) == {}
    acc = SplitAccumulator(2, 255)
    acc.update(two_class_logits(Z[0]), Y[0])
    binary = {"run": "b", "splits": {"val": acc.result()}}
    multi = {"run": "m", "splits": {"val": {"loss": 1.0}}}
    _, rows = table1([binary, multi], "val")
    fg = {r[0]: r[1:] for r in rows}["fg_iou"]
    assert fg[0] is not None and fg[1] is None
    assert "fg_iou" not in [r[0] for r in table1([multi], "val")[1]]


# --- the 0/255 disks folder, end to end ---------------------------------------------------


def write_disks(root, n=24, size=32, seed=0):
    """images/ + masks/ of bright disks on a dark noisy background, masks 0/255."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx, r = *rng.uniform(8, size - 8, 2), rng.uniform(4, 7)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image = rng.normal(60, 12, (size, size, 3)) + 110 * disk[..., None]
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"d{i:02d}.png")
        Image.fromarray(disk.astype(np.uint8) * 255).save(root / "masks" / f"d{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def disks_run(tmp_path_factory):
    root = write_disks(tmp_path_factory.mktemp("disks"))
    runs = tmp_path_factory.mktemp("runs")
    run = kseg.fit(kseg_tiny.NAME, data=root, runs=runs, progress=False, patch=32, grid=(1, 1),
                   batch_size=4, epochs=6, lr=0.02, loss="ce+dice")
    return root, run


@pytest.mark.slow
def test_a_short_fit_learns_the_0_255_disks(disks_run):
    root, run = disks_run
    assert run.config["task"] == "binary" and run.config["spec"]["classes"] == ["background", "foreground"]
    assert run.load_model("best").output_shape[-1] == 1  # one sigmoid logit
    history = run.history()
    assert "val_fg_iou" in history[-1]
    result = kseg.evaluate(run, ["val", "test"], write=False)
    for split in result["splits"].values():
        # An all-background model scores fg_iou 0, an all-foreground one the disks' share (~0.1).
        assert split["fg_iou"] > 0.5 and split["fg_recall"] > 0.5 and split["fg_precision"] > 0.5
        assert split["fg_iou"] <= split["miou"]  # the background is the easier class


@pytest.mark.slow
def test_predict_threshold_changes_the_binary_masks(disks_run, tmp_path):
    root, run = disks_run
    image = root / "images" / "d00.png"
    low, high = (kseg.predict(run, [image], threshold=t)[0] for t in (0.05, 0.95))
    assert low.sum() > high.sum()  # more foreground at a lower threshold
    args = ["predict", str(run.path), str(image), "--out", str(tmp_path), "--threshold", "1.5"]
    assert CliRunner().invoke(main, args).exit_code == 2  # outside (0, 1)


@pytest.mark.slow
def test_binary_checkpoint_loads_in_bare_keras(disks_run, run_python):
    _, run = disks_run
    out = run_python(f"""
        import keras
        model = keras.saving.load_model({str(run.best_path)!r}, safe_mode=True, compile=False)
        print(model.output_shape[-1])
    """)
    assert out.split()[-1] == "1"


def test_threshold_is_refused_for_a_multiclass_run(tmp_path):
    from kseg.api import _check_threshold

    class Run:
        name, spec = "r", DatasetSpec("d", ("a", "b", "c"), ())

    with pytest.raises(KsegError, match="--threshold is for binary and multi-label runs"):
        _check_threshold(Run, 0.5)
    _check_threshold(Run, None)


@pytest.mark.slow
def test_task_option_picks_the_head(tmp_path, data_dir):
    root = write_disks(tmp_path / "disks", n=16)  # d00..d15: train and val by the stem hash
    run = kseg.fit(kseg_tiny.NAME, data=root, runs=tmp_path / "runs", progress=False, patch=32, grid=(1, 1),
                   batch_size=4, epochs=1, max_steps=1, task="multiclass")
    assert run.config["task"] == "multiclass" and run.load_model("best").output_shape[-1] == 2
    assert "val_fg_iou" in run.history()[-1]  # two classes: the foreground IoU is logged either way
    with pytest.raises(KsegError, match="--task binary needs a dataset of two classes"):
        kseg.fit(kseg_tiny.NAME, data=data_dir, runs=tmp_path / "runs", name="b", progress=False,
                 patch=32, epochs=1, max_steps=1, task="binary")
    assert not (tmp_path / "runs" / "b").exists()
