"""Decoded frames beyond the memory budget, kept in an unlinked temporary file.

`kseg fit` keeps `--frame-cache` MiB of decoded frames in its own memory; the others
used to be decoded again on every access. Decoding a 360x480 CamVid PNG pair costs
5.5 ms of CPU, and a shuffled batch of 16 grid patches touches about 16 frames, so at
the study's settings decoding was 4 of the 5.6 CPU-ms that each patch cost, on the
same cores as the train step. Here each such frame is decoded once and written as raw
uint8 bytes to a temporary file; later reads copy it back from the operating system's
page cache (about 0.1 ms for a CamVid frame). Those pages are the kernel's, not the
process's: peak RSS stays what the memory budget says, and the kernel drops them
under memory pressure (a read then goes to disk, still far cheaper than a decode).

The file is unlinked as soon as it is created (tempfile.TemporaryFile), so nothing is
left behind, not even after SIGKILL. It takes at most half the free space of the
temporary directory; frames beyond that are decoded per access as before. Every
frame has a fixed offset (its size is known from the headers), so threads write and
read with os.pwrite / os.pread and need no lock; two threads that decode the same
frame at once write the same bytes. Which frames are written is kept in the file too,
one byte per frame ahead of them, set after the frame's bytes: worker processes given
the file's descriptor (`attach`, kseg.data.batch_pool) share the frames each decoded.
Where os.pread is missing (Windows), nothing is spilled.
"""

import os
import shutil
import tempfile

import numpy as np


class SpillFile:
    """Raw uint8 (image, mask) frames at fixed offsets of one unlinked temporary file.

    Args:
        shapes: (H, W) of each frame that may be spilled, in order.
        channels: C of every image (the mask adds one byte per pixel).
        directory: where the file goes (default: tempfile.gettempdir()).
    """

    def __init__(self, shapes, channels, directory=None, file=None):
        self.shapes, self.channels = [tuple(s) for s in shapes], int(channels)
        sizes = [h * w * (self.channels + 1) for h, w in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        self._base = -(-len(self.shapes) // 4096) * 4096  # the written flags, then the frames
        self._file = tempfile.TemporaryFile(dir=directory) if file is None else file
        self._written = [False] * len(self.shapes)  # what this process knows to be written

    @classmethod
    def attach(cls, fd, shapes, channels):
        """The SpillFile behind descriptor `fd` (another process's, received from it) for the
        same `shapes` and `channels`; close() closes `fd`."""
        return cls(shapes, channels, file=os.fdopen(fd, "r+b", buffering=0))

    def fileno(self):
        return self._file.fileno()

    @classmethod
    def for_frames(cls, shapes, channels, directory=None):
        """A SpillFile for the leading `shapes` that fit in half the free space of
        `directory`, or None (nothing fits, or no os.pread here)."""
        if not shapes or not hasattr(os, "pread"):
            return None
        directory = directory or tempfile.gettempdir()
        free = shutil.disk_usage(directory).free / 2
        sizes = np.cumsum([h * w * (int(channels) + 1) for h, w in shapes])
        fits = int(np.searchsorted(sizes, free, side="right"))
        return cls(shapes[:fits], channels, directory) if fits else None

    def __len__(self):
        return len(self.shapes)

    @property
    def nbytes(self):
        """Bytes the file holds once every frame is written."""
        return self.offsets[-1]

    def read(self, k):
        """(image (H, W, C), mask (H, W)) uint8 of frame k, or None if not written yet."""
        if not (k < len(self.shapes) and self._is_written(k)):
            return None
        h, w = self.shapes[k]
        data = np.empty(self.offsets[k + 1] - self.offsets[k], np.uint8)
        at = self._base + self.offsets[k]
        if hasattr(os, "preadv"):  # straight into the array: no bytes object to copy from
            read = os.preadv(self._file.fileno(), [data], at)
        else:
            chunk = os.pread(self._file.fileno(), len(data), at)
            read = len(chunk)
            data[:read] = np.frombuffer(chunk, np.uint8)
        if read != len(data):
            raise OSError(f"spill file: frame {k} read {read} of {len(data)} bytes")
        n = h * w * self.channels  # the image's bytes, then the mask's
        return data[:n].reshape(h, w, self.channels), data[n:].reshape(h, w)

    def write(self, k, image, mask):
        """Store frame k (shapes as at construction); frames past the file's end are ignored."""
        if k >= len(self.shapes) or self._is_written(k):
            return
        h, w = self.shapes[k]
        if image.shape != (h, w, self.channels) or mask.shape != (h, w):
            raise ValueError(f"frame {k}: expected image {(h, w, self.channels)} and mask {(h, w)}. "
                             f"Received: {image.shape} and {mask.shape}")
        data = (np.ascontiguousarray(image, np.uint8).tobytes()
                + np.ascontiguousarray(mask, np.uint8).tobytes())
        os.pwrite(self._file.fileno(), data, self._base + self.offsets[k])
        os.pwrite(self._file.fileno(), b"\x01", k)  # after the bytes are in: no reader sees a partial frame
        self._written[k] = True

    def _is_written(self, k):
        if not self._written[k]:  # another process may have written it since
            self._written[k] = os.pread(self._file.fileno(), 1, k) == b"\x01"
        return self._written[k]

    def close(self):
        self._file.close()
