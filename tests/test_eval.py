"""`kseg eval`: Table I numbers equal kseg.metrics on predictions made here, independently.

Runs are built by hand (config.json, state.json, a 1x1-conv model as best.keras) on a
tiny SegNet-layout dataset written here, so nothing depends on training. A 1x1 conv is
pointwise, so whole-frame padding and the patch grid cannot change its logits: the test
computes them by calling the model on the raw frame.
"""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.data.dataset_spec import CAMVID

SIZE = (40, 56)  # not a multiple of 32: the full-frame path must pad and crop
VOID = CAMVID.void


def write_dataset(root, counts=(2, 1, 1), size=SIZE, seed=0):
    """SegNet layout with random images and masks (classes 0..10 and void 11)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        if not n:
            continue
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            iio.imwrite(root / split / f"{split}{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            iio.imwrite(
                root / f"{split}annot" / f"{split}{i}.png", rng.integers(0, VOID + 1, size, dtype=np.uint8)
            )
    return root


def tiny_model(num_classes=11, seed=1):
    import keras

    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(x)
    x = keras.layers.Conv2D(
        num_classes,
        1,
        name="segmentation_output",
        kernel_initializer=keras.initializers.RandomNormal(stddev=2.0, seed=seed),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=seed + 1),
    )(x)
    return keras.Model(inputs, x, name="tiny")


def make_run(root, name, data, seed=1, train_seconds=12.5):
    """A run directory as `kseg fit` leaves it, written by hand."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "arch": "tiny",
        "model_kwargs": {},
        "data": str(data),
        "spec": CAMVID.to_dict(),
        "epochs": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "patch": 32,
        "grid": [2, 2],
        "seed": seed,
        "split": "val",
        "stride": 32,
        "monitor": "val_miou",
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "state.json").write_text(
        json.dumps({"status": "finished", "epoch": 2, "best_value": 0.1, "train_seconds": train_seconds})
    )
    (run / "env.json").write_text(json.dumps({"kseg": "0.1.0", "backend": "tensorflow"}))
    (run / "history.csv").write_text(
        "epoch,loss,accuracy,miou,soft_dice,val_loss,val_accuracy,val_miou,val_soft_dice,lr,seconds\n"
        "1,2.5,0.2,0.05,0.10,2.6,0.18,0.04,0.09,0.001,1.0\n"
        "2,2.1,0.3,0.08,0.15,2.4,0.21,0.05,0.11,0.001,1.0\n"
    )
    tiny_model(seed=seed).save(run / "best.keras")
    return run


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    data = write_dataset(tmp / "data")
    runs = tmp / "runs"
    make_run(runs, "tiny", data)
    return runs, data


def expected_scores(run_dir, pairs):
    """Scores of one split computed here, from the model called on the raw frames."""
    import keras

    from kseg.data.io import read_image, read_mask
    from kseg.metrics import confusion_matrix, scores

    model = keras.saving.load_model(run_dir / "best.keras", compile=False)
    cm = np.zeros((11, 11), np.int64)
    nll, count = 0.0, 0
    inter, psum, tsum = np.zeros(11), np.zeros(11), np.zeros(11)
    for pair in pairs:
        image, mask = read_image(pair.image), read_mask(pair.mask, CAMVID)
        logits = np.asarray(model(image[None].astype("float32")))[0].astype(np.float64)  # (H, W, 11)
        cm += confusion_matrix(mask, logits.argmax(-1), 11, ignore_index=VOID)
        keep = mask != VOID
        z = logits[keep]
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        t = mask[keep].astype(int)
        nll -= np.log(p[np.arange(t.size), t]).sum()
        count += t.size
        onehot = np.eye(11)[t]
        inter += (p * onehot).sum(0)
        psum += p.sum(0)
        tsum += onehot.sum(0)
    s = scores(cm)
    present = tsum > 0
    soft = (2 * inter / (psum + tsum))[present].mean()
    return s, nll / count, soft


