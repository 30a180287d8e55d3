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
same update as on one device: tests/test_distribute.py checks this on 2 CPU devices,
tests/test_multiworker.py with two worker processes. `--batch-size` is the global batch
on every backend. See docs/distributed.md for multi-host launch commands.
"""

import contextlib
import json
import os

import keras

from kseg import compat
from kseg.errors import KsegError
from kseg.training.inputs import BatchView

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
    logical CPU device when more than one was configured). Made once per process:
    TensorFlow configures the collective ops of MultiWorkerMirroredStrategy only once.
    """
    global _tf_strategy
    if _tf_strategy is None:
        import tensorflow as tf

        if _tf_config_workers() > 1:
            _tf_strategy = compat.multi_worker_strategy()
        else:
            devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            _tf_strategy = tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    return _tf_strategy


_tf_strategy = None


def jax_distribution():
    """`keras.distribution.DataParallel` over all devices of all processes."""
    if os.environ.get(JAX_MULTIHOST_ENV):
        _jax_initialize_once()
    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    # Keras shards only tf.data datasets across processes; kseg's PyDataset is sliced per
    # process by `worker_batches` instead, which Keras needs to be told.
    distribution.auto_shard_dataset = False
    return distribution


def num_replicas(enabled=True):
    """How many replicas `strategy_scope(enabled)` trains on (1 when disabled)."""
    if not enabled:
        return 1
    if keras.backend.backend() == "tensorflow":
        return tf_strategy().num_replicas_in_sync
    if keras.backend.backend() == "jax":
        return jax_distribution().num_model_replicas
    return 1


def topology(batch_size, enabled=True):
    """The workers and replicas that `strategy_scope(enabled)` trains on (None when disabled).

    A dict for env.json: backend, strategy, workers (processes, one per host), worker
    (this one's index; 0 is the chief), replicas_per_worker, replicas (all workers),
    global_batch (`batch_size`: one step's patches over all workers), per_replica_batch,
    and this worker's devices. Fails when `batch_size` does not split over the replicas.
    """
    if not enabled:
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = tf_strategy()
        name = getattr(strategy, "display_name", type(strategy).__name__)
        replicas = strategy.num_replicas_in_sync
        workers, index = max(1, _tf_config_workers()), _tf_worker_index()
        devices = list(strategy.extended.worker_devices)
    elif backend == "jax":
        import jax

        replicas = jax_distribution().num_model_replicas
        workers, index = jax.process_count(), jax.process_index()
        name = "DataParallel" + (" + jax.distributed" if workers > 1 else "")
        devices = [str(d) for d in jax.local_devices()]
    else:
        strategy_scope(True)  # raises the one-line error of the other backends
    if batch_size % replicas:
        raise KsegError(f"--batch-size {batch_size} does not split over {replicas} replicas; use a "
                        f"multiple of {replicas}.")
    return {"backend": backend, "strategy": name, "workers": workers, "worker": index,
            "replicas_per_worker": replicas // workers, "replicas": replicas, "global_batch": batch_size,
            "per_replica_batch": batch_size // replicas, "devices": devices}


def describe(topo):
    """One line for the console: `topology()` as a user reads it."""
    return (f"distribute: {topo['strategy']} ({topo['backend']}), worker {topo['worker']} of "
            f"{topo['workers']}, {topo['replicas_per_worker']} replica(s) per worker ({topo['replicas']} "
            f"in all), global batch {topo['global_batch']} = {topo['per_replica_batch']} per replica")


def worker_batches(dataset, topo):
    """The part of each global batch this worker feeds to the engine.

    TensorFlow's strategies take the global batch on every worker and shard it
    themselves (each worker reads the same batches, from the same --seed), so `dataset`
    is returned as it is. Keras' JAX trainer instead joins the batches of all processes
    into one global batch, so each process keeps its slice: rows [w*B/W, (w+1)*B/W) of
    every batch of B (B/W = per_replica_batch * replicas_per_worker). A last batch that
    does not split over every replica is dropped (JAX needs equal shards).
    """
    if topo is None or topo["backend"] != "jax" or (topo["workers"], topo["replicas"]) == (1, 1):
        return dataset
    return _WorkerSlice(dataset, topo["worker"], topo["workers"], topo["replicas"])


class _WorkerSlice(BatchView):
    """`dataset` (a PatchDataset) with each batch cut to this worker's rows (see worker_batches)."""

    def __init__(self, dataset, worker, workers, replicas):
        super().__init__(dataset)
        self.part, self.parts = worker, workers
        n = len(dataset)
        # Keep the last batch only when it splits into equal shards over all replicas.
        last = len(dataset.indices) - (n - 1) * dataset.batch_size if n else 0
        self.batches = n - (1 if n and last % replicas else 0)

    def __len__(self):
        return self.batches

    def batch(self, epoch, index):
        batch = self.dataset.batch(epoch, index)
        rows = len(batch[0]) // self.parts  # this worker's rows of a (B, h, w, ...) batch
        return tuple(b[self.part * rows:(self.part + 1) * rows] for b in batch)


@contextlib.contextmanager
def _jax_scope():
    # Stays set after the block: fit (outside it) shards batches by the current one.
    keras.distribution.set_distribution(jax_distribution())
    yield


_jax_initialized = False


def _jax_initialize_once():
    global _jax_initialized
    if not _jax_initialized:
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


def _tf_worker_index():
    """This worker's place in $TF_CONFIG's cluster: the chief first, then the workers (0 when unset)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 0
    config = json.loads(text)
    task = config.get("task", {})
    chiefs = len(config.get("cluster", {}).get("chief", []))
    return int(task.get("index", 0)) + (chiefs if task.get("type") == "worker" else 0)
