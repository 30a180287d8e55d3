"""What `kseg fit` feeds the network: --split, --augment, --crops and --class-weights
change the batches (or the loss) training sees, not only config.json.

Each run goes through the real CLI (one epoch of the tiny model) while `keras.Model.fit`
and `PatchDataset.batch` are wrapped to record the datasets handed to Keras, every
batch Keras pulled from them, and the compiled loss. The expected patches are read from
the image files here, by hand.
"""

import types

import keras
import kseg_tiny
import numpy as np
import pytest
from click.testing import CliRunner
from numpy.lib.stride_tricks import sliding_window_view

from kseg.cli.main import main
from kseg.data.io import read_image, read_mask
from kseg.data.patches import PatchDataset
from kseg.data.readers import open_dataset

TINY = kseg_tiny.NAME
P = 32  # patch side; the 64x64 frames cut 2x2 give cells of exactly 32x32, no resizing
BASE = ["--patch", str(P), "--grid", "2x2", "--batch-size", "2", "--epochs", "1"]
RUNS = {
    "augment": [],  # the default: --augment on
    "plain": ["--no-augment"],
    "split": ["--no-augment", "--split", "80/20"],
    "crops": ["--no-augment", "--crops", "--crops-per-image", "3"],
    "weights": ["--class-weights"],
}


def fit_and_record(data_dir, runs, options):
    """One `kseg fit`; returns what model.fit got: train/val datasets, their batches
    (epoch 0, in order) as lists of (x, y), and the compiled loss."""
    pulled, seen = {}, []
    real_fit, real_batch = keras.Model.fit, PatchDataset.batch

    def batch(self, epoch, index):
        built = real_batch(self, epoch, index)
        pulled[(id(self), epoch, index)] = built
        return built

    def fit(self, x, validation_data=None, **kwargs):
        # x: RunBatches, the run's epochs of the training PatchDataset end to end.
        seen.append(types.SimpleNamespace(train=x.dataset, val=validation_data, loss=self.loss))
        return real_fit(self, x, validation_data=validation_data, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keras.Model, "fit", fit)
        mp.setattr(PatchDataset, "batch", batch)
        result = CliRunner().invoke(main, ["fit", TINY, "--data", str(data_dir), "--runs", str(runs),
                                           *BASE, *options])
    assert result.exit_code == 0, result.output
    (got,) = seen
    for role in ("train", "val"):
        data = getattr(got, role)
        batches = [pulled[(id(data), 0, i)] for i in range(len(data))]  # KeyError: a batch never used
        setattr(got, f"{role}_patches", [(x[k], y[k]) for x, y, *_ in batches for k in range(len(x))])
    return got


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from kseg.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, n_train=2, n_val=1, n_test=0, size=(64, 64))
    return root


@pytest.fixture(scope="module")
def seen(data_dir, tmp_path_factory):
    """Every run of RUNS, recorded."""
    return {name: fit_and_record(data_dir, tmp_path_factory.mktemp(name), options)
            for name, options in RUNS.items()}


@pytest.fixture(scope="module")
def frames(data_dir):
    """{split: [(image float32 (64, 64, 3), mask uint8 (64, 64))]} read from the files."""
    ds = open_dataset(data_dir)
    return {split: [(read_image(p.image).astype(np.float32), read_mask(p.mask, ds.spec)) for p in pairs]
            for split, pairs in ds.splits.items()}


def key(patch):
    x, y = patch
    return x.tobytes() + y.tobytes()


def cells(split_frames):
    """The 2x2 grid cells of each frame, by hand: {key: (frame, row, col)}."""
    return {key((img[r:r + P, c:c + P], msk[r:r + P, c:c + P])): (f, r, c)
            for f, (img, msk) in enumerate(split_frames) for r in (0, P) for c in (0, P)}


def window_at(patch, split_frames):
    """(frame, row, col) of a native-resolution window equal to `patch`, or None."""
    x, y = patch
    for f, (img, msk) in enumerate(split_frames):
        windows = sliding_window_view(img, (P, P, 3))[:, :, 0]  # (33, 33, P, P, 3)
        hits = np.argwhere((windows == x).all(axis=(2, 3, 4)))
        for r, c in hits:
            if (msk[r:r + P, c:c + P] == y).all():
                return f, int(r), int(c)
    return None


def test_no_augment_trains_on_the_grid_cells_and_augment_changes_them(seen, frames):
    train_cells = cells(frames["train"])
    plain, augmented = seen["plain"], seen["augment"]
    assert sorted(map(key, plain.train_patches)) == sorted(train_cells)  # each cell once
    moved = [p for p in augmented.train_patches if key(p) not in train_cells]
    assert len(augmented.train_patches) == 8 and len(moved) >= 6, "--augment left the patches alone"
    # Validation is never jittered: the same val/ cells either way.
    assert list(map(key, augmented.val_patches)) == list(map(key, plain.val_patches))
    assert sorted(map(key, plain.val_patches)) == sorted(cells(frames["val"]))