def test_eval_numbers_match_independent_computation(study):
    from kseg.data.readers import open_dataset

    runs, data = study
    res = CliRunner().invoke(
        main, ["eval", "tiny", "--runs", str(runs), "--splits", "train,val,test", "--per-class"]
    )
    assert res.exit_code == 0, res.output
    assert "Table I" in res.output and "Table II" in res.output
    ev = json.loads((runs / "tiny" / "eval.json").read_text())
    assert ev["mode"] == "full-frame" and ev["train_seconds"] == 12.5
    splits = open_dataset(data, CAMVID).splits
    for split in ("train", "val", "test"):
        s, loss, soft = expected_scores(runs / "tiny", splits[split])
        got = ev["splits"][split]
        assert got["frames"] == len(splits[split])
        for key in ("accuracy", "f1", "dice", "specificity", "sensitivity", "miou"):
            assert got[key] == pytest.approx(s[key], abs=1e-9), (split, key)
        assert got["loss"] == pytest.approx(loss, rel=1e-5)
        assert got["soft_dice"] == pytest.approx(soft, rel=1e-5)
        per_class = [math.nan if v is None else v for v in got["iou_per_class"]]
        np.testing.assert_allclose(per_class, s["iou_per_class"], atol=1e-9)
        assert got["pixels"] == int((np.asarray(got["confusion_matrix"])).sum()) == s["pixels"]
        assert got["eval_seconds"] > 0 and got["predict_ms_per_frame"] > 0
    # The printed table shows the same accuracy (3 digits) and the per-class header.
    assert f"{ev['splits']['val']['accuracy']:.3f}" in res.output
    assert "IoU per class: val" in res.output and "Bicyclist" in res.output
    md = (runs / "tiny" / "eval.md").read_text()
    assert "## Table I: scores on test" in md and "| metric | tiny |" in md
    assert f"| accuracy | {ev['splits']['test']['accuracy']:.3f} |" in md
    assert f"| miou | {ev['splits']['val']['miou']:.3f} |" in md
    assert "| tiny | val | 1 | 12.50 |" in md  # Table II: frames and train time


def test_patches_mode_equals_full_frame_for_pointwise_model(study, tmp_path):
    """64x64 frames on a 2x2 grid give 32x32 cells = the patch: no resizing happens, so
    a pointwise model's stitched logits are its whole-frame logits."""
    from kseg.data.readers import open_dataset

    runs, _ = study
    data64 = write_dataset(tmp_path / "data64", counts=(0, 2, 0), size=(64, 64), seed=7)
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--all",
            "--runs",
            str(runs),
            "--splits",
            "val",
            "--patches",
            "--json",
            "--data",
            str(data64),
        ],
    )
    assert res.exit_code == 0, res.output
    (result,) = json.loads(res.stdout)
    assert result["mode"] == "patches" and result["grid"] == [2, 2] and result["patch"] == 32
    s, loss, _ = expected_scores(runs / "tiny", open_dataset(data64, CAMVID).splits["val"])
    assert result["splits"]["val"]["miou"] == pytest.approx(s["miou"], abs=1e-9)
    assert result["splits"]["val"]["loss"] == pytest.approx(loss, rel=1e-4)


def test_missing_split_is_reported_not_fatal(tmp_path):
    data = write_dataset(tmp_path / "data", counts=(1, 1, 0))
    make_run(tmp_path / "runs", "tiny", data)
    (make_run(tmp_path / "runs", "fresh", data) / "best.keras").unlink()  # training just started
    res = CliRunner().invoke(main, ["eval", "--runs", str(tmp_path / "runs"), "--splits", "val,test"])
    assert res.exit_code == 0, res.output
    assert "fresh: no best.keras yet, skipped" in res.output
    assert f"test: not found in {data}, skipped" in res.output
    ev = json.loads((tmp_path / "runs" / "tiny" / "eval.json").read_text())
    assert set(ev["splits"]) == {"val"} and "test" in ev["skipped"]


