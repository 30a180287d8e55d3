"""Export a run's checkpoint for serving: a Keras file, a TF SavedModel, ONNX or LiteRT.

  * keras: the model alone (no optimizer state) as a `.keras` file; loads with
    `keras.saving.load_model` on any backend (kseg must be importable for its metrics
    only if you compile it again).
  * tf_saved_model: `model.export(path, format="tf_saved_model")`, a folder with a
    `serve` endpoint taking float32 (B, H, W, 3) images in [0, 255] and returning logits.
  * onnx: `model.export(path, format="onnx")`, which runs tf2onnx; one input, float32
    (B, H, W, 3), batch and spatial sizes dynamic.

  * litert: `model.export(path, format="litert")`, a `.tflite` flatbuffer converted by
    TensorFlow's own `tf.lite.TFLiteConverter` (Keras 3.14 on TensorFlow, and kseg.compat
    before it; no extra package; the torch backend would need `litert-torch`); checked
    with `tf.lite.Interpreter`.

SavedModel, ONNX and LiteRT are traced by TensorFlow: Keras' JAX path needs jax2onnx and its
torch path needs static shapes, so kseg exports these two on the TensorFlow backend
(`kseg export` switches to it on its own when Keras is not yet imported).
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np

from kseg import compat
from kseg.errors import KsegError

FORMATS = ("keras", "tf_saved_model", "onnx", "litert")
SUFFIX = {"keras": ".keras", "tf_saved_model": "_saved_model", "onnx": ".onnx", "litert": ".tflite"}
TOLERANCE = 1e-3  # largest logit difference --check accepts, relative to max(1, largest |logit|)


def default_path(run, fmt):
    """`RUN/export/<arch><suffix>`, e.g. runs/unet/export/unet.onnx."""
    arch = run.config.get("arch", run.path.name)
    return run.path / "export" / f"{arch}{SUFFIX[fmt]}"


def float32_copy(model):
    """`model` itself, or for a model trained in mixed precision a float32 copy with the same
    weights (which mixed precision keeps in float32 already): ONNX runtimes and LiteRT
    interpreters lack bfloat16 kernels, and the copy serves float32 inputs everywhere."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=as_float32)
    copy.set_weights(model.get_weights())
    return copy


