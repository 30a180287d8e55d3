"""Every private Keras and TensorFlow API kseg uses, in one place.

Each entry names what it reaches into, the releases it was read against, and what kseg
does where it is missing: a one-line notice on stderr (once per process) and a plain
Keras path, never a crash. `tests/test_compat.py` runs every entry, and `make
test-oldest` runs them again on the oldest supported set.

Read against Keras 3.8.0 to 3.15.1 and TensorFlow 2.19 to 2.21, the range setup.cfg
declares. Nothing else in kseg imports `keras.src`, `tensorflow.python` or reads an
underscored attribute of a Keras or TensorFlow object.

Imports nothing of kseg: it is the lowest layer (docs/architecture.md).
"""

import contextlib
import functools
import sys

_NOTICES = set()


def notice(key, text):
    """Print `kseg: note: text` on stderr, once per process and key."""
    if key not in _NOTICES:
        _NOTICES.add(key)
        print(f"kseg: note: {text}", file=sys.stderr, flush=True)


def _keras_version():
    import keras

    return keras.__version__


def _keras_release():
    """(major, minor) of the Keras installed, e.g. (3, 12)."""
    major, minor = _keras_version().split(".")[:2]
    return int(major), int(minor)


# --- Keras layers -----------------------------------------------------------------------


def batch_norm_fusable(layer):
    """True when nothing in `layer`'s setup stops TensorFlow's fused kernel from computing
    it: no batch renormalisation (an attribute since Keras 3.14; older releases have no
    renorm at all) and no synchronisation across replicas (the kernel sees one replica)."""
    return not getattr(layer, "renorm", False) and not getattr(layer, "synchronized", False)


def replace_call(layer, call):
    """Make `call(layer, keras_call, *args, **kwargs)` the `call` of this one layer object.

    Private behaviour relied on: `Layer.__call__` looks up `self.call` on each call, so
    an instance attribute wins over the class's method (Keras 3.8-3.15). Returns False,
    with a notice, where that no longer holds; the layer then keeps Keras' own call.
    """
    if isinstance(layer.call, functools.partial):
        return False  # replaced already
    keras_call = layer.call
    try:
        layer.call = functools.partial(call, layer, keras_call)
    except (AttributeError, TypeError):
        pass  # a read-only `call`: checked below
    if getattr(layer.call, "func", None) is not call:
        notice("replace_call", f"Keras {_keras_version()} does not let kseg replace a layer's "
                               f"call; batch norm runs as Keras' own layer (slower, same results)")
        return False
    return True


# --- Keras training ---------------------------------------------------------------------


