"""`kseg predict` (masks, overlays, inputs, errors), the figures and `kseg report`."""

import json
import re
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from test_eval import make_run, write_dataset  # noqa: E402  (tests/ is on sys.path under pytest)

from kseg.cli import main
from kseg.data.dataset_spec import CAMVID, DatasetSpec
from kseg.inference.outputs import colorize, overlay
from kseg.writes import MANIFEST


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    data = write_dataset(tmp / "data", counts=(1, 1, 2))
    runs = tmp / "runs"
    make_run(runs, "alpha", data, seed=1, train_seconds=3.0)
    make_run(runs, "beta", data, seed=2, train_seconds=4.0)
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for name, size in (("a.png", (64, 64)), ("b.jpg", (33, 47))):
        iio.imwrite(images / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return runs, images


def test_colorize_and_overlay_hand_worked():
    spec = DatasetSpec("toy", ("a", "b"), ((200, 0, 0), (0, 100, 50)), void=2)
    labels = np.array([[0, 1, 2]], np.uint8)
    np.testing.assert_array_equal(colorize(labels, spec), [[[200, 0, 0], [0, 100, 50], [0, 0, 0]]])
    image = np.full((1, 3, 3), 100, np.uint8)
    # 0.5 * 100 + 0.5 * colour; void shows the image unchanged when labels are given.
    np.testing.assert_array_equal(
        overlay(image, colorize(labels, spec)), [[[150, 50, 50], [50, 100, 75], [50, 50, 50]]]
    )
    np.testing.assert_array_equal(
        overlay(image, colorize(labels, spec), labels=labels, void=2)[0, 2], [100, 100, 100]
    )


def _expected_mask(run_dir, image_path):
    import keras

    model = keras.saving.load_model(run_dir / "best.keras", compile=False)
    image = iio.imread(image_path)[..., :3]
    labels = np.asarray(model(image[None].astype("float32")))[0].argmax(-1)
    return colorize(labels, CAMVID)


def test_predict_folder_writes_masks_in_palette(study, tmp_path):
    runs, images = study
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", "alpha", str(images), "--out", str(out), "--runs", str(runs)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST) == [
        "a_mask.png",
        "a_overlay.png",
        "b_mask.png",
        "b_overlay.png",
    ]
    mask = iio.imread(out / "a_mask.png")
    assert mask.shape == (64, 64, 3) and iio.imread(out / "b_overlay.png").shape == (33, 47, 3)
    np.testing.assert_array_equal(mask, _expected_mask(runs / "alpha", images / "a.png"))
    # The overlay is the 50/50 blend of the image and the mask (PNG is lossless).
    image = iio.imread(images / "a.png")
    np.testing.assert_array_equal(iio.imread(out / "a_overlay.png"), overlay(image, mask))


def test_predict_into_the_input_folder_twice_skips_its_own_outputs(study, tmp_path):
    runs, images = study
    folder = tmp_path / "frames"
    shutil.copytree(images, folder)
    argv = ["predict", "alpha", str(folder), "--out", str(folder), "--runs", str(runs)]
    first = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    for _ in range(2):
        res = CliRunner().invoke(main, argv)
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in folder.iterdir() if p.name != MANIFEST) == sorted(
        first + ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png"]
    )
    glob_res = CliRunner().invoke(main, ["predict", "alpha", str(folder / "*.png"), "--out", str(folder),
                                         "--runs", str(runs)])
    assert glob_res.exit_code == 0 and "wrote 2 files" in glob_res.output  # a.png only


def test_predict_glob_and_patches(study, tmp_path):
    runs, images = study
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main, ["predict", str(runs / "alpha"), str(images / "*.png"), "--out", str(out), "--patches"]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST) == ["a_mask.png", "a_overlay.png"]
    # 64x64 on the run's 2x2 grid = 32x32 cells = its patch, so nothing is resized and
    # a 1x1 conv (pointwise) gives the same mask as on the whole frame.
    np.testing.assert_array_equal(
        iio.imread(out / "a_mask.png"), _expected_mask(runs / "alpha", images / "a.png")
    )


def test_predict_bad_image_names_file_and_keeps_earlier_outputs(study, tmp_path):
    runs, images = study
    bad = tmp_path / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main, ["predict", "alpha", str(images / "a.png"), str(bad), "--out", str(out), "--runs", str(runs)]
    )
    assert res.exit_code == 1
    assert "zz_broken.png" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()[-1]) < 300  # one line
    assert (out / "a_mask.png").is_file() and (out / "a_overlay.png").is_file()
    res = CliRunner().invoke(
        main, ["predict", "alpha", str(tmp_path / "none*.png"), "--out", str(out), "--runs", str(runs)]
    )
    assert res.exit_code == 1 and "matches no files" in res.output


