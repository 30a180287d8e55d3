"""Worker processes that build batches: the throughput of `kseg fit --workers N` on N cores.

Threads cannot build kseg's numpy batches faster than one core (they share the GIL),
and Keras' fork-based process workers pickle every batch through a pipe and fork a
process that runs TensorFlow, which is not fork-safe. Here:

  * each worker is a fresh interpreter (`python -m kseg.data.pool_worker`, started as
    multiprocessing's "spawn" starts one, but without re-importing the parent's
    __main__, so a user's script without a main guard is not run again) that imports
    numpy and kseg's Keras-free data modules only;
  * the decoded frames are shared, not copied: the frames kept in memory in one
    SharedBuffer, the others in the spill file, both mapped or read by every worker;
  * a worker writes each batch into a slot of its stream's ring (kseg.data.batch_ring)
    and sends back only the slot; the parent copies the batch out (kseg.data.batch_stream);
  * lifetime: `close()`, or the pool being garbage-collected or the interpreter
    exiting, closes the sockets and each worker exits; a worker also exits when the
    parent dies (its socket reaches EOF), whatever killed it. A worker that dies or
    fails raises a one-line KsegError naming the batch in the waiting thread.
"""

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import wait
from pathlib import Path

from kseg.data import pool_wire
from kseg.data.batch_stream import BatchStream, describe_batch
from kseg.errors import KsegError

DEPTH = 2  # tasks sent ahead to each worker: it starts the next batch without waiting for the parent
ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this kseg package
# glibc's malloc hands large buffers (a frame read from the spill file, 0.7 MB; a batch
# with photometric jitter) back to the kernel when freed and faults them in again at the
# next batch: when workers still built every batch in their own memory, a third of a
# single-threaded worker's CPU went to page faults. Kept below 32 MB, freed memory is
# reused instead (other C libraries ignore these variables).
MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}


class BatchPool:
    """`workers` worker processes building the batches of one or more datasets.

    `stream(builder, frames)` gives a dataset's batches (kseg.data.batch_stream); the
    streams share the workers. The processes start at once (a second or so each to
    import numpy and Pillow, in parallel with whatever the caller does next).
    """

    def __init__(self, workers):
        if int(workers) < 1:
            raise ValueError(f"a BatchPool needs at least 1 worker. Received: workers={workers}")
        if trouble := unsupported():
            raise KsegError(f"Worker processes cannot run here: {trouble}. Use --worker-kind thread.")
        self._hub = _Hub(int(workers))
        weakref.finalize(self, self._hub.close)  # at garbage collection or exit, whichever is first

    @property
    def workers(self):
        return len(self._hub.workers)

    def stream(self, builder, frames, slots=None):
        """A BatchStream of `builder`'s batches over `frames` (shared on the way), with
        `slots` ring slots (default: two per worker)."""
        return BatchStream(self._hub, builder, frames, slots or 2 * self.workers)

    def info(self):
        """[{"pid", "cpu_seconds", "patches", "frameworks", "alive"}] per worker: the CPU
        time it reported with its last batch, the patches it has built, and the frameworks
        (keras, tensorflow, jax, torch) found imported in it then."""
        with self._hub.cond:
            return [{"pid": w.proc.pid, "cpu_seconds": w.cpu, "patches": w.rows,
                     "frameworks": list(w.frameworks), "alive": w.alive} for w in self._hub.workers]

    def close(self):
        """End the workers (idempotent); a stream's next batch is then a KsegError."""
        self._hub.close()


