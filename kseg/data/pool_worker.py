"""A batch worker process: `python -m kseg.data.pool_worker FD`, started by kseg.data.batch_pool.

It imports numpy, Pillow and kseg's Keras-free data modules, never Keras or a
framework. It reads messages from the socket FD (kseg.data.pool_wire):

    ("stream", id, PatchBuilder, frames description, ring description) + descriptors
    ("task", id, slot, epoch, index)  -> ("done", id, slot, rows, CPU seconds, frameworks)
                                      or ("error", id, slot, one line)
    ("drop", id)

builds each batch with PatchBuilder.batch, the function the training thread runs
without workers, and writes it into the stream's ring slot. It ends when the pool
closes its socket, or when the pool's process ends. SIGINT and SIGTERM are the
pool's to act on (a Ctrl-C reaches the whole process group; `kseg fit` stops
gracefully on both and may still need batches), so they are ignored here.
"""

import signal
import socket
import sys
import time

from kseg.data import pool_wire
from kseg.data.batch_ring import BatchRing
from kseg.data.frame_store import Frames
from kseg.errors import KsegError

FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def serve(sock):
    """Answer the pool's messages on `sock` until it closes."""
    streams = {}
    try:
        while True:
            try:
                message, fds = pool_wire.recv(sock)
                kind, sid = message[0], message[1]
                if kind == "stream":
                    streams[sid] = _attach(message, fds)
                elif kind == "drop" and sid in streams:
                    _close(streams.pop(sid))
                elif kind == "task":
                    pool_wire.send(sock, _build(streams[sid], *message[1:]))
            except (EOFError, OSError):  # the pool has closed its end, or its process is gone
                return
    finally:
        for stream in streams.values():
            _close(stream)


def _attach(message, fds):
    _, _sid, builder, frames, ring = message
    count = len(fds) - 1  # the frames' descriptors, then the ring's
    return builder, Frames.attach(frames, fds[:count]), BatchRing.attach(ring, fds[count])


def _build(stream, sid, slot, epoch, index):
    builder, frames, ring = stream
    try:
        # Built in place, in the slot: one core per worker, no copy of the batch.
        images, _ = builder.batch(frames, epoch, index, threads=1, out=ring.views(slot))
    except Exception as exc:  # reported, not raised: the pool names the batch
        text = str(exc) if isinstance(exc, KsegError) else f"{type(exc).__name__}: {exc}"
        return "error", sid, slot, " ".join(text.split())
    frameworks = [name for name in FRAMEWORKS if name in sys.modules]
    return "done", sid, slot, len(images), time.process_time(), frameworks


def _close(stream):
    _, frames, ring = stream
    frames.close()
    ring.close()


def main(argv):
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    serve(socket.socket(fileno=int(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
