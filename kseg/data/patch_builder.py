"""What a batch of patches is: a pure function of (frames, seed, epoch, index).

Grid mode (the study's): each frame is cut into R x C cells and every cell is resized
to `patch` x `patch` (image bilinear, mask nearest), so CamVid's 367 training frames
give 367 * 16 = 5872 patches with a 4x4 grid. Random-crop mode (`grid=None`): patches
of `patch` x `patch` at native resolution, `crops_per_image` per frame and epoch,
optionally with scale jitter (`scale`, see crops.py). `patch` may be (h, w).
Photometric jitter (`photometric`, augment.py) then acts on the whole batch at once.

A batch's crops and warps draw from np.random.default_rng(SeedSequence([seed, epoch,
index])) and the shuffle order from SeedSequence([seed, epoch]), so any number of
threads or processes, in any order, builds the same batches. This module is
Keras-free: kseg.data.patches wraps it in a keras.utils.PyDataset, and the worker
processes of kseg.data.batch_pool import it without Keras.
"""

import math

import numpy as np

from kseg.data.augment import AugmentConfig, PhotometricConfig, augment_pair, jitter_colors
from kseg.data.crops import class_anchor, random_crop, scaled_crop
from kseg.data.io import grid_cells, resize_bilinear, resize_nearest


class PatchBuilder:
    """The patches of `num_frames` frames and how batches of them are drawn (the
    arguments are PatchDataset's, which documents them)."""

    def __init__(self, num_frames, spec, batch_size=16, patch=128, grid=(4, 4), augment=False, shuffle=False,
                 seed=0, crops_per_image=16, indices=None, scale=None, photometric=False, class_uniform=0.0):
        size = (patch, patch) if np.ndim(patch) == 0 else tuple(patch)
        if int(batch_size) < 1 or len(size) != 2 or min(int(v) for v in size) < 1:
            raise ValueError(f"batch_size and patch must be >= 1 (patch: an int or (h, w)). "
                             f"Received: batch_size={batch_size}, patch={patch}")
        self.spec, self.batch_size = spec, int(batch_size)
        self.size = tuple(int(v) for v in size)
        self.patch = int(patch) if np.ndim(patch) == 0 else self.size
        self.grid = tuple(int(g) for g in grid) if grid else None
        self.per_image = self.grid[0] * self.grid[1] if self.grid else int(crops_per_image)
        self.augment = AugmentConfig.coerce(augment)
        self.scale = _check_scale(scale, self.grid)
        self.class_uniform = _check_class_uniform(class_uniform, self.grid)
        self.photometric = PhotometricConfig.coerce(photometric)
        self.shuffle, self.seed = bool(shuffle), int(seed)
        total = int(num_frames) * self.per_image
        self.indices = np.arange(total) if indices is None else np.asarray(indices, np.int64)
        self._order = (None, None)

    @property
    def num_patches(self):
        return len(self.indices)

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)

    def order(self, epoch):
        """The patch indices in the order of `epoch`."""
        epoch = int(epoch)
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            order = self.indices
            if self.shuffle:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
                order = order[rng.permutation(len(order))]
            self._order = (epoch, order)  # one tuple: safe across threads
        return order

    def batch(self, frames, epoch, index, threads=2, out=None):
        """Batch `index` of `epoch`: images float32 (B, h, w, C) in [0, 255], labels uint8
        (B, h, w); B is batch_size but for a shorter last batch. `frames`: a
        kseg.data.frame_store.Frames; `threads` decode its frames not in memory.

        `out`: (images, labels) arrays of batch_size rows to build into (a worker's
        shared-memory slot): the batch is their first B rows, with no copy of its own."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        ids = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), index]))
        if out is None:
            x = np.empty((len(ids), *self.size, frames.channels), np.float32)
            y = np.empty((len(ids), *self.size), np.uint8)
        else:
            x, y = out[0][:len(ids)], out[1][:len(ids)]
        decoded = frames.take((int(pid) // self.per_image for pid in ids), threads)
        for k, pid in enumerate(ids):
            x[k], y[k] = self.patch_at(int(pid), rng, frames, decoded)
        if self.photometric is not None:  # drawn after every patch: the same rng stream
            x[...] = jitter_colors(x, rng, self.photometric)
        return x, y

    def patch_at(self, pid, rng, frames, decoded=None):
        """Patch `pid` (frame pid // per_image): float32 (h, w, C), uint8 (h, w).

        `decoded`: {frame index: (image, mask)} already decoded (see `Frames.take`).
        Photometric jitter is not applied here: it acts on whole batches."""
        frame, cell = divmod(pid, self.per_image)
        image, mask = decoded[frame] if decoded else frames[frame]
        size, void = self.size, self.spec.void
        if self.grid:
            y0, y1, x0, x1 = grid_cells(*mask.shape, self.grid)[cell]
            img, msk = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
            if self.augment is None:
                return resize_bilinear(img, size), resize_nearest(msk, size)
        else:
            anchor = None
            if self.class_uniform and rng.random() < self.class_uniform:  # no draw at 0
                anchor = class_anchor(mask, rng, self.spec.num_classes)
            if self.scale:
                img, msk = scaled_crop(image, mask, size, rng, self.scale, void, anchor)
            else:
                img, msk = random_crop(image, mask, size, rng, void, anchor)
        if self.augment is not None:  # a grid cell's resize to `size` folds into the warp
            img, msk = augment_pair(img, msk, rng, self.augment, void, size)
        return img, msk


def _check_scale(scale, grid):
    """None for no scale jitter, else (lo, hi) with 0 < lo <= hi."""
    if scale is None:
        return None
    if np.ndim(scale) != 1 or len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
        raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi. Received: scale={scale}")
    lo, hi = float(scale[0]), float(scale[1])
    if (lo, hi) == (1.0, 1.0):
        return None
    if grid:
        raise ValueError(f"scale jitter applies to random crops (grid=None). "
                         f"Received: scale={scale}, grid={grid}")
    return lo, hi


def _check_class_uniform(fraction, grid):
    """The fraction as a float in [0, 1]; > 0 only for random crops (grid=None)."""
    if not 0 <= (fraction := float(fraction)) <= 1:
        raise ValueError(f"class_uniform must be in [0, 1]. Received: class_uniform={fraction}")
    if fraction and grid:
        raise ValueError(f"class_uniform applies to random crops (grid=None). "
                         f"Received: class_uniform={fraction}, grid={grid}")
    return fraction
