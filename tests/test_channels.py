"""`--channels N`: images of any channel count, read from PNG and multi-band TIFF, trained,
scored and predicted; the first conv of pretrained encoders adapted to N channels."""

import json

import keras
import kseg_tiny
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

import kseg
from kseg.cli import main
from kseg.data import io
from kseg.data.augment import adjust_colors
from kseg.errors import DataError
from kseg.models.adapt import adapt_kernel
from kseg.models.xception import load_xception_weights, xception

H, W = 32, 32
RNG = np.random.default_rng(7)
BANDS = RNG.integers(1, 256, (H, W, 5), dtype=np.uint8)
SPEC = {"name": "bands", "classes": ["dark", "bright"]}


# ---------------------------------------------------------------- reading


def write_tiff(path, bands, how):
    """(H, W, C) uint8/uint16 bands as a TIFF: contiguous samples, planar planes, or one page each."""
    if how == "contig":
        tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig")
    elif how == "planar":
        tifffile.imwrite(path, np.moveaxis(bands, -1, 0), photometric="minisblack", planarconfig="separate")
    else:  # pages, written one at a time (one series each)
        with tifffile.TiffWriter(path) as tif:
            for i in range(bands.shape[-1]):
                tif.write(bands[..., i], photometric="minisblack")
    return path


@pytest.mark.parametrize("how", ["contig", "planar", "pages"])
@pytest.mark.parametrize("n", [2, 4, 5])
def test_multiband_tiff_reads_every_band(tmp_path, how, n):
    path = write_tiff(tmp_path / "a.tif", BANDS[..., :n], how)
    assert io.image_header(path) == (H, W, n)
    np.testing.assert_array_equal(io.read_image(path, n), BANDS[..., :n])


def test_16bit_and_pillow_written_tiffs(tmp_path):
    wide = write_tiff(tmp_path / "u16.tif", BANDS[..., :4].astype(np.uint16) * 256 + 255, "contig")
    np.testing.assert_array_equal(io.read_image(wide, 4), BANDS[..., :4])  # the top byte of each
    lzw = tmp_path / "lzw.tif"  # LZW needs imagecodecs in tifffile: Pillow decodes it
    Image.fromarray(BANDS[..., :4]).save(lzw, compression="tiff_lzw")
    np.testing.assert_array_equal(io.read_image(lzw, 4), BANDS[..., :4])
    pages = tmp_path / "pages.tif"  # Pillow's multi-page TIFF: one grey page per band
    Image.fromarray(BANDS[..., 0]).save(pages, save_all=True,
                                        append_images=[Image.fromarray(BANDS[..., i]) for i in (1, 2)])
    np.testing.assert_array_equal(io.read_image(pages, 3), BANDS[..., :3])


def test_png_channels_and_the_rgb_default(tmp_path):
    grey, rgba = tmp_path / "grey.png", tmp_path / "rgba.png"
    Image.fromarray(BANDS[..., 0]).save(grey)
    Image.fromarray(BANDS[..., :4]).save(rgba)
    np.testing.assert_array_equal(io.read_image(grey, 1), BANDS[..., :1])
    np.testing.assert_array_equal(io.read_image(rgba, 4), BANDS[..., :4])
    # --channels 3 (the default) keeps kseg's colour conversions: grey repeated, alpha dropped.
    np.testing.assert_array_equal(io.read_image(grey), np.repeat(BANDS[..., :1], 3, 2))
    np.testing.assert_array_equal(io.read_image(rgba), BANDS[..., :3])
    # ... but a TIFF's 4th band is data, not alpha: refused rather than dropped.
    four = write_tiff(tmp_path / "four.tif", BANDS[..., :4], "contig")
    with pytest.raises(DataError, match=r"four\.tif: 4 channels, but 3 expected \(--channels 3\)"):
        io.read_image(four)


@pytest.mark.parametrize("name, n, found", [("grey.png", 4, 1), ("rgba.png", 1, 4), ("five.tif", 4, 5)])
def test_a_mismatch_names_the_file_and_both_counts(tmp_path, name, n, found):
    path = tmp_path / name
    if name.endswith(".tif"):
        write_tiff(path, BANDS, "planar")
    else:
        Image.fromarray(BANDS[..., 0] if found == 1 else BANDS[..., :4]).save(path)
    for check in (io.read_image, io.check_channels):  # decoded, and from the header alone
        with pytest.raises(DataError) as info:
            check(path, n)
        msg = info.value.format_message()
        assert "\n" not in msg and str(path) in msg
        assert f"{found} channel" in msg and f"but {n} expected" in msg