def test_learning_curves_and_panel_png(tmp_path):
    from kseg.reporting.figures import learning_curves, sample_panel

    rows = [
        {"epoch": 1, "loss": 2.0, "val_loss": 2.2, "accuracy": 0.3, "soft_dice": None},
        {"epoch": 2, "loss": 1.5, "val_loss": "", "accuracy": 0.5},
    ]
    path = learning_curves({"unet": rows, "deeplabv3": rows[:1]}, tmp_path / "curves.png")
    pixels = iio.imread(path)[..., :3]
    # 12.6 x (3.6 + one legend row of 0.22) inches at 100 dpi: train, val and two networks
    assert pixels.shape[:2] == (382, 1260)
    for color in ("#1f77b4", "#d62728"):  # each network's colour: its curves and legend entry
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        near = np.abs(pixels.astype(int) - rgb).sum(-1) < 30
        assert near.sum() > 20, color
        assert near[-30:].any(), color  # the legend, in the band below the panels
    taller = learning_curves({f"run{i}": rows for i in range(7)}, tmp_path / "seven.png")
    assert iio.imread(taller).shape[:2] == (426, 1260)  # 9 entries: three legend rows of 4
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    truth = rng.integers(0, 12, (48, 64), dtype=np.uint8)
    pred = rng.integers(0, 11, (48, 64), dtype=np.uint8)
    path = sample_panel(
        image,
        truth,
        {"unet": pred, "deeplabv3": truth.clip(0, 10)},
        CAMVID,
        tmp_path / "panel.png",
        title="t",
    )
    h, w = iio.imread(path).shape[:2]
    assert w == 960 and h > 3 * 48 * 960 / 64 / 3  # three rows of images, at least


def test_report_evaluates_on_the_fly_and_links_existing_figures(study, tmp_path):
    runs, _ = study
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["report", "--runs", str(runs), "--out", str(out), "--samples", "2"])
    assert res.exit_code == 0, res.output
    assert "no eval.json, evaluating now" in res.output
    for name in ("alpha", "beta"):
        assert json.loads((runs / name / "eval.json").read_text())["splits"]["test"]["frames"] == 2
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "figures/learning_curves.png" in links and sum("sample_" in link for link in links) == 2
    for link in links:
        assert iio.imread(out / link).ndim == 3
    html = (out / "report.html").read_text()
    assert all(f'src="{link}"' in html for link in links)
    # Both tables, with each run's train time (Table II) and its config and environment.
    assert "Table I" in md and "Table II" in md and "| alpha | test | 2 | 3.00 |" in md
    assert "| arch | tiny |" in md and "| lr | 0.001 |" in md and "| backend | tensorflow |" in md
    miou = [
        json.loads((runs / n / "eval.json").read_text())["splits"]["test"]["miou"] for n in ("alpha", "beta")
    ]
    assert "Table I: scores on test" in md and "| metric | alpha | beta |" in md
    assert f"| miou | {miou[0]:.3f} | {miou[1]:.3f} |" in md  # test comes after val


def test_predict_outputs_follow_the_options(study, tmp_path):
    runs, images = study
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", "alpha", str(images), "--out", str(out), "--runs", str(runs),
                                    "--save-probs", "--confidence", "--window", "32", "--tta", "flip"])
    assert res.exit_code == 0, res.output
    assert "wrote 8 files" in res.output
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST) == [
        "a_confidence.png", "a_mask.png", "a_overlay.png", "a_probs.npz",
        "b_confidence.png", "b_mask.png", "b_overlay.png", "b_probs.npz"]
    for stem in ("a", "b"):
        with np.load(out / f"{stem}_probs.npz") as npz:
            probs = npz["probs"]
            assert list(npz["classes"]) == list(CAMVID.classes)
        assert probs.dtype == np.float16 and probs.shape[-1] == 11
        np.testing.assert_allclose(probs.astype(np.float32).sum(-1), 1, atol=1e-2)
        mask = iio.imread(out / f"{stem}_mask.png")
        np.testing.assert_array_equal(colorize(probs.argmax(-1), CAMVID), mask)
        confidence = iio.imread(out / f"{stem}_confidence.png")
        assert confidence.shape == probs.shape[:2] and confidence.dtype == np.uint8
        np.testing.assert_allclose(confidence, 255 * probs.astype(np.float32).max(-1), atol=1.0)
    # A pointwise model: windows and flips change nothing, so the mask is the plain one.
    expected = _expected_mask(runs / "alpha", images / "a.png")
    np.testing.assert_array_equal(iio.imread(out / "a_mask.png"), expected)
    plain = tmp_path / "plain"
    res = CliRunner().invoke(main, ["predict", "alpha", str(images / "a.png"), "--out", str(plain),
                                    "--runs", str(runs), "--confidence"])
    assert res.exit_code == 0 and sorted(p.name for p in plain.iterdir() if p.name != MANIFEST) == [
        "a_confidence.png", "a_mask.png", "a_overlay.png"]


def test_predict_refuses_an_image_too_large_to_decode(study, tmp_path, monkeypatch):
    from kseg.inference import outputs as pr

    runs, images = study
    monkeypatch.setattr(pr, "MAX_PIXELS", 1000)
    res = CliRunner().invoke(main, ["predict", "alpha", str(images / "a.png"), "--out", str(tmp_path / "o"),
                                    "--runs", str(runs)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "a.png: 64x64 is 0 Mpixel, more than kseg decodes" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_report_with_a_window_mode_evaluates_again(study, tmp_path):
    runs, _ = study
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["report", "--runs", str(runs), "--out", str(out), "--samples", "1",
                                    "--window", "32", "--tta", "flip"])
    assert res.exit_code == 0, res.output
    ev = json.loads((runs / "alpha" / "eval.json").read_text())
    assert ev["mode"] == "window" and ev["inference"]["tta_flip"]
    assert "window 32 (overlap 0.33), TTA flip, scales 1" in (out / "report.md").read_text()
