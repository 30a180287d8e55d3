"""`kseg fit --workers N`: Keras' PyDataset pool builds the batches, and they are the same for any N."""

import hashlib
import json
import multiprocessing.dummy
import threading

import keras
import kseg_tiny
import numpy as np
import pytest
from click.testing import CliRunner
from processes import pool_workers

from kseg.cli import main
from kseg.data.patches import PatchDataset
from kseg.runs import RunDir
from kseg.training.config import FitConfig
from kseg.training.hardware import pick_workers, worker_kind
from kseg.training.inputs import (
    RunBatches,
    close_data,
    loader_kwargs,
    ring_mb,
    training_datasets,
)

TINY = kseg_tiny.NAME


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from kseg.data import synth

    root = tmp_path_factory.mktemp("data")
    synth.write_synthetic(root, n_train=3, n_val=1, n_test=1, size=(64, 64))
    return root


@pytest.fixture
def builder_threads(monkeypatch):
    """The threads that built PatchDataset batches (filled while the test runs)."""
    seen = []
    original = PatchDataset.batch

    def batch(self, epoch, index):
        seen.append(threading.current_thread())
        return original(self, epoch, index)

    monkeypatch.setattr(PatchDataset, "batch", batch)
    return seen


def _pool_threads(threads):
    # Keras' OrderedEnqueuer runs __getitem__ in a multiprocessing.dummy (thread) Pool.
    return [t for t in threads if isinstance(t, multiprocessing.dummy.DummyProcess)]


class Recorder(keras.Model):
    """Trains nothing; keeps a digest of every batch its train and test steps receive."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.seen = []

    def call(self, x):
        return self.dense(x)

    def _record(self, kind, data):
        x, y = (np.asarray(t) for t in data[:2])
        self.seen.append((kind, hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()))
        return {"n": keras.ops.zeros(())}

    def train_step(self, data):
        return self._record("train", data)

    def test_step(self, data):
        return self._record("val", data)


class SetEpoch(keras.callbacks.Callback):
    """What RunRecorder.on_epoch_begin does for the training data."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.set_epoch(epoch)


def _seen(data_dir, workers, initial_epoch=0, kind="thread"):
    """Digests of the batches `model.fit` hands to the steps over epochs initial_epoch+1..2,
    with `kseg fit`'s datasets for random scaled, class-uniform crops, augmentation and
    photometric jitter, built by `workers` of `kind`."""
    from kseg.data.readers import open_dataset

    cfg = FitConfig(arch=TINY, patch=32, grid=None, crops_per_image=4, scale="0.5:2", augment=True,
                    photometric=True, class_uniform=0.5, batch_size=2, seed=5, workers=workers,
                    worker_kind=kind).validate()
    train, val = training_datasets(cfg, open_dataset(data_dir), pick_workers(cfg.workers, kind=kind)[0])
    processes = kind == "process" and workers > 0
    assert (train.workers, val.workers) == (0, 0) if processes else (workers, workers)  # Keras' threads
    assert train.pool is val.pool and (train.pool is not None) == processes
    model = Recorder()
    model.compile(run_eagerly=True)  # the steps see concrete batches; the data path is fit's own
    # As kseg.training.loop runs fit: the whole run's batches through one iterator,
    # shuffle=False, and the epoch set at each epoch's start.
    try:
        model.fit(RunBatches(train, initial_epoch), steps_per_epoch=len(train), validation_data=val, epochs=2,
                  initial_epoch=initial_epoch, shuffle=False, verbose=0, callbacks=[SetEpoch(train)])
    finally:
        close_data(train, val)
    return model.seen


def test_class_uniform_reaches_the_training_crops_only(data_dir, tmp_path):
    from kseg.data.readers import open_dataset

    cfg = FitConfig(arch=TINY, patch=32, grid=None, class_uniform=0.5).validate()
    train, val = training_datasets(cfg, open_dataset(data_dir), 0)
    assert (train.class_uniform, val.class_uniform) == (0.5, 0.0)  # val: the same crops every epoch
    base = ["fit", TINY, "--data", str(data_dir), "--runs", str(tmp_path)]
    for extra, fragment in ((["--class-uniform", "0.5"], "add --crops"),
                            (["--class-uniform", "1.5", "--crops"], "--class-uniform must be in [0, 1]")):
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 1 and fragment in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / TINY).exists()


def test_batches_are_the_same_with_0_1_and_2_workers(data_dir, builder_threads):
    runs = {}
    for workers in (0, 1, 2):
        builder_threads.clear()
        runs[workers] = _seen(data_dir, workers)
        pooled = _pool_threads(builder_threads)
        # Keras starts its pool from 2 workers; 0 and 1 build batches one at a time.
        assert bool(pooled) == (workers == 2), (workers, {t.name for t in builder_threads})
    builder_threads.clear()
    processes = _seen(data_dir, 2, kind="process")  # the read-ahead of kseg.data.batch_stream under fit
    assert not _pool_threads(builder_threads)
    assert runs[0] == runs[1] == runs[2] == processes
    seen = runs[0]
    # 3 frames x 4 crops in batches of 2: 6 train batches, then 1 x 4 crops: 2 val batches.
    assert [k for k, _ in seen] == (["train"] * 6 + ["val"] * 2) * 2
    train1, val1, train2, val2 = seen[0:6], seen[6:8], seen[8:14], seen[14:16]
    assert not set(train1) & set(train2)  # epoch 2 draws other crops: epochs are not mixed up
    assert val1 == val2  # validation: the same crops every epoch


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_resumed_epoch_gets_the_uninterrupted_batches_with_workers(data_dir, kind):
    whole = _seen(data_dir, 2, kind=kind)
    resumed = _seen(data_dir, 2, initial_epoch=1, kind=kind)  # fresh datasets, as after a restart
    assert resumed == whole[8:]