def test_photometric_jitter_of_other_channel_counts():
    x = np.full((1, 2, 2, 4), 100.0, np.float32)
    x[0, 0, 0] = (50, 100, 150, 200)
    # Saturation 0 and hue 90 would recolour RGB; with 4 bands they do nothing.
    np.testing.assert_allclose(adjust_colors(x, saturation=0.0, hue=90.0), x, atol=1e-4)
    # Brightness scales every band alike; contrast pulls them to the mean of all bands.
    np.testing.assert_allclose(adjust_colors(x, brightness=1.5), np.minimum(x * 1.5, 255), atol=1e-3)
    mean = x.mean()  # 103.125, no empty (0) pixels
    np.testing.assert_allclose(adjust_colors(x, contrast=0.5), mean + 0.5 * (x - mean), atol=1e-3)
    grey = np.full((1, 2, 2, 1), 64.0, np.float32)
    np.testing.assert_allclose(adjust_colors(grey, gamma=2.0), 255 * (grey / 255) ** 2, rtol=1e-4)


# ---------------------------------------------------------------- fit, eval, predict


def write_dataset(root, n, fmt):
    """SegNet layout, 2 train / 1 val / 1 test frames of n channels: class 1 where band 0 is bright."""
    (root / "kseg.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "kseg.json").write_text(json.dumps(SPEC))
    rng = np.random.default_rng(n)
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
        for i in range(count):
            bands = rng.integers(0, 256, (H, W, n), dtype=np.uint8)
            Image.fromarray((bands[..., 0] > 127).astype(np.uint8)).save(root / f"{split}annot" / f"f{i}.png")
            if fmt == "png":
                Image.fromarray(bands[..., 0] if n == 1 else bands).save(root / split / f"f{i}.png")
            else:
                write_tiff(root / split / f"f{i}.tif", bands, ("contig", "planar")[i % 2])
    return root


def cli(*argv):
    return CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=False)


def fit(data, runs, n, *extra):
    return cli("fit", kseg_tiny.NAME, "--data", data, "--runs", runs, "--channels", n, "--epochs", 1,
               "--patch", 16, "--grid", "2x2", "--batch-size", 8, "--photometric", *extra)


@pytest.mark.slow  # builds and runs whole networks
@pytest.mark.parametrize("n, fmt", [(4, "tiff"), (1, "png")])
def test_fit_eval_and_predict_with_n_channels(tmp_path, n, fmt):
    data = write_dataset(tmp_path / "data", n, fmt)
    assert cli("data", "check", data, "--channels", n).exit_code == 0
    result = fit(data, tmp_path / "runs", n)
    assert result.exit_code == 0, result.output
    run = kseg.load_run(tmp_path / "runs" / kseg_tiny.NAME)
    assert run.config["channels"] == n
    assert run.load_model("best").input_shape == (None, None, None, n)

    result = cli("eval", kseg_tiny.NAME, "--runs", tmp_path / "runs", "--splits", "val,test")
    assert result.exit_code == 0, result.output
    scores = json.loads((run.path / "eval.json").read_text())["splits"]
    assert scores["val"]["pixels"] == scores["test"]["pixels"] == H * W

    image = next((data / "test").iterdir())
    result = cli("predict", kseg_tiny.NAME, image, "--out", tmp_path / "out", "--runs", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    overlay = np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_overlay.png"))
    assert overlay.shape == (H, W, 3)


def test_a_file_of_another_channel_count_stops_check_and_fit(tmp_path):
    data = write_dataset(tmp_path / "data", 4, "tiff")
    bad = data / "val" / "f0.tif"
    write_tiff(bad, BANDS[..., :3], "contig")
    for result in (cli("data", "check", data, "--channels", 4), fit(data, tmp_path / "runs", 4)):
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert f"{bad}: 3 channels, but 4 expected (--channels 4)" in lines[-1]
        assert "Traceback" not in result.output
    assert not (tmp_path / "runs" / kseg_tiny.NAME / "state.json").exists()  # stopped before training


# ---------------------------------------------------------------- first-conv adaptation


def test_adapted_kernels_by_hand():
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0], kernel[0, 0, :, 1] = (1, 2, 3), (4, 5, 6)
    grey, delta = adapt_kernel(kernel, 1)  # equal input scaling: the plain sum
    np.testing.assert_array_equal(grey[0, 0, :, :], [[6, 15]])
    np.testing.assert_array_equal(delta, [0, 0])
    four, _ = adapt_kernel(kernel, 4)  # R, G, B, R, each times 3/4
    np.testing.assert_allclose(four[0, 0, :, 0], [0.75, 1.5, 2.25, 0.75])
    # Per-channel statistics: weights s/s_c, and delta = sum_c (m - m_c)/s_c W_c.
    grey, delta = adapt_kernel(kernel, 1, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0))
    s = 7 / 3  # the mean std; the mean mean is 0.2
    np.testing.assert_allclose(grey[0, 0, 0, 0], s * (1 / 1 + 2 / 2 + 3 / 4), rtol=1e-6)
    np.testing.assert_allclose(delta[0], 0.1 / 1 * 1 + 0 + -0.1 / 4 * 3, rtol=1e-5)


