"""kseg export: each format reloads and gives the checkpoint's logits."""

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from kseg.errors import KsegError

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory made by hand: config.json and best.keras of a tiny model."""
    import keras

    path = tmp_path_factory.mktemp("runs") / "tiny"
    path.mkdir()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)  # (B, H/2, W/2, 4)
    x = keras.layers.UpSampling2D(2, name="up")(x)  # nearest: traces with dynamic H, W
    x = keras.layers.Conv2D(5, 1, name="segmentation_output")(x)  # (B, H, W, 5) logits
    keras.Model(inputs, x, name="tiny").save(path / "best.keras")
    (path / "config.json").write_text(json.dumps({"arch": "tiny", "stride": 4}))
    return path


def _images(shape=(2, 16, 24, 3)):
    return np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)


def _has_litert():
    try:
        import tensorflow as tf

        return hasattr(tf.lite, "TFLiteConverter") and hasattr(tf.lite, "Interpreter")
    except ImportError:
        return False


HAS_LITERT = _has_litert()
FORMATS = ["keras", "tf_saved_model",
           pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX,
                                                         reason="needs tf2onnx and onnxruntime")),
           pytest.param("litert", marks=pytest.mark.skipif(not HAS_LITERT, reason="needs tf.lite"))]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_matches_checkpoint(run_dir, tmp_path, fmt):
    from kseg.inference import exporters
    from kseg.runs import RunDir

    size = (16, 24) if fmt == "litert" else None  # LiteRT's builtin ops take fixed H, W
    out = exporters.export_run(run_dir, fmt, tmp_path / f"model{exporters.SUFFIX[fmt]}", size=size)
    assert out.exists()
    x = _images()  # a batch and (but for litert) a size the export never saw: both dynamic
    expected = RunDir(run_dir).load_model().predict_on_batch(x)
    got = exporters.load_exported(out, fmt)(x)
    assert got.shape == (2, 16, 24, 5)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_default_path_and_replace(run_dir):
    from kseg.inference import exporters

    first = exporters.export_run(run_dir, "tf_saved_model")
    assert first == run_dir / "export" / "tiny_saved_model"
    again = exporters.export_run(run_dir, "tf_saved_model")  # an existing folder is replaced whole
    assert again == first and (first / "saved_model.pb").is_file()
    assert sorted(p.name for p in first.parent.iterdir()) == ["tiny_saved_model"]  # no temporaries left


def test_cli_export_checks_logits(run_dir, tmp_path):
    from kseg.cli import main

    out = tmp_path / "m.keras"
    result = CliRunner().invoke(main, ["export", str(run_dir), "--format", "keras", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "largest logit difference" in result.output


def test_bilinear_upsampling_needs_fixed_size(tmp_path):
    # Keras 3.15's image.resize cannot trace symbolic sizes; --size fixes H and W.
    import keras

    from kseg.inference import exporters

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(3, 1, name="segmentation_output")(inputs)
    model = keras.Model(inputs, keras.layers.UpSampling2D(2, interpolation="bilinear")(x), name="bil")
    with pytest.raises(KsegError, match="--size HxW"):
        exporters.export_model(model, "tf_saved_model", tmp_path / "dyn")
    out = exporters.export_model(model, "tf_saved_model", tmp_path / "fixed", size=(8, 12))
    assert exporters.check_export(model, out, "tf_saved_model", shape=(2, 8, 12, 3)) < 1e-5
    # LiteRT's builtin ops take fixed H, W only: refused, in one line, before any tracing.
    with pytest.raises(KsegError, match="--size HxW") as err:
        exporters.export_model(model, "litert", tmp_path / "dynamic.tflite")
    assert "\n" not in str(err.value) and not (tmp_path / "dynamic.tflite").exists()


def test_not_a_run_dir(tmp_path):
    from kseg.inference import exporters

    with pytest.raises(KsegError, match="not a run directory"):
        exporters.export_run(tmp_path, "keras")
    result = CliRunner().invoke(__import__("kseg.cli").cli.main, ["export", str(tmp_path)])
    assert result.exit_code == 1 and "not a run directory" in result.output


def test_check_fails_on_an_export_that_disagrees(run_dir, tmp_path, monkeypatch):
    from kseg.cli import main
    from kseg.inference import exporters

    real = exporters.load_exported

    def tampered(path, fmt):  # as if the exported weights had been changed
        run = real(path, fmt)
        return lambda x: run(x) + 0.25

    monkeypatch.setattr(exporters, "load_exported", tampered)
    out = tmp_path / "m.keras"
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(out)])
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: Check failed:") and "largest logit difference 2.500e-01" in line
    ok = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(out), "--tolerance", "0.3"])
    assert ok.exit_code == 0 and "largest logit difference 2.50e-01" in ok.output
    assert CliRunner().invoke(main, ["export", str(run_dir), "--out", str(out), "--no-check"]).exit_code == 0


# The registry's networks, built and exported in one fresh process. Keras' tracing and
# tf2onnx are pure Python, which the line tracer of `make coverage` (pytest-cov) slows
# about twofold, and kseg's lines on this path are the ones the tiny model's tests above run.
# Only the two converters run here, ONNX and LiteRT: they are what a real network's layers
# can break. DeepLabV3 goes through both: its layers (Xception's separable and atrous convs,
# batch norm, residual adds, global pooling, bilinear resizing, concatenation) hold every
# kind of U-Net's but the nearest upsampling, which the tiny model above sends through both
# converters. U-Net goes through LiteRT, the cheaper one (ONNX took 36 s, LiteRT 20 s of
# the 113 s that the four pairs took in one process on the 2-core AVX2 CPU). ASPP is 16
# filters wide: the same layers, and half of tf2onnx's time (at 256, its 27 atrous taps of
# 2048 -> 256 channels hold 14M of the network's 36M weights). A .keras file of each
# network reloads in tests/test_models.py, and the SavedModel path is the one the tiny
# model's tests above run.
# DDRNet-23-slim through ONNX: the real-time network, and a stride of 64 (15 s).
REAL_NETWORKS = {"unet": {}, "deeplabv3": {"aspp_filters": 16}, "ddrnet23slim": {}}
REAL_FORMATS = {"unet": ("litert",), "deeplabv3": ("onnx", "litert"), "ddrnet23slim": ("onnx",)}
REAL_EXPORTS = """
import json
import kseg
from kseg.errors import KsegError
from kseg.inference import exporters