def export_model(model, fmt, out, size=None):
    """Write `model` to `out` in format `fmt` (one of FORMATS); returns `Path(out)`.

    `size=(H, W)` fixes the spatial input size of SavedModel, ONNX and LiteRT exports
    (default: dynamic). The file or folder appears whole or not at all: it is written beside
    `out` under a temporary name and then renamed.
    """
    import keras

    if fmt not in FORMATS:
        raise KsegError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if fmt != "keras" and keras.backend.backend() != "tensorflow":
        raise KsegError(f"Exporting {fmt} needs KERAS_BACKEND=tensorflow (this process runs "
                        f"{keras.backend.backend()}); `kseg export` switches on its own.")
    if fmt == "onnx":
        _require_tf2onnx()
    if fmt == "litert" and size is None:
        # With unknown H, W the converter falls back to TF ("Flex") kernels, which
        # tf.lite.Interpreter and LiteRT runtimes without the Flex delegate cannot run.
        raise KsegError("litert cannot take a network with dynamic height and width (it would need "
                        "the Flex delegate); fix the input size with --size HxW, e.g. --size 384x480.")
    if fmt != "keras":
        model = float32_copy(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staged = tmp / (out.name if fmt != "litert" else "model.tflite")  # Keras wants .tflite
        if fmt == "keras":
            model.save(staged)
        else:
            _traced_export(model, staged, fmt, size)
        _replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def export_run(run_path, fmt="keras", out=None, which="best", size=None):
    """Export checkpoint `which` of the run at `run_path`; returns the written path.

    `size=(H, W)` fixes the spatial input size of SavedModel and ONNX exports.
    """
    from kseg.runs import RunDir

    run = RunDir(run_path)
    if not run.config_path.is_file():
        raise KsegError(f"{run.path} is not a run directory (no config.json); see `kseg fit`.")
    if out is not None:  # a path the user gave: the write policy applies (kseg.writes)
        from kseg.writes import OutputFolder

        inputs = [run.best_path, run.last_path, run.config_path, run.state_path]
        OutputFolder(Path(out).parent, inputs=inputs).claim([Path(out).name])
    model = run.load_model(which)
    return export_model(model, fmt, out or default_path(run, fmt), size)


def load_exported(path, fmt):
    """A callable `f(images float32 (B, H, W, 3)) -> numpy logits` for an export."""
    path = Path(path)
    if fmt == "keras":
        import keras

        model = keras.saving.load_model(path, compile=False)
        return lambda x: np.asarray(model.predict_on_batch(x))
    if fmt == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return lambda x: loaded.serve(x).numpy()
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise KsegError("Checking an ONNX export needs onnxruntime: pip install 'kseg[onnx]'.") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if fmt == "litert":
        return _litert_runner(path)
    raise KsegError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def check_export(model, path, fmt, shape=(1, 64, 96, 3), seed=0):
    """Largest absolute difference between `model`'s logits and the export's, on
    random images of `shape` (H, W multiples of the model's stride)."""
    return compare_export(model, path, fmt, shape, seed)[0]


def compare_export(model, path, fmt, shape=(1, 64, 96, 3), seed=0):
    """(largest |difference|, largest |checkpoint logit|) on random images of `shape`.

    The reference is the checkpoint as exported: in float32 (see `float32_copy`)."""
    x = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
    expected = np.asarray(float32_copy(model).predict_on_batch(x), np.float32)
    got = np.asarray(load_exported(path, fmt)(x), np.float32)
    if got.shape != expected.shape:
        raise KsegError(f"{path} returns shape {got.shape}, the checkpoint {expected.shape}.")
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def verify_export(model, path, fmt, shape, tolerance=TOLERANCE):
    """The largest logit difference; KsegError (exit 1) when it exceeds
    `tolerance * max(1, largest |logit|)`, naming the difference."""
    diff, scale = compare_export(model, path, fmt, shape)
    limit = tolerance * max(1.0, scale)
    if not diff <= limit:  # NaN fails too
        raise KsegError(f"Check failed: {path} disagrees with the checkpoint: largest logit "
                        f"difference {diff:.3e} > {limit:.1e} (tolerance {tolerance:g} x max(1, |logit| "
                        f"{scale:.3g})).")
    return diff


def _litert_runner(path):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))

    def run(x):
        index = interpreter.get_input_details()[0]["index"]
        if tuple(interpreter.get_input_details()[0]["shape"]) != x.shape:
            interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, np.ascontiguousarray(x, np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run


def _traced_export(model, path, fmt, size):
    import keras

    _ensure_called(model, size)
    h, w = size or (None, None)
    signature = [keras.InputSpec(shape=(None, h, w, model.input_shape[-1]), dtype="float32")]
    try:
        compat.export(model, path, fmt, signature)
    except Exception as exc:
        first = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
        if size is not None:
            raise KsegError(f"Exporting {model.name} as {fmt} at {h}x{w} failed ({first}).") from None
        # Keras 3.15's ops.image.resize tests `size[0] <= 0` in Python, which fails on
        # the symbolic sizes of a dynamic-shape trace (bilinear UpSampling2D does this).
        raise KsegError(f"{fmt} cannot take {model.name} with dynamic height and width ({first}); "
                        "fix the input size with --size HxW, e.g. --size 384x480.") from None


def _ensure_called(model, size=None):
    # Keras exports trace a model only after it has been called once (a model loaded
    # from a .keras file has not been). Free sides take --size, or 64: a multiple of
    # every built-in network's stride (DDRNet's is 64).
    if not getattr(model, "_called", True):
        import keras

        sides = tuple(d or s for d, s in zip(model.input_shape[1:3], size or (64, 64), strict=True))
        shape = (*sides, model.input_shape[-1])
        model(keras.ops.zeros((1, *shape)))


def _require_tf2onnx():
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise KsegError("ONNX export needs tf2onnx (and onnxruntime to check it): "
                        "pip install 'kseg[onnx]'.") from None


def _replace(staged, out):
    """Move `staged` onto `out`; an existing folder is swapped out, then removed."""
    if out.is_dir():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staged.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staged.replace(out)
