"""Data-parallel training on an existing engine: `kseg fit --distribute`.

Each backend has its own mechanism, and kseg only picks it:
  * TensorFlow: `tf.distribute.MirroredStrategy` over all local devices (GPUs, or the
    CPU); with `TF_CONFIG` set, `MultiWorkerMirroredStrategy` across hosts.
  * JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`;
    with `KERAS_DISTRIBUTION_JOB_ADDRESSES` / `_NUM_PROCESSES` / `_PROCESS_ID` set,
    `keras.distribution.initialize()` (which calls `jax.distributed.initialize`) first.
  * PyTorch: not supported here (Keras has no torch distribution; use torchrun with
    your own loop).

Both keep one copy of the weights per device, split each global batch evenly across
the replicas and average the gradients, so a step with the same global batch gives the
same update as on one device (tests/test_distribute.py checks this on 2 CPU devices).
See docs/distributed.md for multi-host launch commands.
"""

import contextlib
import json
import os

from kseg.errors import KsegError

JAX_MULTIHOST_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


def strategy_scope(enabled=True):
    """Context manager inside which the model, optimizer and metrics are built.

    Model building and `compile` must happen inside it; on TensorFlow the strategy is
    then captured by the model, so `fit` may run outside. On JAX the distribution is
    set globally and stays set after the block (fit shards each batch with it).
    `enabled=False` gives a no-op context.
    """
    if not enabled:
        return contextlib.nullcontext()
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tf_strategy().scope()
    if backend == "jax":
        return _jax_scope()
    raise KsegError(f"--distribute supports the tensorflow and jax backends, not {backend!r}; "
                    "set KERAS_BACKEND=tensorflow or jax.")


def tf_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else MirroredStrategy.

    MirroredStrategy takes every local GPU, or the CPU when there is none (and every
    logical CPU device when more than one was configured).
    """
    import tensorflow as tf

    if _tf_config_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    devices = gpus or cpus
    return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])


def jax_distribution():
    """`keras.distribution.DataParallel` over all devices of all processes."""
    import keras

    if os.environ.get(JAX_MULTIHOST_ENV):
        _jax_initialize_once()
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def num_replicas(enabled=True):
    """How many replicas `strategy_scope(enabled)` trains on (1 when disabled)."""
    if not enabled:
        return 1
    import keras

    if keras.backend.backend() == "tensorflow":
        return tf_strategy().num_replicas_in_sync
    if keras.backend.backend() == "jax":
        return jax_distribution().num_model_replicas
    return 1


@contextlib.contextmanager
def _jax_scope():
    import keras

    # Stays set after the block: fit (outside it) shards batches by the current one.
    keras.distribution.set_distribution(jax_distribution())
    yield


_jax_initialized = False


def _jax_initialize_once():
    global _jax_initialized
    if not _jax_initialized:
        import keras

        keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
        _jax_initialized = True


def _tf_config_workers():
    """Number of workers in $TF_CONFIG's cluster (0 when unset)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError):
        raise KsegError("TF_CONFIG is not a JSON object with a 'cluster'; see docs/distributed.md.") from None
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
