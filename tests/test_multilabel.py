"""Multi-label tasks: masks/<class>/<name>.png folders of overlapping classes, labels as
bits, a sigmoid per class in the losses, metrics, eval and predict."""

import json

import keras
import kseg_tiny
import numpy as np
import pytest
from PIL import Image

import kseg
from kseg.data import io
from kseg.data.check import check_dataset
from kseg.data.dataset_spec import DatasetSpec
from kseg.data.readers import open_dataset
from kseg.errors import DataError, KsegError
from kseg.inference.frames import labels_from_logits
from kseg.losses import SegmentationLoss
from kseg.metrics.multilabel_keras import training_metrics
from kseg.metrics.multilabel_scores import MultiLabelAccumulator

S = 32
CLASSES = ("road", "wet")


def scene(rng):
    """image (S, S, 3), road and wet masks (bool): wet puddles lie on the road and off it."""
    yy, xx = np.mgrid[:S, :S]
    road = yy > rng.integers(12, 20)
    wet = (xx - rng.uniform(6, 26)) ** 2 + (yy - rng.uniform(6, 26)) ** 2 < rng.uniform(20, 50)
    image = np.full((S, S, 3), 40.0)
    image[road] += 90
    image[wet, 2] += 130
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8), road, wet


def write_multilabel(root, n=16, seed=0):
    rng = np.random.default_rng(seed)
    for sub in ("images", *(f"masks/{c}" for c in CLASSES)):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        image, road, wet = scene(rng)
        Image.fromarray(image).save(root / "images" / f"d{i:02d}.png")
        Image.fromarray(road.astype(np.uint8) * 255).save(root / "masks" / "road" / f"d{i:02d}.png")
        Image.fromarray(wet.astype(np.uint8)).save(root / "masks" / "wet" / f"d{i:02d}.png")  # 0/1 works too
    return root


def test_class_folders_are_a_multilabel_set_read_as_bits(tmp_path):
    root = write_multilabel(tmp_path / "ds")
    ds = open_dataset(root)
    assert ds.spec.multilabel and ds.spec.classes == CLASSES and ds.spec.void is None
    pair = ds.splits["train"][0]
    road = np.asarray(Image.open(pair.mask)) > 0
    wet = np.asarray(Image.open(root / "masks" / "wet" / pair.mask.name)) > 0
    bits = io.read_mask(pair.mask, ds.spec)
    assert np.array_equal(bits, road * 1 + wet * 2)
    pairs = [p for split in ds.splits.values() for p in split]
    assert any((io.read_mask(p.mask, ds.spec) == 3).any() for p in pairs)  # overlaps: both bits
    summary = check_dataset(root)
    info = summary["inferred"]
    assert info["task"] == "multilabel" and "masks/<class>/" in info["encoding"]
    shares = [c["share"] for c in info["classes"]]
    assert 0 < shares[1] < shares[0] < 1 and info["void"] is None


