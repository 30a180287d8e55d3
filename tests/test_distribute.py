"""kseg.training.distribute: one train step on 2 CPU replicas equals the same step on 1 device,
`kseg fit --distribute` end to end on 2 CPU devices, and the topology it reports.

The step and CLI checks of a backend run in one fresh process, because the device count is
fixed at start-up: TensorFlow splits its CPU into 2 logical devices, JAX gets 2 host devices from
XLA_FLAGS (two worker processes: tests/test_multiworker.py). In the step check the model
is tiny, the global batch is 4 (2 per replica), the optimizer is SGD, so the updated
weights differ only if the gradients do.
"""

import json
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from processes import child_env

from kseg.errors import KsegError
from kseg.runs import RunDir
from kseg.training import distribute

STEP = """
import json, os, sys
import numpy as np
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from kseg.training import distribute
from kseg.losses import build_loss

def build():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    return keras.Model(inp, keras.layers.Conv2D(3, 1, name="segmentation_output")(x))

def step(void):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 8, 8, 3)).astype("float32") / 255
    y = rng.integers(0, 3, (4, 8, 8)).astype("uint8")
    if void:
        y[:2, :6] = 3  # void (class 3) only in the first replica's half of the batch
    keras.utils.set_random_seed(1)
    w0 = build().get_weights()
    out = {}
    for enabled in (False, True):
        with distribute.strategy_scope(enabled):
            model = build()
            model.set_weights(w0)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=build_loss("ce", 3, 3))
        loss = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"][0]
        out[str(enabled)] = {"loss": float(loss), "replicas": distribute.num_replicas(enabled),
                             "weights": [w.tolist() for w in model.get_weights()]}
    out["moved"] = max(float(np.abs(a - b).max()) for a, b in zip(w0, model.get_weights()))
    return out

out = {"clean": step(False), "void": step(True)}
# Then the real `kseg fit --distribute` (CLI) in the same process, on the same 2 devices.
import kseg_tiny
from kseg.cli.main import main

main.main([*FIT, "--data", DATA, "--runs", RUNS], prog_name="kseg", standalone_mode=False)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def two_devices(data_dir, tmp_path_factory):
    """`get(backend) -> (STEP's results, the process's stdout, the fit's RunDir)`: one fresh
    process per backend (the device count is fixed at start-up) for the step check and the
    CLI fit, made on first use."""
    done = {}

    def get(backend):
        if backend not in done:
            if backend == "jax":
                pytest.importorskip("jax")
            runs = tmp_path_factory.mktemp(f"runs-{backend}")
            # JAX's 2 devices; STEP splits TensorFlow's CPU itself
            env = child_env(backend, XLA_FLAGS="--xla_force_host_platform_device_count=2")
            code = f"FIT, DATA, RUNS = {FIT!r}, {str(data_dir)!r}, {str(runs)!r}\n{STEP}"
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
            done[backend] = (_steps(proc.stdout), proc.stdout, RunDir(runs / "tiny_test"))
        return done[backend]

    return get


def _steps(stdout):
    """{"clean": (loss 1 device, loss 2 replicas, max weight difference), "void": ...}."""
    results = {}
    for case, out in json.loads(stdout.strip().splitlines()[-1]).items():
        one, two = out["False"], out["True"]
        assert (one["replicas"], two["replicas"]) == (1, 2)
        assert out["moved"] > 1e-3  # the step changed the weights, so equal weights mean equal gradients
        pairs = zip(one["weights"], two["weights"], strict=True)
        diff = max(abs(a - b) for wa, wb in pairs for a, b in _flat(wa, wb))
        results[case] = (one["loss"], two["loss"], diff)
    return results


def _flat(a, b):
    if isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            yield from _flat(x, y)
    else:
        yield a, b


def test_tensorflow_mirrored_two_replicas(two_devices):
    results = two_devices("tensorflow")[0]
    loss1, loss2, diff = results["clean"]
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    assert diff < 1e-5
    # Known limitation: MirroredStrategy averages each replica's mean over its own
    # non-void pixels, so uneven void weighs pixels slightly differently (docs/distributed.md).
    loss1, loss2, diff = results["void"]
    assert loss2 != pytest.approx(loss1, rel=1e-6)
    assert loss2 == pytest.approx(loss1, rel=2e-2)


def test_jax_data_parallel_two_devices(two_devices):
    # JAX shards one global computation: the mean over non-void pixels stays global,
    # so even uneven void gives the single-device step.
    for case, (loss1, loss2, diff) in two_devices("jax")[0].items():
        assert loss2 == pytest.approx(loss1, rel=1e-5), case
        assert diff < 1e-5, case


# --- kseg fit --distribute through the CLI, and the topology it reports ----------------

FIT = ["fit", "tiny_test", "--patch", "32", "--grid", "2x2", "--batch-size", "4", "--epochs", "1", "--plain",
       "--distribute"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_fit_distribute_on_two_cpu_devices_through_the_cli(backend, two_devices):
    # The real `kseg fit`, in the process of the step check: the device count is fixed at start-up.
    _, stdout, run = two_devices(backend)
    strategy = {"tensorflow": "MirroredStrategy", "jax": "DataParallel"}[backend]
    line = f"distribute: {strategy} ({backend}), worker 0 of 1, 2 replica(s) per worker (2 in all), " \
           "global batch 4 = 2 per replica"
    assert line in stdout
    assert (run.state.status, run.state.epoch) == ("finished", 1)
    assert run.last_path.is_file() and len(run.history()) == 1
    topo = run.env["distribute"]
    assert (topo["strategy"], topo["replicas"], topo["per_replica_batch"]) == (strategy, 2, 2)
    assert len(topo["devices"]) == 2


def test_tf_config_gives_the_worker_count_and_index(monkeypatch):
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    for task, index in ((("chief", 0), 0), (("worker", 0), 1), (("worker", 1), 2)):
        config = {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        assert (distribute._tf_config_workers(), distribute._tf_worker_index()) == (3, index)
    monkeypatch.delenv("TF_CONFIG")
    assert (distribute._tf_config_workers(), distribute._tf_worker_index()) == (0, 0)
    monkeypatch.setenv("TF_CONFIG", "[1]")
    with pytest.raises(KsegError, match="TF_CONFIG is not a JSON object"):
        distribute._tf_config_workers()


def test_topology_describes_the_replicas_and_refuses_an_uneven_batch(monkeypatch):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fake strategy stands in for a TensorFlow one")
    devices = SimpleNamespace(worker_devices=("/cpu:0", "/cpu:1"))
    fake = SimpleNamespace(num_replicas_in_sync=2, extended=devices)
    monkeypatch.setattr(distribute, "tf_strategy", lambda: fake)
    assert distribute.topology(8, enabled=False) is None
    topo = distribute.topology(8)
    assert topo == {"backend": "tensorflow", "strategy": "SimpleNamespace", "workers": 1, "worker": 0,
                    "replicas_per_worker": 2, "replicas": 2, "global_batch": 8, "per_replica_batch": 4,
                    "devices": ["/cpu:0", "/cpu:1"]}
    assert distribute.describe(topo) == ("distribute: SimpleNamespace (tensorflow), worker 0 of 1, "
                                         "2 replica(s) per worker (2 in all), global batch 8 = 4 per replica")
    with pytest.raises(KsegError, match="--batch-size 7 does not split over 2 replicas; use a multiple of 2"):
        distribute.topology(7)


class Patches(keras.utils.PyDataset):
    """A stand-in PatchDataset: patch i is the array full of i; batches of 4, the last one short."""

    def __init__(self, n=10, batch_size=4):
        super().__init__()
        self.indices, self.batch_size, self.epoch = np.arange(n), batch_size, 0

    def __len__(self):
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, index):
        return self.batch(self.epoch, index)

    def batch(self, epoch, index):
        self.asked = (epoch, index)
        ids = self.indices[index * self.batch_size:(index + 1) * self.batch_size]
        return np.repeat(ids[:, None], 3, 1).astype("float32"), ids.astype("uint8")

    def set_epoch(self, epoch):
        self.epoch = epoch


def test_jax_workers_feed_their_rows_of_every_global_batch():
    data = Patches()  # batches of patches 0-3, 4-7, 8-9
    jax_topo = {"backend": "jax", "workers": 2, "worker": 1, "replicas": 2}
    part = distribute.worker_batches(data, jax_topo)
    assert len(part) == 3 and part.workers == data.workers  # loader threads are the dataset's own
    assert [part[i][1].tolist() for i in range(3)] == [[2, 3], [6, 7], [9]]  # worker 1: the second half
    part.set_epoch(5)
    assert data.epoch == 5
    part.batch(7, 2)  # RunBatches asks for a batch of any epoch: the slice passes it on
    assert data.asked == (7, 2)
    # 2 replicas per worker: the last batch (2 patches) cannot give all 4 replicas a patch.
    assert len(distribute.worker_batches(data, {**jax_topo, "replicas": 4})) == 2
    # TensorFlow splits the global batch itself; without --distribute nothing changes.
    assert distribute.worker_batches(data, {**jax_topo, "backend": "tensorflow"}) is data
    assert distribute.worker_batches(data, None) is data


# --- in this process: one device, the other backends, JAX's multi-host start ----------


def test_fit_distribute_on_one_device(data_dir, tmp_path):
    """`--distribute` where there is one device (a laptop): MirroredStrategy of 1 replica,
    and the topology line and env.json say so."""
    import kseg_tiny
    from click.testing import CliRunner

    from kseg.cli import main

    if keras.backend.backend() != "tensorflow":
        pytest.skip("this process's strategy is TensorFlow's")
    args = ["fit", kseg_tiny.NAME, "--data", str(data_dir), "--runs", str(tmp_path), "--patch", "32",
            "--grid", "2x2", "--batch-size", "4", "--epochs", "1", "--distribute"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("distribute: MirroredStrategy (tensorflow), worker 0 of 1, 1 replica(s) per worker (1 in all), "
            "global batch 4 = 4 per replica") in result.output
    run = RunDir(tmp_path / kseg_tiny.NAME)
    topo = run.env["distribute"]
    assert (topo["strategy"], topo["replicas"], topo["workers"]) == ("MirroredStrategy", 1, 1)
    assert topo["per_replica_batch"] == 4
    assert len(topo["devices"]) == 1 and topo["devices"][0].endswith("CPU:0")
    assert (run.state.status, run.state.epoch) == ("finished", 1) and len(run.history()) == 1
    assert distribute.num_replicas(True) == 1


def test_torch_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    message = ("--distribute supports the tensorflow and jax backends, not 'torch'; set "
               "KERAS_BACKEND=tensorflow or jax.")
    for call in (lambda: distribute.strategy_scope(True), lambda: distribute.topology(4)):
        with pytest.raises(KsegError) as err:
            call()
        assert str(err.value) == message
    # Without --distribute nothing is asked of the backend; one replica either way.
    with distribute.strategy_scope(False):
        pass
    assert distribute.num_replicas(False) == distribute.num_replicas(True) == 1
    assert distribute.topology(4, enabled=False) is None


def test_jax_multi_host_initializes_once_and_keeps_each_process_rows(monkeypatch):
    """With KERAS_DISTRIBUTION_JOB_ADDRESSES set, jax.distributed starts once per process
    (a second initialize raises in JAX), however often the distribution is asked for, and
    Keras is told not to shard kseg's PyDataset itself (each process slices its rows)."""
    calls = []
    monkeypatch.setattr(keras.distribution, "initialize", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(distribute, "_jax_initialized", False)
    monkeypatch.delenv(distribute.JAX_MULTIHOST_ENV, raising=False)
    distribute.jax_distribution()
    assert calls == []  # one host: nothing to join
    monkeypatch.setenv(distribute.JAX_MULTIHOST_ENV, "10.0.0.1:1234")
    for _ in range(3):  # topology, the scope and num_replicas each ask
        dist = distribute.jax_distribution()
    assert len(calls) == 1
    assert isinstance(dist, keras.distribution.DataParallel) and dist.auto_shard_dataset is False


def test_jax_topology_of_two_hosts(monkeypatch):
    """Worker 1 of 2 hosts with 2 devices each, as jax.distributed reports it (a stand-in jax)."""
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(distribute, "jax_distribution", lambda: SimpleNamespace(num_model_replicas=4))
    fake_jax = SimpleNamespace(process_count=lambda: 2, process_index=lambda: 1,
                               local_devices=lambda: ["TFRT_CPU_2", "TFRT_CPU_3"])
    monkeypatch.setitem(sys.modules, "jax", fake_jax)
    topo = distribute.topology(8)
    assert topo == {"backend": "jax", "strategy": "DataParallel + jax.distributed", "workers": 2, "worker": 1,
                    "replicas_per_worker": 2, "replicas": 4, "global_batch": 8, "per_replica_batch": 2,
                    "devices": ["TFRT_CPU_2", "TFRT_CPU_3"]}
    assert distribute.describe(topo) == ("distribute: DataParallel + jax.distributed (jax), worker 1 of 2, "
                                         "2 replica(s) per worker (4 in all), global batch 8 = 2 per replica")
    assert distribute.num_replicas() == 4
    with pytest.raises(KsegError, match="--batch-size 6 does not split over 4 replicas; use a multiple of 4"):
        distribute.topology(6)
    # Worker 1 feeds rows 4-7 of each global batch of 8 (2 per replica, 2 replicas here).
    part = distribute.worker_batches(Patches(n=16, batch_size=8), topo)
    assert [part[i][1].tolist() for i in range(len(part))] == [[4, 5, 6, 7], [12, 13, 14, 15]]


def test_jax_scope_sets_the_distribution_for_fit(monkeypatch):
    """On JAX the scope sets the global distribution and leaves it set: fit, outside the
    block, shards each batch with it."""
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    previous = keras.distribution.distribution()
    try:
        with distribute.strategy_scope(True):
            inside = keras.distribution.distribution()
        assert isinstance(inside, keras.distribution.DataParallel)
        assert keras.distribution.distribution() is inside and inside.auto_shard_dataset is False
    finally:
        keras.distribution.set_distribution(previous)