def test_pick_workers():
    # Threads (no GPU): min(4, CPUs // 2), none where that is below Keras' pool minimum of 2.
    threads = [pick_workers("auto", cpus, gpu_list=[])[0] for cpus in (1, 2, 3, 4, 6, 8, 64)]
    assert threads == [0, 0, 0, 2, 3, 4, 4]
    assert [pick_workers("auto", cpus)[0] for cpus in (2, 8)] == [0, 4]  # this machine has no GPU
    assert pick_workers(3, cpus=64, gpu_list=[]) == (3, "asked for: threads")
    assert pick_workers("auto", cpus=16, gpu_list=[])[1] == "auto: min(4, 16 CPUs // 2) threads"
    # With a GPU, processes: min(CPUs - 2, 16), the reason says why.
    gpu = [("NVIDIA H100", (9, 0))]
    assert [pick_workers("auto", cpus, gpu_list=gpu)[0] for cpus in (2, 3, 8, 16, 64)] == [0, 1, 6, 14, 16]
    assert pick_workers("auto", cpus=16, gpu_list=gpu)[1] == ("auto: a GPU is visible (NVIDIA H100): "
                                                         "min(16 CPUs - 2, 16) worker processes")
    assert pick_workers(3, cpus=64, gpu_list=gpu) == (3, "asked for: processes")
    # --worker-kind decides over the hardware, both ways.
    assert pick_workers("auto", cpus=16, kind="process", gpu_list=[])[0] == 14
    threads = (4, "auto: min(4, 16 CPUs // 2) threads")
    assert pick_workers("auto", cpus=16, kind="thread", gpu_list=gpu) == threads
    assert worker_kind("auto", gpu_list=gpu) == ("process", "a GPU is visible (NVIDIA H100)")
    assert worker_kind("auto", gpu_list=[]) == ("thread", "no GPU")
    assert loader_kwargs(3) == {"workers": 3, "use_multiprocessing": False, "max_queue_size": 6}
    assert loader_kwargs(0)["max_queue_size"] == 2


def _fit(data_dir, runs, *args):
    argv = ["fit", TINY, "--data", str(data_dir), "--runs", str(runs), "--patch", "32", "--grid", "2x2",
            "--batch-size", "2", "--epochs", "1", *args]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def test_fit_workers_builds_batches_in_a_pool_and_records_it(data_dir, tmp_path, builder_threads):
    result = _fit(data_dir, tmp_path, "--workers", "2", "--worker-kind", "thread")
    assert result.exit_code == 0, result.output
    assert "2 data workers (asked for: threads)" in " ".join(result.output.split())  # wrapped
    assert _pool_threads(builder_threads)
    run = tmp_path / TINY
    config = json.loads((run / "config.json").read_text())
    assert (config["workers"], config["worker_kind"]) == (2, "thread")
    chosen = json.loads((run / "env.json").read_text())["chosen"]
    assert (chosen["workers"], chosen["workers_reason"]) == (2, "asked for: threads")


@pytest.mark.parametrize(("flag", "value"), [("--workers", "-1"), ("--workers", "abc"), ("--workers", "1.5"),
                                           ("--worker-kind", "fork")])
def test_bad_workers_is_a_one_line_error(data_dir, tmp_path, flag, value):
    result = _fit(data_dir, tmp_path, f"{flag}={value}")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and value in lines[0], result.output
    assert not (tmp_path / TINY).exists()


def test_fit_with_worker_processes_trains_as_without_workers(data_dir, tmp_path, monkeypatch):
    from kseg.data.batch_pool import BatchPool

    pools, start = [], BatchPool.__init__
    monkeypatch.setattr(BatchPool, "__init__", lambda self, n: (pools.append(self), start(self, n))[1])
    histories = {}
    for workers in ("0", "2"):
        result = _fit(data_dir, tmp_path / workers, "--workers", workers, "--worker-kind", "process",
                      "--epochs", "2", "--crops", "--photometric")
        assert result.exit_code == 0, result.output
        histories[workers] = [{k: v for k, v in row.items() if k != "seconds"}
                              for row in RunDir(tmp_path / workers / TINY).history()]
    assert "2 data workers (asked for: processes)" in " ".join(result.output.split())
    assert len(histories["2"]) == 2 and histories["2"] == histories["0"]
    assert [pool.workers for pool in pools] == [2]  # one pool, for the second fit only
    assert all(w["patches"] > 0 for w in pools[0].info())  # both workers built batches
    assert pool_workers() == []  # ended with the fit


def test_worker_processes_count_their_batch_slots_in_the_frame_budget(data_dir):
    from kseg.data.readers import open_dataset

    settings = dict(arch=TINY, patch=32, grid=(2, 2), batch_size=2, workers=2)
    rings = 2 * ring_mb(FitConfig(**settings), 2)  # train's and val's
    frame_mb = 64 * 64 * 4 / 2**20
    budget = rings + 2.5 * frame_mb  # all 4 frames fit without the rings, 2 with them
    cached = {}
    for kind in ("thread", "process"):
        cfg = FitConfig(**settings, worker_kind=kind, frame_cache_mb=budget).validate()
        train, val = training_datasets(cfg, open_dataset(data_dir), 2)
        held = (train.frames.nbytes + val.frames.nbytes) / 2**20 + (rings if train.pool else 0)
        assert held <= budget
        cached[kind] = train.frames.num_cached + val.frames.num_cached
        close_data(train, val)
    assert cached == {"thread": 4, "process": 2}