@pytest.fixture(scope="module")
def keras_xception():
    model = keras.applications.Xception(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(0)
    for w in model.weights:  # non-trivial BN statistics
        if w.path.endswith(("gamma", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif w.path.endswith(("beta", "moving_mean")):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    return model


def grey_batch(side=64):
    return np.random.default_rng(3).uniform(0, 255, (1, side, side, 1)).astype("float32")


@pytest.mark.slow  # builds and runs whole networks
def test_xception_on_one_channel_is_the_rgb_network_on_grey(keras_xception):
    rgb = load_xception_weights(xception(input_shape=(None, None, 3)), keras_xception)
    grey = load_xception_weights(xception(input_shape=(None, None, 1)), keras_xception)
    assert grey.get_layer("block1_conv1").kernel.shape == (3, 3, 1, 32)
    g = grey_batch() / 127.5 - 1  # the bare backbone takes [-1, 1]
    want = np.asarray(rgb(np.repeat(g, 3, -1)))
    assert np.abs(want).mean() > 1e-2
    np.testing.assert_allclose(np.asarray(grey(g)), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.fixture(scope="module")
def resnet_state():
    from test_pretrained import random_state  # tests/ is on sys.path, as for kseg_tiny

    return random_state()


def unet(state, channels, like=None):
    """A U-Net from the ResNet-34 state dict; the decoder copied from `like`."""
    model = kseg.create_model("unet", num_classes=3, encoder_weights=state,
                              input_shape=(None, None, channels))
    for mine, theirs in zip(model.layers, like.layers if like else [], strict=False):
        if theirs.weights and theirs.name not in ("conv1_conv", "conv1_bn"):
            mine.set_weights(theirs.get_weights())
    return model


def tap(model, name, x):
    return np.asarray(keras.Model(model.input, model.get_layer(name).output)(x))


@pytest.mark.slow  # builds and runs whole networks
def test_unet_stems_adapt_to_one_and_six_channels(resnet_state):
    rgb = unet(resnet_state, 3)
    g = grey_batch()
    # One channel: the stem equals the RGB stem on grey except within the 7x7 conv's reach
    # of the border (zero padding; see kseg.models.adapt); the network stays close.
    grey = unet(resnet_state, 1, like=rgb)
    want, got = tap(rgb, "conv1_relu", np.repeat(g, 3, -1)), tap(grey, "conv1_relu", g)  # (1, 32, 32, 64)
    np.testing.assert_allclose(got[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], atol=1e-4)
    want, got = np.asarray(rgb(np.repeat(g, 3, -1))), np.asarray(grey(g))
    assert np.abs(got - want).mean() < 0.02 * np.abs(want).mean()
    # Six channels R, G, B, R, G, B: each kernel halved, so [x, x] gives the RGB network on x.
    six = unet(resnet_state, 6, like=rgb)
    x = np.random.default_rng(4).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    want = np.asarray(rgb(x))
    np.testing.assert_allclose(np.asarray(six(np.concatenate([x, x], -1))), want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())