def test_data_override_and_errors(study, tmp_path):
    runs, _ = study
    other = write_dataset(tmp_path / "other", counts=(0, 2, 0), seed=5)
    res = CliRunner().invoke(
        main, ["eval", "tiny", "--runs", str(runs), "--splits", "val", "--data", str(other), "--json"]
    )
    assert res.exit_code == 0, res.output
    (result,) = json.loads(res.stdout)
    assert result["data"] == str(other) and result["splits"]["val"]["frames"] == 2

    res = CliRunner().invoke(main, ["eval", "nope", "--runs", str(runs)])
    assert res.exit_code == 1 and "nope: no run there" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["eval", "--runs", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no trained runs found" in res.output
    res = CliRunner().invoke(main, ["eval", "--runs", str(runs), "--splits", "val,tset"])
    assert res.exit_code == 2 and "tset" in res.output


def test_split_accumulator_hand_worked():
    """Two classes, three pixels plus one void pixel, logits chosen by hand.

    pixel  true  logits      p(class 0), p(class 1)   argmax
      a     0    (0, 0)      0.5, 0.5                 0 (tie -> first)
      b     1    (0, ln 3)   0.25, 0.75               1
      c     1    (ln 3, 0)   0.75, 0.25               0
      d   void   (9, -9)     ignored everywhere
    cm = [[1, 0], [1, 1]]: accuracy 2/3, IoU0 = 1/2, IoU1 = 1/2.
    loss = (ln 2 + ln 4/3 + ln 4) / 3.
    soft Dice: class 0: 2*0.5 / (1.5 + 1) = 0.4; class 1: 2*(0.75+0.25) / (1.5 + 2) = 4/7.
    """
    from kseg.inference.scoring import SplitAccumulator

    l3 = math.log(3)
    logits = np.array([[[0, 0], [0, l3]], [[l3, 0], [9, -9]]], np.float32)  # (2, 2, K=2)
    y = np.array([[0, 1], [1, 2]], np.uint8)
    acc = SplitAccumulator(2, ignore_index=2)
    acc.update(logits[:1], y[:1])  # two updates: sums must accumulate across frames
    acc.update(logits[1:], y[1:])
    r = acc.result()
    assert r["confusion_matrix"] == [[1, 0], [1, 1]]
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert r["miou"] == pytest.approx(0.5)
    assert r["loss"] == pytest.approx((math.log(2) + math.log(4 / 3) + math.log(4)) / 3, rel=1e-6)
    assert r["soft_dice"] == pytest.approx((0.4 + 4 / 7) / 2, rel=1e-6)
    assert r["pixels"] == 3


def test_eval_all_goes_on_past_a_corrupt_run_and_fails_at_the_end(tmp_path):
    data = write_dataset(tmp_path / "data", counts=(0, 1, 0))
    runs = tmp_path / "runs"
    make_run(runs, "good", data)
    (make_run(runs, "broken", data) / "best.keras").write_bytes(b"not a keras file")
    make_run(runs, "zgood", data, seed=3)
    res = CliRunner().invoke(main, ["eval", "--all", "--runs", str(runs), "--splits", "val"])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("broken: cannot evaluate")]
    assert len(lines) == 1 and "best.keras" in lines[0]
    assert "1 run(s) not evaluated: broken" in res.output and "Traceback" not in res.output
    for name in ("good", "zgood"):  # evaluated before and after the broken one
        assert set(json.loads((runs / name / "eval.json").read_text())["splits"]) == {"val"}
    assert "Table II" in res.output and not (runs / "broken" / "eval.json").exists()


def test_eval_window_and_tta_modes_are_recorded(study):
    """A pointwise model gives the same scores whole, windowed and flipped; eval.json
    and Table II record the mode."""
    runs, _ = study
    base = json.loads(CliRunner().invoke(main, ["eval", "tiny", "--runs", str(runs), "--splits", "val",
                                                "--json"]).stdout)[0]
    res = CliRunner().invoke(main, ["eval", "tiny", "--runs", str(runs), "--splits", "val", "--window", "32",
                                    "--overlap", "0.5", "--tta", "flip"])
    assert res.exit_code == 0, res.output
    ev = json.loads((runs / "tiny" / "eval.json").read_text())
    assert ev["mode"] == "window" and ev["inference"]["window"] == 32 and ev["inference"]["tta_flip"]
    assert ev["splits"]["val"]["miou"] == pytest.approx(base["splits"]["val"]["miou"], abs=1e-9)
    assert ev["splits"]["val"]["loss"] == pytest.approx(base["splits"]["val"]["loss"], rel=1e-4)
    md = (runs / "tiny" / "eval.md").read_text()
    assert "window 32 (overlap 0.5), TTA flip, scales 1 |" in md  # Table II's mode column
    bad = CliRunner().invoke(main, ["eval", "tiny", "--runs", str(runs), "--patches", "--window", "32"])
    assert bad.exit_code == 1 and "cannot be combined" in bad.output
    bad = CliRunner().invoke(main, ["eval", "tiny", "--runs", str(runs), "--tta", "flop"])
    assert bad.exit_code == 1 and "flop" in bad.output