def symbolic_build(model, data_batch):
    """Create the optimizer's, loss's and metrics' variables from batch shapes, as Keras'
    TensorFlow trainer does itself under a distribution strategy.

    Private: `Trainer._symbolic_build(data_batch=...)` (Keras 3.8-3.15). Without it, or
    where it refuses this model, Keras builds them on the first step (which then traces
    twice: a slower start, the same training). Returns whether it built.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is None:
        notice("symbolic_build", f"Keras {_keras_version()} has no Model._symbolic_build; "
                                 "the first train step is traced twice (a slower start)")
        return False
    try:
        build(data_batch=data_batch)
    except (ValueError, TypeError, NotImplementedError) as exc:
        notice("symbolic_build", f"the optimizer is built on the first step instead "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return False
    return True


@contextlib.contextmanager
def tensorboard_learning_rate(callback, rate):
    """Inside the block, `callback` (a keras.callbacks.TensorBoard) logs `rate` as the
    epoch's learning rate instead of the optimizer's current one.

    Private: `TensorBoard._collect_learning_rate(logs)` (Keras 3.8-3.15), wrapped on the
    instance. Without it TensorBoard logs the optimizer's rate, which a plateau may
    already have lowered for the next epoch.
    """
    collect = getattr(callback, "_collect_learning_rate", None)
    if rate is None or collect is None:
        if rate is not None:
            notice("tensorboard_lr", "TensorBoard logs the optimizer's rate after the epoch "
                                     "(history.csv has the rate each epoch trained at)")
        yield
        return

    def with_rate(logs):
        logs = collect(logs)
        logs["learning_rate"] = rate
        return logs

    callback._collect_learning_rate = with_rate
    try:
        yield
    finally:
        del callback._collect_learning_rate  # the class's method again


def epoch_batches(data):
    """Iterate one epoch of keras.utils.PyDataset `data` the way `model.fit` does: with
    `workers >= 2` its batches are built in Keras' thread or process pool, in order.

    Private: `keras.src.trainers.data_adapters.PyDatasetAdapter` (Keras 3.8-3.15). Without
    it the batches are read one after another in this thread, which times one worker.
    """
    try:
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    except ImportError:
        notice("epoch_batches", f"Keras {_keras_version()} has no PyDatasetAdapter; batches "
                                "are read in this thread, as with one worker")
        yield from (data[i] for i in range(len(data)))
        return
    adapter = PyDatasetAdapter(data, shuffle=False)
    adapter.on_epoch_begin()
    yield from adapter.get_numpy_iterator()
    adapter.on_epoch_end()


def export(model, path, fmt, input_signature):
    """`model.export(path, format=fmt, input_signature=...)`, quietly, on every supported Keras.

    Keras exports "tf_saved_model" and "onnx" from 3.8 and "litert" from 3.13 (read in
    keras/src/models/model.py, 3.8-3.15), but 3.13's LiteRT file needs TensorFlow's Flex
    delegate for plain convolutions (FlexConv2D), which tf.lite.Interpreter and most
    LiteRT runtimes lack. Before 3.14 a LiteRT file is converted here by TensorFlow's
    public tf.lite.TFLiteConverter from the SavedModel Keras exports, with builtin ops only.
    """
    if fmt == "litert" and _keras_release() < (3, 14):
        return _litert_through_saved_model(model, path, input_signature)
    model.export(str(path), format=fmt, verbose=False, input_signature=input_signature)


def _litert_through_saved_model(model, path, input_signature):
    import os
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=os.path.dirname(path) or ".") as tmp:
        folder = os.path.join(tmp, "saved_model")
        export(model, folder, "tf_saved_model", input_signature)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        with open(path, "wb") as f:
            f.write(converter.convert())


# --- Keras graphs -----------------------------------------------------------------------


def graph_of(model):
    """The functional graph behind `model` (a Sequential keeps one, built on first call),
    or None for a subclassed model, which has no graph to walk.

    Private: `Sequential._functional` and `Functional._run_through_graph` (3.8-3.15).
    """
    import keras

    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    if model is None or not hasattr(model, "_run_through_graph"):
        return None
    return model


def run_through_graph(graph, inputs, operation_fn):
    """Run `graph` (from `graph_of`) on `inputs`, each operation `op` applied as
    `operation_fn(op)(*args, **kwargs)`; the output of the graph."""
    return graph._run_through_graph(inputs, operation_fn=operation_fn)


# --- Keras messages ---------------------------------------------------------------------

# Keras says why a model file did not load only in its messages' text (3.8-3.15). Each
# kind: (exception class names, the text that marks it). Where a release words one
# differently, the failure is reported by kseg's generic line, which names the file.
_LOAD_FAILURES = {
    "not_a_zip": (("ValueError",), "File not found: filepath="),
    "not_keras": (("ValueError",), "File format not supported"),
    "unsafe": (("ValueError", "TypeError"), ("safe_mode", "unsafe_deserialization")),
}
# The class Keras could not rebuild: "Could not locate class 'X'", "Could not deserialize
# 'keras.layers.X' because ...", "Unknown layer: 'X'".
_UNKNOWN_OBJECT = r"Could not locate [^.]*|Could not deserialize '[^']*'|Unknown layer[^.]*"


def keras_load_failure(exc):
    """`(kind, detail)` for an exception of Keras' model loading, None for any other.

    kind: "not_a_zip" (Keras' wording for a file that is missing or not a zip; detail is
    the path it names), "not_keras", "unsafe" (safe mode refused code in the file) or
    "unknown_object" (detail: Keras' words naming the class)."""
    import re

    name, text = type(exc).__name__, str(exc)
    if name == "BadZipFile":
        return "not_a_zip", None
    for kind, (names, marks) in _LOAD_FAILURES.items():
        marks = (marks,) if isinstance(marks, str) else marks
        if name in names and any(mark in text for mark in marks):
            path = re.search(r"filepath=(.+?)\.(?:\s|$)", text) if kind == "not_a_zip" else None
            return kind, path.group(1) if path else None
    unknown = re.search(_UNKNOWN_OBJECT, text)
    if name in ("TypeError", "ValueError") and unknown:
        return "unknown_object", unknown.group(0)[:200]
    return None


# --- TensorFlow -------------------------------------------------------------------------


def disable_op_determinism():
    """Turn TensorFlow's op determinism off (TensorFlow has a public switch on only).

    Private: `tensorflow.python.framework.config.disable_op_determinism` (2.19-2.21),
    the flag Keras itself reads. Without it determinism stays as it was: slower kernels
    on a GPU, and Keras drops jit_compile while it is on."""
    try:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    except (ImportError, AttributeError):
        notice("op_determinism", "this TensorFlow cannot turn op determinism off; it stays "
                                 "as it was (pass --deterministic to make that explicit)")


def onednn_enabled():
    """Whether TensorFlow runs oneDNN's CPU kernels, None where it cannot be read.

    Private: `tensorflow.python.util._pywrap_util_port.IsMklEnabled` (2.19-2.21). Only
    informational (env.json, the precision and XLA choices' reasons): no notice."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def multi_worker_strategy():
    """tf.distribute.MultiWorkerMirroredStrategy that lets Keras 3 build a model from a
    distributed batch.

    Private behaviour relied on (Keras 3.8-3.15, keras-team/keras#20585): before `fit`,
    Keras' TensorFlow trainer reduces one whole distributed (x, y) batch with a single
    `strategy.reduce` call only to read its shapes and dtypes for a symbolic build.
    MirroredStrategy maps over such a nest; MultiWorkerMirroredStrategy fails ("Attempt
    to convert a value (PerReplica ...) to a Tensor"), and reducing leaf by leaf fails on
    the uint8 labels, which collective all-reduce does not take. So a nest gets this
    worker's first replica's values (same shapes and dtypes). Keras then averages each
    step's losses and metrics with `reduce("MEAN", v, axis=0)`, which fails on scalars;
    for a scalar the axis is dropped, averaging over all replicas as MirroredStrategy
    does. Only `reduce`, a public method, is overridden.
    """
    import tensorflow as tf

    class NestedReduce(tf.distribute.MultiWorkerMirroredStrategy):
        display_name = "MultiWorkerMirroredStrategy"

        def reduce(self, reduce_op, value, axis):
            if isinstance(value, (tuple, list, dict)):
                return tf.nest.map_structure(lambda v: self.experimental_local_results(v)[0], value)
            if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return NestedReduce()
