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


@pytest.mark.parametrize(
    "fmt",
    ["keras", "tf_saved_model",
     pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="needs tf2onnx and onnxruntime"))],
)
def test_export_matches_checkpoint(run_dir, tmp_path, fmt):
    from kseg.inference import export
    from kseg.runs import RunDir

    out = export.export_run(run_dir, fmt, tmp_path / f"model{export.SUFFIX[fmt]}")
    assert out.exists()
    x = _images()  # a batch and a size the export never saw: both must be dynamic
    expected = RunDir(run_dir).load_model().predict_on_batch(x)
    got = export.load_exported(out, fmt)(x)
    assert got.shape == (2, 16, 24, 5)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_default_path_and_replace(run_dir):
    from kseg.inference import export

    first = export.export_run(run_dir, "tf_saved_model")
    assert first == run_dir / "export" / "tiny_saved_model"
    again = export.export_run(run_dir, "tf_saved_model")  # an existing folder is replaced whole
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

    from kseg.inference import export

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(3, 1, name="segmentation_output")(inputs)
    model = keras.Model(inputs, keras.layers.UpSampling2D(2, interpolation="bilinear")(x), name="bil")
    with pytest.raises(KsegError, match="--size HxW"):
        export.export_model(model, "tf_saved_model", tmp_path / "dyn")
    out = export.export_model(model, "tf_saved_model", tmp_path / "fixed", size=(8, 12))
    assert export.check_export(model, out, "tf_saved_model", shape=(2, 8, 12, 3)) < 1e-5


def test_not_a_run_dir(tmp_path):
    from kseg.inference import export

    with pytest.raises(KsegError, match="not a run directory"):
        export.export_run(tmp_path, "keras")
    result = CliRunner().invoke(__import__("kseg.cli").cli.main, ["export", str(tmp_path)])
    assert result.exit_code == 1 and "not a run directory" in result.output