def test_split_80_20_validates_on_a_fifth_of_the_training_patches(seen, frames):
    train_cells = cells(frames["train"])
    split = seen["split"]
    train, val = set(map(key, split.train_patches)), set(map(key, split.val_patches))
    # 8 training cells: round(0.2 * 8) = 2 for validation, the other 6 for training.
    assert (len(split.train_patches), len(split.val_patches)) == (6, 2)
    assert train | val == set(train_cells) and not train & val
    assert not val & set(cells(frames["val"])), "80/20 must not read val/"
    # The default validates on val/ and trains on all 8 cells.
    assert len(seen["plain"].train_patches) == 8


def test_crops_are_native_windows_off_the_grid(seen, frames):
    crops = seen["crops"]
    assert len(crops.train_patches) == 2 * 3  # 2 frames x --crops-per-image 3
    where = [window_at(p, frames["train"]) for p in crops.train_patches]
    assert None not in where, "a crop is not a native-resolution window of a training frame"
    assert {f for f, _, _ in where} == {0, 1}  # crops from both frames
    off_grid = [(r, c) for _, r, c in where if r % P or c % P]
    assert len(off_grid) >= 4, f"random crops should land off the 2x2 grid: {where}"


def test_class_weights_weight_the_training_loss_by_median_frequency(seen, data_dir):
    from kseg.data.weights import median_frequency_weights
    from kseg.losses import build_loss

    ds = open_dataset(data_dir)
    k, void = ds.spec.num_classes, ds.spec.void
    expected = median_frequency_weights(ds.pairs("train"), ds.spec)
    assert expected.max() - expected.min() > 0.5  # the synthetic scenes are unbalanced: the weights differ
    rng = np.random.default_rng(0)
    y = np.array(seen["weights"].train_patches[0][1][None])  # (1, P, P) labels of a real batch
    logits = rng.normal(size=(1, P, P, k)).astype(np.float32)

    def value(loss):
        return float(keras.ops.convert_to_numpy(loss(y, logits)))

    weighted, unweighted = value(seen["weights"].loss), value(seen["augment"].loss)
    assert weighted == pytest.approx(value(build_loss("ce", k, void, [float(w) for w in expected])), rel=1e-5)
    assert unweighted == pytest.approx(value(build_loss("ce", k, void)), rel=1e-5)
    assert weighted != pytest.approx(unweighted, rel=1e-3)


def test_max_steps_reads_the_first_batches_of_every_epoch_and_no_others(data_dir, tmp_path):
    """A capped fit (`kseg bench`'s) reads batches 0..max_steps-1 of each epoch's own order,
    as the start of a whole epoch would, and never a batch past the cap: a partly read
    iterator left for Keras to drop cost `kseg bench` 10-40 s an epoch."""
    from kseg import api

    reads = []
    real_batch = PatchDataset.batch

    def batch(self, epoch, index):
        reads.append((self.shuffle, epoch, index))
        return real_batch(self, epoch, index)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PatchDataset, "batch", batch)
        # 2 frames cut 2x2 in batches of 2: 4 train batches an epoch, 2 val batches.
        api.fit(TINY, data_dir, runs=tmp_path, epochs=2, patch=P, grid=(2, 2), batch_size=2,
                progress=False, max_steps=2)
    train = sorted({(epoch, i) for shuffled, epoch, i in reads if shuffled})
    val = sorted({i for shuffled, _, i in reads if not shuffled})
    # Epoch 2 is only read ahead (RunBatches): the run ends before it is trained on.
    assert [(e, i) for e, i in train if e < 2] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {i for _, i in train} == {0, 1}
    assert val == [0]  # max(1, 2 // 4) batches


def test_each_training_batch_is_built_once_for_its_own_epoch(data_dir, tmp_path):
    """Every training batch of a 3-epoch `kseg fit` is built exactly once, for its own epoch,
    and Keras reads them through one iterator: the indices asked of RunBatches run 0, 1, 2,
    ... without a restart. An iterator per epoch restarts at 0, and dropping one stalled
    epoch starts by seconds on a 2-core CPU."""
    import collections

    from kseg import api
    from kseg.training.callbacks import RunRecorder
    from kseg.training.inputs import RunBatches

    built, started, asked = collections.Counter(), [], []
    real_batch, real_item, real_begin = PatchDataset.batch, RunBatches.__getitem__, RunRecorder.on_epoch_begin

    def batch(self, epoch, index):
        if self.shuffle and started:  # the training data; not Keras' look at 2 batches for their shapes
            built[(epoch, index)] += 1
        return real_batch(self, epoch, index)

    def item(self, index):
        if started:
            asked.append(index)
        return real_item(self, index)

    def on_epoch_begin(self, epoch, logs=None):
        started.append(epoch)
        real_begin(self, epoch, logs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PatchDataset, "batch", batch)
        mp.setattr(RunBatches, "__getitem__", item)
        mp.setattr(RunRecorder, "on_epoch_begin", on_epoch_begin)
        # 2 frames cut 2x2 in batches of 2: 4 train batches an epoch.
        api.fit(TINY, data_dir, runs=tmp_path, epochs=3, patch=P, grid=(2, 2), batch_size=2, progress=False)
    assert started == [0, 1, 2]
    assert asked == list(range(len(asked))) and len(asked) >= 12, asked
    trained = {key: n for key, n in built.items() if key[0] < 3}  # epoch 3: read ahead, never trained
    assert trained == {(epoch, i): 1 for epoch in range(3) for i in range(4)}, built
