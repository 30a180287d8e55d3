"""Decoded frames: in this process's memory, in shared memory, or in the spill file.

`Frames` decodes a split's image/mask pairs once, up to a memory budget, and reads the
others back from an unlinked temporary file (kseg.data.spill). For worker processes
(kseg.data.batch_pool) `share()` moves the frames kept in memory into one SharedBuffer
and `export()` describes the frames with the descriptors a worker needs; the worker's
`Frames.attach` maps the same memory read-only and reads the same spill file, so a
frame is decoded once and held once whatever the number of workers. Keras-free.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kseg.data import io
from kseg.data.shared_buffer import SharedBuffer
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
        self._shared = None

    @classmethod
    def from_arrays(cls, images, masks, spec):
        """Frames from decoded uint8 images (H, W, C) and masks (H, W), e.g. for tests."""
        frames = cls.__new__(cls)
        frames.pairs, frames.spec = [None] * len(images), spec
        frames.channels = int(np.shape(images[0])[-1]) if len(images) else 3
        frames._cache = [(np.asarray(i, np.uint8), np.asarray(m, np.uint8))
                         for i, m in zip(images, masks, strict=True)]
        frames.shapes = [m.shape for _, m in frames._cache]
        frames._spill, frames._shared = None, None
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
        """{i: (image, mask)} for frame indices `ids`, the ones not in memory in `threads`
        threads (1: in this thread, as a worker process does)."""
        ids = sorted(set(ids))
        todo = [i for i in ids if i >= len(self._cache)]
        if len(todo) < 2 or threads < 2:
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
        """Bytes of the frames kept decoded in memory (shared or not)."""
        return sum(a.nbytes + b.nbytes for a, b in self._cache)

    def share(self):
        """Move the frames kept in memory into one SharedBuffer (once): the same bytes,
        now mappable by worker processes; this process reads them through read-only views."""
        if self._shared is not None:
            return self
        sizes = [image.nbytes + mask.nbytes for image, mask in self._cache]
        self._shared = SharedBuffer(sum(sizes))
        self._cache = _views(self._shared, _layout(self._cache), self._cache)
        return self

    def export(self):
        """`(description, descriptors)` for `Frames.attach` in a worker process (after share())."""
        if self._shared is None:
            raise RuntimeError("Frames.export() needs share() first")
        description = {"pairs": self.pairs, "spec": self.spec, "channels": self.channels,
                       "shapes": self.shapes, "cached": _layout(self._cache), "size": self._shared.size,
                       "spill": self._spill.shapes if self._spill else None}
        return description, [self._shared.fd] + ([self._spill.fileno()] if self._spill else [])

    @classmethod
    def attach(cls, description, fds):
        """The Frames that `export` describes, in a worker: shared memory mapped read-only,
        the spill file through its descriptor. Owns `fds` (close() closes them)."""
        frames = cls.__new__(cls)
        for key in ("pairs", "spec", "channels", "shapes"):
            setattr(frames, key, description[key])
        frames._shared = SharedBuffer.attach(fds[0], description["size"], writable=False)
        frames._cache = _views(frames._shared, description["cached"])
        spilled = description["spill"]
        frames._spill = SpillFile.attach(fds[1], spilled, frames.channels) if spilled else None
        return frames

    def close(self):
        """Release the shared memory and the spill file (views already handed out stay valid)."""
        self._cache = []
        for part in (self._shared, self._spill):
            if part is not None:
                part.close()
        self._shared = self._spill = None


def _layout(frames):
    """[(image shape, mask shape)] of (image, mask) arrays, packed one after another."""
    return [(tuple(image.shape), tuple(mask.shape)) for image, mask in frames]


def _views(buffer, layout, source=None):
    """Read-only (image, mask) uint8 views of `buffer` packed as `layout`; filled from
    `source`'s arrays first when given."""
    out, offset = [], 0
    for k, shapes in enumerate(layout):
        pair = []
        for j, shape in enumerate(shapes):
            view = buffer.array(shape, np.uint8, offset)
            if source is not None:
                view[...] = source[k][j]
                view.flags.writeable = False
            pair.append(view)
            offset += view.nbytes
        out.append(tuple(pair))
    return out
