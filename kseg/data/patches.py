"""The training and validation batches as a keras.utils.PyDataset.

`PatchDataset` wraps kseg.data.patch_builder.PatchBuilder (what a batch is: a pure
function of (seed, epoch, index), documented there) and kseg.data.frame_store.Frames
(the decoded frames, within a memory budget: CamVid train decoded whole is
367 * 360 * 480 * 4 B = 254 MB; beyond it, once into a temporary file read back per
batch). Batches are built in the thread that asks for them, in Keras' loader threads
(`workers`), or in worker processes (`pool`, kseg.data.batch_pool): the same batches
in every case. Masks stay uint8 class indices end to end (never one-hot); void keeps
its value.
"""

import keras
import numpy as np

from kseg.data.crops import random_crop  # noqa: F401 (re-exported)
from kseg.data.frame_store import Frames
from kseg.data.io import grid_cells, resize_bilinear, resize_nearest  # noqa: F401 (re-exported)
from kseg.data.patch_builder import PatchBuilder

__all__ = ["Frames", "PatchDataset", "split_patches"]

# PatchBuilder's settings, readable on a PatchDataset (read-only: they define the batches).
SETTINGS = ("spec", "batch_size", "size", "patch", "grid", "per_image", "augment", "scale", "class_uniform",
            "photometric", "shuffle", "seed", "indices", "num_patches")


class PatchDataset(keras.utils.PyDataset):
    """Batches `(x float32 (B, h, w, C) in [0, 255], y uint8 (B, h, w)[, w float32 (B, h, w)])`.

    Args:
        pairs: list of readers.Pair (or a Frames object to share decoded frames).
        spec: DatasetSpec (void value, number of classes).
        batch_size: patches per batch.
        patch: patch side in pixels, or (h, w).
        grid: (rows, cols) for the study's grid, or None for random crops.
        augment: False, True (AugmentConfig defaults), a dict or an AugmentConfig.
        scale: (lo, hi) scale jitter of random crops (grid=None): each crop is a window of
            side patch / s, s log-uniform in [lo, hi], resized to the patch (s > 1
            magnifies; see crops.scaled_crop). None or (1, 1): crops at native scale.
        photometric: False, True (PhotometricConfig defaults), a dict or a
            PhotometricConfig: colour jitter of the image (never the mask), per sample.
        shuffle: reshuffle patches every epoch (from (seed, epoch)).
        seed: base seed of shuffling, crops and augmentation.
        class_weights: (num_classes,) weights; adds per-pixel sample weights, void -> 0.
        crops_per_image: random crops per frame and epoch (grid=None); default R*C=16.
        class_uniform: fraction in [0, 1] of random crops (grid=None) that hold a pixel of
            a class drawn uniformly from the classes in their frame (crops.class_anchor);
            0: every crop at a uniform position.
        indices: subset of patch indices to serve (see `split_patches`).
        cache_mb: MiB of decoded frames kept in memory (see `Frames`); None: all.
        channels: C, the channels of every image (see `Frames`; ignored for a Frames).
        pool: a kseg.data.batch_pool.BatchPool whose worker processes build the batches
            (Keras' own loader then runs none: pass no `workers`); None: built here.
        **pydataset_kwargs: workers (Keras' loader threads), use_multiprocessing, max_queue_size.

    The settings (batch_size, patch, grid, augment, indices ...) are readable attributes.
    """

    def __init__(self, pairs, spec, batch_size=16, patch=128, grid=(4, 4), augment=False,
                 shuffle=False, seed=0, class_weights=None, crops_per_image=16,
                 indices=None, cache_mb=None, scale=None, photometric=False, channels=3,
                 class_uniform=0.0, pool=None, **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        self.builder = PatchBuilder(len(pairs), spec, batch_size, patch, grid, augment, shuffle, seed,
                                    crops_per_image, indices, scale, photometric, class_uniform)
        self.frames = pairs if isinstance(pairs, Frames) else Frames(pairs, spec, cache_mb, channels=channels)
        self.epoch, self.pool, self._stream = 0, pool, None
        self.class_weights = None
        if class_weights is not None:
            cw = np.asarray(class_weights, np.float32)
            if cw.shape != (spec.num_classes,):
                raise ValueError(f"class_weights needs {spec.num_classes} values. "
                                 f"Received shape {cw.shape}")
            self.class_weights = np.zeros(256, np.float32)  # void and unknown -> 0
            self.class_weights[:spec.num_classes] = cw

    def __len__(self):
        return len(self.builder)

    def set_epoch(self, epoch):
        """Make batch content a function of (seed, epoch, index)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def order(self, epoch=None):
        """The patch indices in the order of `epoch` (default: the current epoch)."""
        return self.builder.order(self.epoch if epoch is None else epoch)  # one read: workers run beside

    def __getitem__(self, index):
        return self.batch(self.epoch, index)  # one read of the epoch: order and draws agree

    def batch(self, epoch, index):
        """Batch `index` of `epoch`, whatever the current epoch (see training.data.RunBatches)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        if self.pool is None:
            x, y = self.builder.batch(self.frames, epoch, index)
        else:
            if self._stream is None:  # the first batch shares the frames with the workers
                self._stream = self.pool.stream(self.builder, self.frames)
            x, y = self._stream.get(epoch, index)
        return (x, y) if self.class_weights is None else (x, y, self.class_weights[y])

    def patch_at(self, pid, rng, frames=None):
        """Patch `pid` (see PatchBuilder.patch_at); `frames`: {frame index: (image, mask)}."""
        return self.builder.patch_at(pid, rng, self.frames, frames)

    def close(self):
        """End the worker processes of `pool` (shared with the datasets given the same
        pool: they build no more batches either). Batches built here need nothing closed."""
        if self._stream is not None:
            self._stream.close()
        if self.pool is not None:
            self.pool.close()


for _name in SETTINGS:
    setattr(PatchDataset, _name, property(lambda self, name=_name: getattr(self.builder, name)))


def split_patches(dataset, fraction=0.2, seed=0):
    """The study's split: a seeded `fraction` of a PatchDataset's patches for validation.

    Returns (train, val) PatchDatasets sharing the decoded frames; val has no
    augmentation (geometric, scale or photometric) and no shuffling. Patches of one
    frame land on both sides, so validation scores are optimistic: the honest default
    validates on val/ instead.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1). Received: fraction={fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8020]))
    ids = dataset.indices[rng.permutation(len(dataset.indices))]
    n_val = int(round(len(ids) * fraction))
    common = dict(spec=dataset.spec, batch_size=dataset.batch_size, patch=dataset.patch,
                  grid=dataset.grid, crops_per_image=dataset.per_image, seed=dataset.seed,
                  workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing, pool=dataset.pool)
    cw = dataset.class_weights[:dataset.spec.num_classes] if dataset.class_weights is not None else None
    train = PatchDataset(dataset.frames, augment=dataset.augment or False, shuffle=dataset.shuffle,
                         class_weights=cw, indices=np.sort(ids[n_val:]), scale=dataset.scale,
                         class_uniform=dataset.class_uniform,
                         photometric=dataset.photometric or False, **common)
    val = PatchDataset(dataset.frames, augment=False, shuffle=False, class_weights=cw,
                       indices=np.sort(ids[:n_val]), **common)
    return train, val
