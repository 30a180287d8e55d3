"""Two worker processes on localhost train as one process does: `kseg fit --distribute` across hosts.

Each case starts three real `kseg fit` processes (tests/kseg_tiny.py registers a tiny
network) on the same 64x64 synthetic scenes, seed 0, global batch 4 (8 patches: 2 steps
per epoch), 2 epochs: one plain run, and two workers that each hold one CPU replica:
  * TensorFlow: TF_CONFIG names a cluster of two free localhost ports, so kseg picks
    MultiWorkerMirroredStrategy; each worker reads the whole batch and TensorFlow gives
    it its half.
  * JAX: KERAS_DISTRIBUTION_* make kseg call keras.distribution.initialize
    (jax.distributed, gloo collectives on the CPU); kseg feeds each process its half.
Equal losses and scores over 4 steps mean both workers trained on the same global batches
as the plain run, with the same updates. A wrong split (each worker its own batches, or
halves from different batches) moves the losses by about 1e-2.
"""

import json
import socket
import subprocess

import pytest
from processes import child_env, tiny_cli

from kseg.runs import RunDir

TIMEOUT = 300  # seconds per process: a worker waiting for a dead peer must not hang CI
FIT = ["fit", "tiny_test", "--patch", "32", "--grid", "2x2", "--batch-size", "4", "--epochs", "2",
       "--seed", "0", "--precision", "float32", "--plain"]  # fmt: skip
# Relative tolerances of (losses and soft Dice, argmax scores). JAX computes one global
# step: equal to float rounding. TensorFlow averages each replica's loss over its own
# non-void pixels (docs/distributed.md), which moves the losses by ~5e-5 on these scenes;
# the slightly different weights then flip a few of the 4096 pixels of an argmax score.
TOLERANCE = {"tensorflow": (2e-4, 1e-2), "jax": (1e-6, 1e-6)}
SMOOTH = ("loss", "soft_dice", "val_loss", "val_soft_dice")
ARGMAX = ("accuracy", "miou", "val_accuracy", "val_miou")

pytestmark = pytest.mark.slow


def free_ports(n):
    """`n` localhost ports nobody listens on now; skips the test where none can be bound."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    except OSError as exc:
        pytest.skip(f"cannot bind a localhost port for the workers ({exc})")
    finally:
        for s in sockets:
            s.close()


def cluster_env(backend, index, ports):
    """The variables that make process `index` one of two workers."""
    if backend == "tensorflow":
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
    return {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{ports[0]}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}


def start(backend, data_dir, runs, extra_env=None, distribute=False):
    argv = [*FIT, "--data", data_dir, "--runs", runs, *(["--distribute"] if distribute else [])]
    return subprocess.Popen(tiny_cli(*argv), env=child_env(backend, **(extra_env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs):
    """Wait for every process; kill all of them when one fails or hangs. Returns their outputs."""
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, out[-3000:]
            outputs.append(out)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a kseg fit process ran longer than {TIMEOUT}s (a worker waiting for its peer?)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_workers_train_like_one_process(backend, data_dir, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    ports = free_ports(2)
    procs = [start(backend, data_dir, tmp_path / "one")]
    procs += [start(backend, data_dir, tmp_path / f"worker{i}", cluster_env(backend, i, ports),
                    distribute=True) for i in range(2)]
    outputs = finish(procs)

    strategy = {"tensorflow": "MultiWorkerMirroredStrategy", "jax": "DataParallel + jax.distributed"}[backend]
    for i, out in enumerate(outputs[1:]):
        assert (f"distribute: {strategy} ({backend}), worker {i} of 2, 1 replica(s) per worker (2 in all), "
                f"global batch 4 = 2 per replica") in out
        topo = RunDir(tmp_path / f"worker{i}" / "tiny_test").env["distribute"]
        assert (topo["workers"], topo["worker"], topo["replicas"], topo["global_batch"]) == (2, i, 2, 4)
    assert RunDir(tmp_path / "one" / "tiny_test").env["distribute"] is None

    one, *workers = (RunDir(tmp_path / name / "tiny_test").history()
                     for name in ("one", "worker0", "worker1"))
    assert _numbers(workers[0]) == _numbers(workers[1])  # both workers log the global numbers
    assert [r["epoch"] for r in workers[0]] == [r["epoch"] for r in one] == [1, 2]
    smooth, argmax = TOLERANCE[backend]
    for mine, theirs in zip(workers[0], one, strict=True):
        for keys, rel in ((SMOOTH, smooth), (ARGMAX, argmax)):
            for key in keys:
                assert mine[key] == pytest.approx(theirs[key], rel=rel), (key, mine["epoch"])


def _numbers(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
