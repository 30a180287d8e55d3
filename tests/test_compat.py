"""kseg.compat, every entry on the Keras and TensorFlow installed, and each fallback.

`make test-oldest` runs this file again on the oldest supported set, so a private API
that moved between releases shows up here, not in a user's fit.
"""

import os
import subprocess
import sys
import types
import zipfile

import keras
import numpy as np
import pytest

from kseg import compat


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch):
    monkeypatch.setattr(compat, "_NOTICES", set())


def _tiny_model(compiled=True):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))
    if compiled:
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_notice_is_one_line_once(capsys):
    compat.notice("k", "first")
    compat.notice("k", "again")
    assert capsys.readouterr().err == "kseg: note: first\n"


def test_batch_norm_fusable():
    assert compat.batch_norm_fusable(keras.layers.BatchNormalization())
    if keras.backend.backend() == "tensorflow":
        assert not compat.batch_norm_fusable(keras.layers.BatchNormalization(synchronized=True))
    if "renorm" in keras.layers.BatchNormalization.__init__.__code__.co_varnames:  # Keras 3.14+
        assert not compat.batch_norm_fusable(keras.layers.BatchNormalization(renorm=True))


def test_replace_call_routes_the_layer_through_the_new_call():
    layer = keras.layers.Dense(2)
    seen = []

    def call(owner, keras_call, inputs, **kwargs):
        seen.append(owner)
        return keras_call(inputs, **kwargs) * 0

    assert compat.replace_call(layer, call)
    assert not compat.replace_call(layer, call)  # once per layer
    out = layer(np.ones((1, 3), "float32"))
    assert seen == [layer] and float(np.abs(keras.ops.convert_to_numpy(out)).sum()) == 0


def test_replace_call_falls_back_with_a_notice(capsys):
    class ReadOnlyCall:
        call = property(lambda self: self.keras_call)

        def keras_call(self, inputs):
            return inputs

    assert not compat.replace_call(ReadOnlyCall(), lambda *a: None)
    assert "batch norm runs as Keras' own layer" in capsys.readouterr().err


def test_symbolic_build_creates_the_optimizer_variables():
    model = _tiny_model()
    images, labels = keras.KerasTensor((1, 8, 8, 3), "float32"), keras.KerasTensor((1, 8, 8), "uint8")
    before = len(model.optimizer.variables)
    assert compat.symbolic_build(model, (images, labels))
    assert len(model.optimizer.variables) > before  # Adam's slots, before any step


def test_symbolic_build_falls_back_with_a_notice(capsys):
    assert not compat.symbolic_build(types.SimpleNamespace(), None)
    assert "traced twice" in capsys.readouterr().err

    def refuse(data_batch):
        raise ValueError("cannot build this one")

    compat._NOTICES.clear()
    assert not compat.symbolic_build(types.SimpleNamespace(_symbolic_build=refuse), None)
    assert "cannot build this one" in capsys.readouterr().err


def test_tensorboard_learning_rate_logs_the_given_rate(tmp_path):
    callback = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    callback.set_model(_tiny_model())
    with compat.tensorboard_learning_rate(callback, 0.25):
        assert callback._collect_learning_rate({})["learning_rate"] == 0.25
    assert "_collect_learning_rate" not in vars(callback)  # the class's method again
    assert callback._collect_learning_rate({})["learning_rate"] == pytest.approx(0.001)


class _Batches(keras.utils.PyDataset):
    def __init__(self, workers):
        super().__init__(workers=workers)

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return np.full((2, 1), index, "float32"), np.zeros((2,), "uint8")


@pytest.mark.parametrize("workers", [1, 2])
def test_epoch_batches_in_order(workers):
    firsts = [int(x[0, 0]) for x, _ in compat.epoch_batches(_Batches(workers))]
    assert firsts == [0, 1, 2, 3, 4]


def test_epoch_batches_without_the_adapter(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "keras.src.trainers.data_adapters.py_dataset_adapter", None)
    firsts = [int(x[0, 0]) for x, _ in compat.epoch_batches(_Batches(2))]
    assert firsts == [0, 1, 2, 3, 4] and "read in this thread" in capsys.readouterr().err


def test_graph_walk_sees_every_layer():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    model(np.zeros((1, 4), "float32"))
    graph, names = compat.graph_of(model), []

    def operation_fn(op):
        def run(*args, **kwargs):
            names.append(op.name)
            return op(*args, **kwargs)
        return run

    out = compat.run_through_graph(graph, keras.KerasTensor((1, 4)), operation_fn)
    assert tuple(out.shape) == (1, 2) and names == [layer.name for layer in model.layers]

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert compat.graph_of(Subclassed()) is None


def _saved(tmp_path, model, name="m.keras"):
    path = tmp_path / name
    model.save(path)
    return path


def _load_error(path, **kwargs):
    with pytest.raises(Exception) as caught:
        keras.saving.load_model(path, **kwargs)
    return caught.value


def test_keras_load_failures_are_recognised(tmp_path):
    good = _saved(tmp_path, _tiny_model(compiled=False))
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(good.read_bytes()[:200])
    assert compat.keras_load_failure(_load_error(truncated))[0] == "not_a_zip"
    other = tmp_path / "m.txt"
    other.write_text("x")
    assert compat.keras_load_failure(_load_error(other))[0] == "not_keras"

    inputs = keras.Input((2,))
    lam = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    assert compat.keras_load_failure(_load_error(_saved(tmp_path, lam, "lam.keras")))[0] == "unsafe"
    assert compat.keras_load_failure(RuntimeError("File format not supported")) is None


def test_keras_load_failure_names_an_unknown_layer(tmp_path):
    good = _saved(tmp_path, _tiny_model(compiled=False))
    renamed = tmp_path / "unknown.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(renamed, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                data = data.replace(b'"BatchNormalization"', b'"NoSuchNorm"')
            dst.writestr(item, data)
    kind, detail = compat.keras_load_failure(_load_error(renamed))
    assert kind == "unknown_object" and "NoSuchNorm" in detail


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow entries")
def test_tensorflow_entries(monkeypatch, capsys):
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    tf.config.experimental.enable_op_determinism()
    compat.disable_op_determinism()
    assert not tf_config.is_op_determinism_enabled()
    assert compat.onednn_enabled() in (True, False)

    monkeypatch.delattr(tf_config, "disable_op_determinism")
    compat.disable_op_determinism()
    assert "cannot turn op determinism off" in capsys.readouterr().err
    from tensorflow.python.util import _pywrap_util_port

    monkeypatch.delattr(_pywrap_util_port, "IsMklEnabled")
    assert compat.onednn_enabled() is None


def test_import_kseg_changes_nothing():
    # The check, plus stderr's file descriptor, os.environ and sys.modules.
    code = ("import os, sys; m = list(sys.meta_path); env = dict(os.environ); fd = os.fstat(2); "
            "import kseg; kseg.list_models(); "
            "assert sys.meta_path == m, sys.meta_path; assert dict(os.environ) == env; "
            "assert os.fstat(2) == fd; "
            "assert not [k for k, v in sys.modules.items() if v is None and k == 'jax']; print('ok')")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export runs on TensorFlow")
def test_litert_export_before_keras_3_14_goes_through_a_saved_model(tmp_path, monkeypatch):
    import tensorflow as tf

    model = _tiny_model(compiled=False)
    signature = [keras.InputSpec(shape=(None, 8, 8, 3), dtype="float32")]
    monkeypatch.setattr(compat, "_keras_release", lambda: (3, 13))
    compat.export(model, tmp_path / "m.tflite", "litert", signature)
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "m.tflite"))
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]  # the SavedModel is gone
