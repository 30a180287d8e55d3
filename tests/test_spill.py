"""kseg.data.spill: frames beyond the memory budget decoded once, into an unlinked file."""

import os

import numpy as np
import pytest

from kseg.data import synth
from kseg.data.dataset_spec import CAMVID
from kseg.data.readers import open_dataset
from kseg.data.spill import SpillFile


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = synth.write_synthetic(tmp_path_factory.mktemp("spill"), 5, 0, 0, (48, 64), seed=1)
    return open_dataset(root).splits["train"]


def frame(h, w, c, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, c), dtype=np.uint8), rng.integers(0, 12, (h, w), dtype=np.uint8)


def test_frames_round_trip_at_their_offsets_and_leave_no_file(tmp_path):
    shapes = [(3, 5), (7, 2), (4, 4)]
    spill = SpillFile(shapes, 4, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing to clean up, even after SIGKILL
    frames = [frame(h, w, 4, i) for i, (h, w) in enumerate(shapes)]
    for k in (2, 0):  # out of order
        spill.write(k, *frames[k])
    assert spill.read(1) is None  # not written yet
    for k in (0, 2):
        image, mask = spill.read(k)
        np.testing.assert_array_equal(image, frames[k][0])
        np.testing.assert_array_equal(mask, frames[k][1])
        image[0, 0] = 0  # a writable copy: the file is unchanged
    np.testing.assert_array_equal(spill.read(0)[0], frames[0][0])
    assert spill.nbytes == sum(h * w * 5 for h, w in shapes)
    with pytest.raises(ValueError, match=r"frame 1: expected image \(7, 2, 4\)"):
        spill.write(1, *frame(2, 7, 4, 9))


def test_the_file_takes_at_most_half_the_free_space(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    shapes = [(10, 10)] * 5  # 400 bytes each with 3 channels
    monkeypatch.setattr(shutil, "disk_usage", lambda d: usage(10**6, 0, 2 * 1000))  # half: 1000 B
    assert len(SpillFile.for_frames(shapes, 3, tmp_path)) == 2
    monkeypatch.setattr(shutil, "disk_usage", lambda d: usage(10**6, 0, 700))
    assert SpillFile.for_frames(shapes, 3, tmp_path) is None
    assert SpillFile.for_frames([], 3, tmp_path) is None
    monkeypatch.delattr(os, "pread")  # Windows: no positional reads, no spill
    assert SpillFile.for_frames(shapes, 3, tmp_path) is None


def counting_loads(monkeypatch):
    from kseg.data.patches import Frames

    loads = []
    real = Frames._load
    monkeypatch.setattr(Frames, "_load", lambda self, i: loads.append(i) or real(self, i))
    return loads


def test_frames_beyond_the_budget_are_decoded_once(pairs, monkeypatch):
    from kseg.data.patches import Frames

    loads = counting_loads(monkeypatch)
    frames = Frames(pairs, CAMVID, cache_mb=0)
    assert (frames.num_cached, frames.num_spilled, frames.nbytes) == (0, 5, 0)
    first = [frames[i] for i in range(5)]
    again = frames.take(range(5)), [frames[i] for i in (4, 0)]
    assert sorted(loads) == [0, 1, 2, 3, 4]  # one decode per frame, however often it is read
    for i, (image, mask) in again[0].items():
        np.testing.assert_array_equal(image, first[i][0])
        np.testing.assert_array_equal(mask, first[i][1])

    loads.clear()
    plain = Frames(pairs, CAMVID, cache_mb=0, spill=False)
    assert plain.num_spilled == 0
    for _ in range(2):
        for i in range(5):
            np.testing.assert_array_equal(plain[i][0], first[i][0])
    assert len(loads) == 10  # without the file: every access decodes


def test_batches_are_the_same_with_and_without_the_file(pairs):
    from kseg.data.patches import Frames, PatchDataset

    def two_epochs(frames):
        data = PatchDataset(frames, CAMVID, batch_size=3, patch=32, grid=None, crops_per_image=2,
                            scale=(0.5, 2), augment=True, photometric=True, shuffle=True, seed=5)
        out = []
        for epoch in (0, 1):  # epoch 0 writes the file, epoch 1 reads it
            data.set_epoch(epoch)
            out += [data[i] for i in range(len(data))]
        return out

    spilled = Frames(pairs, CAMVID, cache_mb=0)
    assert spilled.num_spilled == len(pairs)
    for a, b in zip(two_epochs(Frames(pairs, CAMVID)), two_epochs(spilled), strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
