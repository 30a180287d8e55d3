"""Memory that several processes map: an anonymous memfd, or an unlinked file elsewhere.

kseg's batch worker processes (kseg.data.batch_pool) read the decoded frames from one
buffer and write their batches into another. Neither has a name: the memory is freed
when the last process mapping it unmaps it or exits, so nothing can be left behind in
/dev/shm, not even after SIGKILL, and no resource tracker process is needed
(multiprocessing.shared_memory names its segments, and before Python 3.13 its tracker
also unlinks a segment when a process that only attached to it exits, bpo-38119). A
buffer reaches a worker as its descriptor, over the worker's socket (kseg.data.pool_wire).
Where os.memfd_create is missing (macOS), the memory is an unlinked file in /dev/shm if
there is one, else in the temporary folder.
"""

import contextlib
import mmap
import os
import tempfile

import numpy as np


class SharedBuffer:
    """`size` bytes of memory shared through a file descriptor.

    Args:
        size: bytes (at least 1 is mapped).
        fd: an existing buffer's descriptor (see `attach`); None creates a new buffer.
        writable: map for writing; False maps read-only (numpy views are read-only too).
    """

    def __init__(self, size, fd=None, writable=True):
        self.size = max(int(size), 1)
        self.fd = _anonymous(self.size) if fd is None else int(fd)
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self._map = mmap.mmap(self.fd, self.size, access=access)

    @classmethod
    def attach(cls, fd, size, writable=True):
        """The buffer behind descriptor `fd` (received from another process), mapped here."""
        return cls(size, fd, writable)

    def array(self, shape, dtype, offset=0):
        """A numpy view of `shape` and `dtype` at byte `offset` (no copy)."""
        return np.ndarray(shape, dtype, buffer=self._map, offset=offset)

    def close(self):
        """Unmap and close the descriptor. While numpy views of it are alive the mapping
        stays (mmap refuses to close under them) and goes with the last view."""
        if self.fd is None:
            return
        with contextlib.suppress(BufferError):
            self._map.close()
        os.close(self.fd)
        self.fd = None


def _anonymous(size):
    """A descriptor of `size` zero bytes of memory with no name anywhere."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("kseg-shared", os.MFD_CLOEXEC)
    else:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="kseg-shared-", dir=folder)
        os.unlink(path)  # from here on it has no name
    os.ftruncate(fd, size)
    return fd