def unsupported():
    """Why worker processes cannot run on this system, or None (they need Unix sockets
    that carry file descriptors: Linux, macOS, the BSDs)."""
    if not (hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")):
        return "this system cannot pass file descriptors between processes (socket.send_fds)"
    return None


class _Worker:
    def __init__(self, index):
        self.index, self.busy, self.alive = index, collections.deque(), True
        self.cpu, self.frameworks, self.rows = 0.0, (), 0  # as of its last batch; patches built
        self.sock, child = socket.socketpair()
        path = os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH"))))  # this kseg, first
        env = {**MALLOC, **os.environ, "PYTHONPATH": path}
        # A session of its own: a Ctrl-C at the terminal is the parent's to act on.
        self.proc = subprocess.Popen([sys.executable, "-m", "kseg.data.pool_worker", str(child.fileno())],
                                     pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        child.close()  # the worker's end is the worker's alone: it sees EOF when this process goes

    def describe(self):
        return f"data worker {self.index} (pid {self.proc.pid})"


class _Hub:
    """The state the pool's collector thread shares with the streams (no reference back
    to the BatchPool, so that the pool can be garbage-collected while the thread runs)."""

    def __init__(self, workers):
        self.cond, self.queue, self.streams = threading.Condition(), collections.deque(), {}
        self.broken, self.closed, self._sids = None, False, 0
        self.workers = [_Worker(i) for i in range(workers)]
        self._wake, self._woken = socket.socketpair()
        self._collector = threading.Thread(target=self._collect, name="kseg-batch-pool", daemon=True)
        self._collector.start()

    def register(self, stream, payload, fds):
        with self.cond:
            if trouble := self.trouble():
                raise KsegError(f"No batches can be built: {trouble}.")
            sid, self._sids = self._sids, self._sids + 1
            self.streams[sid] = stream
            for worker in self._alive():
                self._send(worker, ("stream", sid, *payload), fds)
            return sid

    def unregister(self, sid):
        with self.cond:
            if self.streams.pop(sid, None) is None:
                return
            self.queue = collections.deque(task for task in self.queue if task[0] != sid)
            for worker in self._alive():
                self._send(worker, ("drop", sid))

    def submit(self, sid, slot, key):
        self.queue.append((sid, slot, key))

    def cancel(self, sid, slot):
        """True if the task of (sid, slot) was still waiting for a worker (now dropped)."""
        for task in self.queue:
            if task[:2] == (sid, slot):
                self.queue.remove(task)
                return True
        return False

    def dispatch(self):
        """Hand waiting tasks to the least busy workers (under the lock)."""
        while self.queue and not (self.broken or self.closed):
            worker = min(self._alive(), key=lambda w: len(w.busy), default=None)
            if worker is None or len(worker.busy) >= DEPTH:
                return
            sid, slot, (epoch, index) = task = self.queue.popleft()
            worker.busy.append(task)
            self.streams[sid].started(slot)
            self._send(worker, ("task", sid, slot, epoch, index))

    def trouble(self):
        """Why no more batches can be built (a worker is gone, the pool is closed), or None."""
        if self.broken:
            return self.broken
        return "the data worker processes were closed" if self.closed else None

    def _alive(self):
        return [w for w in self.workers if w.alive]

    def _send(self, worker, message, fds=()):
        try:
            pool_wire.send(worker.sock, message, fds)
        except OSError:
            self._lost(worker)

    def _collect(self):
        """Read the workers' replies until the pool closes (the collector thread); should
        it fail, the waiting threads get the error instead of waiting for ever."""
        try:
            self._collect_replies()
        except Exception as exc:
            with self.cond:
                self.broken = f"the data workers' reader failed ({type(exc).__name__}: {exc})"
                self.cond.notify_all()

    def _collect_replies(self):
        while True:
            with self.cond:
                if self.closed:
                    return
                socks = {w.sock: w for w in self._alive()}
            ready = wait([self._woken, *socks])
            for sock in ready:
                if sock is self._woken:
                    return
                try:
                    message, _ = pool_wire.recv(sock)
                except (EOFError, OSError):
                    message = None
                with self.cond:
                    self._reply(socks[sock], message)
                    self.cond.notify_all()

    def _reply(self, worker, message):
        if message is None:
            return self._lost(worker)
        kind, sid, slot = message[:3]
        task = next((t for t in worker.busy if t[:2] == (sid, slot)), None)
        if task is None:  # the worker was given up for lost meanwhile (a failed send)
            return None
        worker.busy.remove(task)
        stream = self.streams.get(sid)
        if kind == "done":
            worker.cpu, worker.frameworks = message[4], tuple(message[5])
            worker.rows += message[3]
            if stream:
                stream.finished(slot, rows=message[3])
        elif stream:
            stream.finished(slot, error=f"{worker.describe()} failed: {message[3]}")
        self.dispatch()

    def _lost(self, worker):
        """`worker` is gone: every stream now fails, naming the batch it was building."""
        if not worker.alive:
            return
        worker.alive = False
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=5)
        how = _ending(worker.proc.returncode)
        doing = " and ".join(describe_batch(key) for _, _, key in worker.busy)
        self.broken = f"{worker.describe()} {how}" + (f" while building {doing}" if doing else "")
        for sid, slot, _ in worker.busy:
            if sid in self.streams:
                self.streams[sid].finished(slot, error=self.broken)
        worker.busy.clear()

    def close(self):
        """Close the sockets (each worker sees EOF and exits), wait for the processes
        (killing any still there after 5 s) and the collector thread."""
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        with contextlib.suppress(OSError):
            self._wake.send(b"x")
        if self._collector is not threading.current_thread():
            self._collector.join(timeout=5)
        for worker in self.workers:
            worker.sock.close()
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._wake.close()
        self._woken.close()
        for stream in self.streams.values():  # streams not closed by their datasets
            stream.ring.close()
        self.streams.clear()


def _ending(code):
    """How a process ended, from its return code (None: still there)."""
    if code is None:
        return "closed its socket"
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"
