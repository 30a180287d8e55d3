"""Slots of shared memory that worker processes write whole batches into.

A slot holds one batch, images float32 (B, h, w, C) then labels uint8 (B, h, w), at a
fixed offset of one SharedBuffer: a worker writes a batch in place and sends back only
(slot, rows); nothing the size of a batch is pickled or piped (a CamVid batch of 16
patches of 128 px is 3.4 MB). A stream of batches keeps two slots per worker
(kseg.data.batch_stream): one being written, one ready to read.
"""

import numpy as np

from kseg.data.shared_buffer import SharedBuffer

ALIGN = 4096  # each slot starts on its own page


def slot_bytes(batch_size, size, channels):
    """Bytes of one slot: a batch of (h, w) = `size` patches with `channels`, page-aligned."""
    pixels = int(batch_size) * int(size[0]) * int(size[1])
    return -(-pixels * (4 * int(channels) + 1) // ALIGN) * ALIGN


class BatchRing:
    """`slots` batch slots of `batch_size` patches of `size` (h, w) with `channels`.

    `buffer`: an attached SharedBuffer (a worker's, see `attach`); None creates one."""

    def __init__(self, slots, batch_size, size, channels, buffer=None):
        self.slots, self.batch_size = int(slots), int(batch_size)
        self.size, self.channels = tuple(int(v) for v in size), int(channels)
        self.stride = slot_bytes(self.batch_size, self.size, self.channels)
        self.buffer = buffer or SharedBuffer(self.slots * self.stride)

    def describe(self):
        """`(description, fd)` for `BatchRing.attach` in another process."""
        return (self.slots, self.batch_size, self.size, self.channels), self.buffer.fd

    @classmethod
    def attach(cls, description, fd):
        slots, batch_size, size, channels = description
        buffer = SharedBuffer.attach(fd, slots * slot_bytes(batch_size, size, channels))
        return cls(slots, batch_size, size, channels, buffer)

    @property
    def nbytes(self):
        return self.buffer.size

    def views(self, slot, rows=None):
        """(images (rows, h, w, C) float32, labels (rows, h, w) uint8): slot `slot`'s memory."""
        rows = self.batch_size if rows is None else int(rows)
        offset = int(slot) * self.stride
        images = self.buffer.array((rows, *self.size, self.channels), np.float32, offset)
        labels_at = offset + self.batch_size * self.size[0] * self.size[1] * self.channels * 4
        return images, self.buffer.array((rows, *self.size), np.uint8, labels_at)

    def take(self, slot, rows):
        """Copies of the first `rows` rows of `slot` (the slot may be reused at once)."""
        return tuple(np.array(view) for view in self.views(slot, rows))

    def close(self):
        self.buffer.close()
