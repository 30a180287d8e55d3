"""Worker processes building batches (kseg.data.batch_pool): the same batches as the
training thread builds, no Keras in the workers, nothing left behind, one-line errors."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from processes import child_env, ended, pool_workers, tiny_cli

from kseg.data.batch_pool import BatchPool
from kseg.data.dataset_spec import CAMVID
from kseg.data.patches import Frames, PatchDataset
from kseg.data.readers import open_dataset
from kseg.errors import KsegError

# Random scaled, class-uniform crops, the warp, colour jitter and class weights: every
# random draw a batch makes. 3 frames x 4 crops in batches of 3: 4 batches an epoch.
SETTINGS = dict(batch_size=3, patch=32, grid=None, crops_per_image=4, scale=(0.5, 2), augment=True,
                photometric=True, class_uniform=0.5, shuffle=True, seed=5,
                class_weights=np.linspace(0.5, 2, 11))
FRAME_MB = 64 * 64 * 4 / 2**20  # one decoded 64x64 frame: RGB + mask


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from kseg.data import synth

    root = tmp_path_factory.mktemp("frames")
    synth.write_synthetic(root, n_train=3, n_val=1, n_test=1, size=(64, 64))
    return open_dataset(root).pairs("train")


def _dataset(pairs, workers, **kw):
    """A PatchDataset with 1 frame in (shared) memory and 2 in the spill file."""
    pool = BatchPool(workers) if workers else None
    return PatchDataset(pairs, CAMVID, cache_mb=1.5 * FRAME_MB, pool=pool, **{**SETTINGS, **kw})


def _batches(pairs, workers, epochs=(0, 1)):
    data = _dataset(pairs, workers)
    try:
        assert (data.frames.num_cached, data.frames.num_spilled) == (1, 2)
        return [tuple(a.tobytes() for a in data.batch(e, i)) for e in epochs for i in range(len(data))]
    finally:
        data.close()


def test_processes_build_the_batches_of_the_training_thread(pairs):
    whole = _batches(pairs, 0)
    assert len(whole) == 8 and whole[:4] != whole[4:]  # epoch 2 draws other patches
    assert _batches(pairs, 1) == whole
    assert _batches(pairs, 2) == whole
    assert _batches(pairs, 2, epochs=(1,)) == whole[4:]  # a resumed run starts at epoch 2
    assert pool_workers() == []  # close() ended them


def test_workers_import_no_framework_and_report_their_cpu(pairs):
    data = _dataset(pairs, 2)
    try:
        for index in range(len(data)):
            data[index]
        info = data.pool.info()
    finally:
        data.close()
    assert "keras" in sys.modules  # here, for the PyDataset; not in the workers
    assert [w["frameworks"] for w in info] == [[], []]
    assert all(w["cpu_seconds"] > 0 for w in info)


def test_closing_leaves_no_process_descriptor_or_shared_memory(pairs):
    fds, shm = sorted(os.listdir("/proc/self/fd")), sorted(os.listdir("/dev/shm"))
    data = _dataset(pairs, 2)
    data[0]
    pids = [w["pid"] for w in data.pool.info()]
    assert sorted(pool_workers()) == sorted(pids)
    data.close()
    data.frames.close()
    assert all(ended(pid) for pid in pids)
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert sorted(os.listdir("/dev/shm")) == shm  # the buffers have no names: nothing to leak


def test_a_killed_worker_is_a_one_line_error_naming_the_batch(pairs):
    data = _dataset(pairs, 1, batch_size=1)  # 12 batches, one worker building 2 ahead
    try:
        data[0]
        os.kill(data.pool.info()[0]["pid"], signal.SIGKILL)
        with pytest.raises(KsegError) as caught:
            for index in range(1, len(data)):
                data[index]
    finally:
        data.close()
    message = caught.value.message
    assert message.startswith("Cannot build batch ") and "of epoch 1: data worker 0 (pid" in message
    assert "was killed by SIGKILL" in message and "--workers" in message and "\n" not in message


def test_a_worker_that_fails_names_the_batch_and_the_file(pairs, tmp_path):
    copies = []
    for pair in pairs:  # copies: one of them is deleted
        image, mask = tmp_path / pair.image.name, tmp_path / f"mask_{pair.mask.name}"
        image.write_bytes(pair.image.read_bytes())
        mask.write_bytes(pair.mask.read_bytes())
        copies.append(type(pair)(image, mask))
    frames = Frames(copies, CAMVID, cache_mb=0)  # every frame decoded on first use, by a worker
    copies[1].image.unlink()
    data = PatchDataset(frames, CAMVID, pool=BatchPool(2), **SETTINGS)
    try:
        with pytest.raises(KsegError) as caught:
            for index in range(len(data)):
                data[index]
    finally:
        data.close()
    message = caught.value.message
    assert message.startswith("Cannot build batch ") and "failed:" in message, message
    assert copies[1].image.name in message and "\n" not in message


# Keras-free, so that the process starts in a fraction of a second.
ENDINGS = """
import sys, time
from kseg.data.batch_pool import BatchPool
from kseg.data.dataset_spec import CAMVID
from kseg.data.frame_store import Frames
from kseg.data.patch_builder import PatchBuilder
from kseg.data.readers import open_dataset

frames = Frames(open_dataset(sys.argv[1]).pairs("train"), CAMVID)
pool = BatchPool(2)
pool.stream(PatchBuilder(len(frames), CAMVID, batch_size=2, patch=32), frames).get(0, 0)
print(*[w["pid"] for w in pool.info()], flush=True)
if sys.argv[2] == "KeyboardInterrupt":
    raise KeyboardInterrupt
time.sleep(120)
"""


@pytest.mark.parametrize("how", ["KeyboardInterrupt", "SIGTERM", "SIGKILL"])
def test_workers_end_with_the_process_that_started_them(pairs, how):
    root = pairs[0].image.parents[1]
    proc = subprocess.Popen([sys.executable, "-c", ENDINGS, str(root), how], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(pids) == 2, proc.communicate()
    if how != "KeyboardInterrupt":
        proc.send_signal(getattr(signal, how))
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while not all(ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(ended(pid) for pid in pids)


def test_without_descriptor_passing_auto_keeps_threads_and_processes_are_refused(monkeypatch):
    import socket

    from kseg.training.hardware import worker_kind

    gpu = [("NVIDIA H100", (9, 0))]
    assert worker_kind("auto", gpu_list=gpu)[0] == "process"
    monkeypatch.delattr(socket, "send_fds")  # Windows
    why = "a GPU is visible, but this system cannot pass file descriptors between processes (socket.send_fds)"
    assert worker_kind("auto", gpu_list=gpu) == ("thread", why)
    with pytest.raises(KsegError, match="Use --worker-kind thread"):
        BatchPool(1)


@pytest.mark.slow
def test_sigterm_stops_kseg_fit_and_its_workers(data_dir, tmp_path):
    """`kseg fit` stops gracefully on SIGTERM (kseg.training.callbacks.StopSignals), and
    its worker processes end with it."""
    from kseg.runs import RunDir

    settings = ("--patch", "32", "--grid", "2x2", "--batch-size", "1", "--epochs", "500")
    argv = tiny_cli("fit", "tiny_test", "--data", data_dir, "--runs", tmp_path, *settings,
                    "--workers", "2", "--worker-kind", "process")
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run, deadline = RunDir(tmp_path / "tiny_test"), time.monotonic() + 180
    while not (run.history_path.exists() and run.history()) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    workers = pool_workers(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert run.state.status == "interrupted" and "Traceback" not in err
    assert all(ended(pid) for pid in workers)
