"""One patch generator for every architecture: a keras.utils.PyDataset.

Grid mode (the study's): each frame is cut into R x C cells and every cell is resized
to `patch` x `patch` (image bilinear, mask nearest), so CamVid's 367 training frames
give 367 * 16 = 5872 patches with a 4x4 grid. Random-crop mode (`grid=None`): patches
of `patch` x `patch` at native resolution, `crops_per_image` per frame and epoch,
optionally with scale jitter (`scale`, see crops.py). `patch` may be (h, w).
Photometric jitter (`photometric`, augment.py) then acts on the whole batch at once.

Masks stay uint8 class indices end to end (never one-hot); void keeps its value.
Frames are decoded into uint8 arrays up to a memory budget (`cache_mb`; CamVid train
decoded whole is 367 * 360 * 480 * 4 B = 254 MB); beyond it, once into a temporary
file that is read back per batch (kseg.data.spill). Every batch is a pure function of
(seed, epoch, index): its crops and warps draw from np.random.default_rng(SeedSequence(
[seed, epoch, index])) and the shuffle order from SeedSequence([seed, epoch]), so any
number of workers gives the same batches.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np

from kseg.data import io
from kseg.data.augment import AugmentConfig, PhotometricConfig, augment_pair, jitter_colors
from kseg.data.crops import class_anchor, random_crop, scaled_crop  # noqa: F401 (random_crop re-exported)
from kseg.data.io import grid_cells, resize_bilinear, resize_nearest  # noqa: F401 (re-exported)
from kseg.data.spill import SpillFile
from kseg.errors import DataError


class Frames:
    """Frames of a list of pairs as uint8 images (H, W, C) and masks (H, W).

    `channels` (C): what every image must hold (kseg.data.io.read_image); every image's
    header is checked up front, so a file with another count fails before training.

    The first frames (in pair order) whose decoded size fits `cache_mb` MiB are decoded
    once, up front, and kept in memory; None keeps every frame. Which frames stay is
    fixed, so memory is bounded. With `spill` (the default), the others are decoded on
    first access into an unlinked temporary file (kseg.data.spill: read back from the
    page cache, outside the process's memory) and decoded per access only beyond what
    that file may hold; `take` decodes a batch's frames in two threads.
    """

    def __init__(self, pairs, spec, cache_mb=None, threads=4, channels=3, spill=True):
        self.pairs, self.spec, self.channels = list(pairs), spec, int(channels)
        if not self.pairs:
            raise DataError("no image/mask pairs to make patches from (empty split)")
        self.shapes = [io.image_size(p.mask) for p in self.pairs]  # headers only
        for p in self.pairs:
            io.check_channels(p.image, self.channels)  # headers only
        budget = math.inf if cache_mb is None else float(cache_mb) * 2**20
        decoded = np.cumsum([h * w * (self.channels + 1) for h, w in self.shapes])  # image + mask bytes
        kept = int(np.searchsorted(decoded, budget, side="right"))
        # Pillow releases the GIL while inflating PNGs, so threads help here.
        with ThreadPoolExecutor(threads) as pool:
            self._cache = list(pool.map(self._load, range(kept)))
        self._spill = SpillFile.for_frames(self.shapes[kept:], self.channels) if spill else None

    @classmethod
    def from_arrays(cls, images, masks, spec):
        """Frames from decoded uint8 images (H, W, C) and masks (H, W), e.g. for tests."""
        frames = cls.__new__(cls)
        frames.pairs, frames.spec = [None] * len(images), spec
        frames.channels = int(np.shape(images[0])[-1]) if len(images) else 3
        frames._cache = [(np.asarray(i, np.uint8), np.asarray(m, np.uint8))
                         for i, m in zip(images, masks, strict=True)]
        frames.shapes = [m.shape for _, m in frames._cache]
        frames._spill = None
        return frames

    def __len__(self):
        return len(self.pairs)

    def _load(self, i):
        pair = self.pairs[i]
        image, mask = io.read_image(pair.image, self.channels), io.read_mask(pair.mask, self.spec)
        if image.shape[:2] != mask.shape:
            raise DataError(f"{pair.image}: image size {image.shape[0]}x{image.shape[1]} != "
                            f"mask size {mask.shape[0]}x{mask.shape[1]} ({pair.mask})")
        return image, mask

    def __getitem__(self, i):
        if i < len(self._cache):
            return self._cache[i]
        k = i - len(self._cache)  # its place in the spill file
        frame = self._spill.read(k) if self._spill else None
        if frame is None:
            frame = self._load(i)
            if self._spill:
                self._spill.write(k, *frame)
        return frame

    def take(self, ids, threads=2):
        """{i: (image, mask)} for frame indices `ids`, the ones not in memory in threads."""
        ids = sorted(set(ids))
        todo = [i for i in ids if i >= len(self._cache)]
        if len(todo) < 2:
            return {i: self[i] for i in ids}
        with ThreadPoolExecutor(threads) as pool:
            decoded = dict(zip(todo, pool.map(self.__getitem__, todo), strict=True))
        return {i: decoded[i] if i in decoded else self._cache[i] for i in ids}

    @property
    def num_cached(self):
        """How many frames (the first ones) are kept decoded."""
        return len(self._cache)

    @property
    def num_spilled(self):
        """How many of the other frames the spill file takes (kseg.data.spill), decoded once."""
        return len(self._spill) if self._spill else 0

    @property
    def nbytes(self):
        """Bytes of the frames kept decoded in memory."""
        return sum(a.nbytes + b.nbytes for a, b in self._cache)


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
        **pydataset_kwargs: workers, use_multiprocessing, max_queue_size.
    """

    def __init__(self, pairs, spec, batch_size=16, patch=128, grid=(4, 4), augment=False,
                 shuffle=False, seed=0, class_weights=None, crops_per_image=16,
                 indices=None, cache_mb=None, scale=None, photometric=False, channels=3,
                 class_uniform=0.0, **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        size = (patch, patch) if np.ndim(patch) == 0 else tuple(patch)
        if int(batch_size) < 1 or len(size) != 2 or min(int(v) for v in size) < 1:
            raise ValueError(f"batch_size and patch must be >= 1 (patch: an int or (h, w)). "
                             f"Received: batch_size={batch_size}, patch={patch}")
        self.frames = pairs if isinstance(pairs, Frames) else Frames(pairs, spec, cache_mb, channels=channels)
        self.spec, self.batch_size = spec, int(batch_size)
        self.size = tuple(int(v) for v in size)
        self.patch = int(patch) if np.ndim(patch) == 0 else self.size
        self.grid = tuple(int(g) for g in grid) if grid else None
        self.per_image = self.grid[0] * self.grid[1] if self.grid else int(crops_per_image)
        self.augment = AugmentConfig.coerce(augment)
        self.scale = _check_scale(scale, self.grid)
        self.class_uniform = _check_class_uniform(class_uniform, self.grid)
        self.photometric = PhotometricConfig.coerce(photometric)
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), 0
        total = len(self.frames) * self.per_image
        self.indices = np.arange(total) if indices is None else np.asarray(indices, np.int64)
        self.class_weights = None
        if class_weights is not None:
            cw = np.asarray(class_weights, np.float32)
            if cw.shape != (spec.num_classes,):
                raise ValueError(f"class_weights needs {spec.num_classes} values. "
                                 f"Received shape {cw.shape}")
            self.class_weights = np.zeros(256, np.float32)  # void and unknown -> 0
            self.class_weights[:spec.num_classes] = cw
        self._order = (None, None)

    @property
    def num_patches(self):
        return len(self.indices)

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)

    def set_epoch(self, epoch):
        """Make batch content a function of (seed, epoch, index)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def order(self, epoch=None):
        """The patch indices in the order of `epoch` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)  # read once: workers run beside set_epoch
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            order = self.indices
            if self.shuffle:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
                order = order[rng.permutation(len(order))]
            self._order = (epoch, order)  # one tuple: safe across worker threads
        return order

    def __getitem__(self, index):
        return self.batch(self.epoch, index)  # one read of the epoch: order and draws agree

    def batch(self, epoch, index):
        """Batch `index` of `epoch`, whatever the current epoch (see training.data.RunBatches)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        ids = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), index]))
        x = np.empty((len(ids), *self.size, self.frames.channels), np.float32)
        y = np.empty((len(ids), *self.size), np.uint8)
        frames = self.frames.take(int(pid) // self.per_image for pid in ids)
        for k, pid in enumerate(ids):
            x[k], y[k] = self.patch_at(int(pid), rng, frames)
        if self.photometric is not None:  # drawn after every patch: the same rng stream
            x = jitter_colors(x, rng, self.photometric)
        return (x, y) if self.class_weights is None else (x, y, self.class_weights[y])

    def patch_at(self, pid, rng, frames=None):
        """Patch `pid` (frame pid // per_image): float32 (h, w, C), uint8 (h, w).

        `frames`: {frame index: (image, mask)} already decoded (see `Frames.take`).
        Photometric jitter is not applied here: it acts on whole batches."""
        frame, cell = divmod(pid, self.per_image)
        image, mask = frames[frame] if frames else self.frames[frame]
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
                  workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing)
    cw = dataset.class_weights[:dataset.spec.num_classes] if dataset.class_weights is not None else None
    train = PatchDataset(dataset.frames, augment=dataset.augment or False, shuffle=dataset.shuffle,
                         class_weights=cw, indices=np.sort(ids[n_val:]), scale=dataset.scale,
                         class_uniform=dataset.class_uniform,
                         photometric=dataset.photometric or False, **common)
    val = PatchDataset(dataset.frames, augment=False, shuffle=False, class_weights=cw,
                       indices=np.sort(ids[:n_val]), **common)
    return train, val