out = {{}}
for arch, kwargs in {archs!r}.items():
    model = kseg.create_model(arch, num_classes=3, **kwargs)
    diffs = {{}}
    for fmt in {formats!r}[arch]:
        try:
            path = {tmp!r} + f"/{{arch}}{{exporters.SUFFIX[fmt]}}"
            path = exporters.export_model(model, fmt, path, size=(64, 64))
            diffs[fmt] = exporters.verify_export(model, path, fmt, shape=(1, 64, 64, 3))
        except KsegError as exc:
            diffs[fmt] = str(exc)
    try:  # no --size: LiteRT's builtin ops need fixed H, W
        exporters.export_model(model, "litert", {tmp!r} + "/dynamic.tflite")
        refused = None
    except KsegError as exc:
        refused = str(exc)
    out[arch] = {{"diffs": diffs, "refused": refused}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def real_exports(tmp_path_factory, run_python):
    """{arch: {"diffs": {format: largest logit difference, or the error}, "refused": ...}}, and
    {arch: the formats checked}."""
    formats = {arch: [f for f in fmts if (f != "onnx" or HAS_ONNX) and (f != "litert" or HAS_LITERT)]
               for arch, fmts in REAL_FORMATS.items()}
    code = REAL_EXPORTS.format(archs=REAL_NETWORKS, formats=formats, tmp=str(tmp_path_factory.mktemp("real")))
    return json.loads(run_python(code, timeout=1200).strip().splitlines()[-1]), formats


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(REAL_NETWORKS))
def test_real_networks_export_through_the_converters(arch, real_exports):
    """The registry's networks at 64x64 and 3 classes, through the converters of
    REAL_FORMATS at a fixed --size; DeepLabV3's bilinear upsampling cannot be traced with
    dynamic sizes: the error names --size."""
    results, formats = real_exports
    diffs = results[arch]["diffs"]
    assert list(diffs) == formats[arch]
    for fmt, diff in diffs.items():
        assert isinstance(diff, float) and diff < 1e-3, (fmt, diff)
    if arch == "deeplabv3":
        refused = results[arch]["refused"]
        assert refused is not None and "--size HxW" in refused and "\n" not in refused


def test_a_mixed_precision_model_exports_in_float32(tmp_path):
    """Runtimes lack bfloat16 kernels: the export is a float32 copy with the same weights."""
    import keras

    from kseg.inference import exporters
    from kseg.training.loop import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1, dtype="float32", name="head")(x))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    copy = exporters.float32_copy(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), copy.get_weights(), strict=True))
    path = exporters.export_model(model, "onnx", tmp_path / "m.onnx")
    assert exporters.verify_export(model, path, "onnx", (1, 8, 8, 3)) < 1e-4