def test_multilabel_set_errors(tmp_path):
    root = write_multilabel(tmp_path / "ds", n=4)
    next((root / "masks" / "wet").iterdir()).unlink()
    with pytest.raises(DataError, match=r"missing \(every class folder of .* needs a mask for"):
        check_dataset(root)
    many = tmp_path / "many"
    (many / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(many / "images" / "a.png")
    for c in range(8):
        (many / "masks" / f"c{c}").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(many / "masks" / f"c{c}" / "a.png")
    with pytest.raises(DataError, match="8 class folders; multi-label masks carry at most 7"):
        open_dataset(many)
    with pytest.raises(ValueError, match="a 'multilabel' spec holds 1 to 7 classes"):
        DatasetSpec("x", ("a", "b"), (), void=3, color_map=False, multilabel=True)  # 3 is road + wet
    spec = DatasetSpec("x", CLASSES, (), void=255, color_map=False, multilabel=True)
    assert DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# One batch: 3 pixels and a void one; labels are bits (0: none, 1: road, 3: road + wet).
Y = np.array([[[0, 1], [3, 255]]], np.uint8)
Z = np.array([[[[1.0, -1.0], [0.5, 2.0]], [[-1.0, 3.0], [0.0, 0.0]]]], np.float32)  # (1, 2, 2, K)
BITS = np.array([[0, 0], [1, 0], [1, 1]], np.float64)  # the non-void pixels' targets
LOGITS = Z.reshape(-1, 2)[:3].astype(np.float64)


def test_multilabel_losses_are_per_class_sigmoid_losses():
    p = 1 / (1 + np.exp(-LOGITS))
    bce = -(BITS * np.log(p) + (1 - BITS) * np.log(1 - p))
    loss = SegmentationLoss("ce", num_classes=2, ignore_index=255, multilabel=True)
    assert float(loss(Y, Z)) == pytest.approx(bce.mean(), rel=1e-5)
    i, ps, g = (p * BITS).sum(0), p.sum(0), BITS.sum(0)
    dice = (1 - (2 * i + 1) / (ps + g + 1)).mean()  # both classes present
    assert float(SegmentationLoss("dice", 2, 255, multilabel=True)(Y, Z)) == pytest.approx(dice, rel=1e-5)
    with pytest.raises(KsegError, match="class_weights do not apply to a multi-label loss"):
        SegmentationLoss("ce", 2, class_weights=[1, 2], multilabel=True)
    z = keras.Variable(Z)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = SegmentationLoss("ce+dice+lovasz+focal+tversky", 2, 255, multilabel=True)(Y, z)
    grad = tape.gradient(value, z).numpy()
    assert np.isfinite(grad).all() and (grad[0, 1, 1] == 0).all() and (grad[0, 0, 0] != 0).all()


def test_multilabel_metrics_keras_and_numpy_agree_with_hand_counts():
    # predicted (z > 0): pixel 0 {road}, pixel 1 {road, wet}, pixel 2 {wet}
    # road: TP 1 (px1), FP 1 (px0), FN 1 (px2), TN 0 -> IoU 1/3
    # wet:  TP 1 (px2), FP 1 (px1), FN 0, TN 1       -> IoU 1/2; accuracy 3 / 6
    logs = {}
    for m in training_metrics(2, 255):
        m.update_state(Y, Z)
        logs[m.name] = float(m.result())
    assert logs["accuracy"] == pytest.approx(0.5) and logs["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    acc = MultiLabelAccumulator(2, 255)
    acc.update(Z[0], Y[0])
    r = acc.result()
    assert r["accuracy"] == pytest.approx(0.5) and r["miou"] == pytest.approx(logs["miou"])
    assert r["iou_per_class"] == pytest.approx([1 / 3, 1 / 2]) and r["class_counts"][0] == [1, 1, 1, 0]
    assert r["soft_dice"] == pytest.approx(logs["soft_dice"], rel=1e-5)
    p = 1 / (1 + np.exp(-LOGITS))
    assert r["loss"] == pytest.approx((-(BITS * np.log(p) + (1 - BITS) * np.log(1 - p))).mean(), rel=1e-6)


def test_multilabel_labels_and_colours():
    z = np.array([[2.0, -2.0], [0.5, 0.3], [-3.0, -0.2]])  # p: (.88 .12), (.62 .57), (.05 .45)
    assert labels_from_logits(z, multilabel=True).tolist() == [1, 3, 0]
    assert labels_from_logits(z, 0.6, multilabel=True).tolist() == [1, 1, 0]
    spec = DatasetSpec("x", CLASSES, ((200, 0, 0), (0, 0, 100)), color_map=False, multilabel=True)
    shown = io.colorize(np.array([0, 1, 2, 3], np.uint8), spec).tolist()
    assert shown == [[0, 0, 0], [200, 0, 0], [0, 0, 100], [100, 0, 50]]  # both: the mean colour


@pytest.mark.slow
def test_a_multilabel_fit_learns_overlapping_classes(tmp_path):
    root = write_multilabel(tmp_path / "ds", n=24)
    run = kseg.fit(kseg_tiny.NAME, data=root, runs=tmp_path / "runs", progress=False, patch=32, grid=(1, 1),
                   batch_size=4, epochs=8, lr=0.03, loss="ce+dice")
    assert run.config["task"] == "multilabel" and run.load_model("best").output_shape[-1] == 2
    result = kseg.evaluate(run, ["val"], write=False)["splits"]["val"]
    assert result["miou"] > 0.6 and min(result["iou_per_class"]) > 0.4  # both classes, overlaps included
    written = kseg.predict(run, [root / "images" / "d00.png"], out=tmp_path / "pred")
    assert {p.name for p in (tmp_path / "pred").iterdir()} >= {"d00_road.png", "d00_wet.png"} and written
    road = np.asarray(Image.open(tmp_path / "pred" / "d00_road.png"))
    assert set(np.unique(road)) <= {0, 255}
    from click.testing import CliRunner

    from kseg.cli import main

    args = ["predict", str(run.path), str(root / "images" / "d01.png"), "--out", str(tmp_path / "cli"),
            "--threshold", "0.3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "wrote 4 files" in result.output  # mask, overlay, road, wet
    with pytest.raises(KsegError, match="--class-weights weighs or picks pixels by their one class"):
        kseg.fit(kseg_tiny.NAME, data=root, runs=tmp_path / "runs", name="w", progress=False, patch=32,
                 epochs=1, class_weights=True)


def test_multi_band_tiff_masks_are_multilabel(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    root = tmp_path / "ds"
    for sub in ("images/train", "masks/train", "images/val", "masks/val"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("val", 1)):
        for i in range(n):
            image, road, wet = scene(rng)
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            bands = np.stack([road, wet, road & wet], axis=0).astype(np.uint8) * 255  # planar (C, H, W)
            tifffile.imwrite(root / "masks" / split / f"{i}.tif", bands, photometric="minisblack")
    ds = open_dataset(root)
    assert ds.spec.multilabel and ds.spec.classes == ("class_0", "class_1", "class_2")
    assert "3-band TIFF" in ds.origin["encoding"]
    bits = io.read_mask(ds.splits["train"][0].mask, ds.spec)
    road = (bits & 1).astype(bool)
    assert ((bits >> 2) & 1).sum() == (road & ((bits >> 1) & 1).astype(bool)).sum()  # band 2 = road & wet
    assert check_dataset(root)["inferred"]["task"] == "multilabel"


def test_split_folders_of_class_folders(tmp_path):
    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("val", 2)):
        for sub in (f"images/{split}", *(f"masks/{split}/{c}" for c in CLASSES)):
            (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, road, wet = scene(rng)
            Image.fromarray(image).save(tmp_path / "images" / split / f"{i}.jpg")
            for name, m in (("road", road), ("wet", wet)):
                Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "masks" / split / name / f"{i}.png")
    ds = open_dataset(tmp_path)
    assert ds.spec.multilabel and ds.spec.classes == CLASSES
    assert {s: len(p) for s, p in ds.splits.items()} == {"train": 3, "val": 2}
    assert ds.splits["val"][1].mask == tmp_path / "masks" / "val" / "road" / "1.png"
