"""One dataset's batches from worker processes: a ring of slots and a read-ahead plan.

`get(epoch, index)` returns the batch that PatchBuilder.batch(frames, epoch, index)
returns in this thread, byte for byte, whichever worker built it. Meanwhile the next
keys are being built, one per slot: after (e, i) comes (e, i + 1), and after an
epoch's last batch (e + 1, 0) for a shuffled dataset (training), (e, 0) for one whose
epochs are the same (validation). An epoch seen to end early (a capped one) or to
jump teaches the plan its length and step. A wrong guess costs only the wasted
builds: a key that was not planned is built on demand, and slots holding keys that
are no longer ahead are freed (those still being built, once they are done).
"""

from kseg.data.batch_ring import BatchRing
from kseg.errors import KsegError

FREE, QUEUED, RUNNING, READY, FAILED, READING = "free", "queued", "running", "ready", "failed", "reading"


class BatchStream:
    """Batches of `builder` over `frames` built by `hub`'s workers into `slots` slots
    (see kseg.data.batch_pool.BatchPool.stream)."""

    def __init__(self, hub, builder, frames, slots):
        self._hub, self._builder = hub, builder
        self.ring = BatchRing(slots, builder.batch_size, builder.size, frames.share().channels)
        self._key, self._state = [None] * self.ring.slots, [FREE] * self.ring.slots
        self._rows, self._error, self._where = [0] * self.ring.slots, [None] * self.ring.slots, {}
        self.period, self.advance = max(1, len(builder)), 1 if builder.shuffle else 0
        self._last = None
        frames_description, fds = frames.export()
        ring_description, ring_fd = self.ring.describe()
        self.sid = hub.register(self, (builder, frames_description, ring_description), [*fds, ring_fd])

    def get(self, epoch, index):
        """(images float32 (B, h, w, C), labels uint8 (B, h, w)) of batch `index` of `epoch`."""
        key, cond = (int(epoch), int(index)), self._hub.cond
        with cond:
            self._learn(key)
            while True:
                self._plan(key)
                slot = self._where.get(key)
                if slot is not None and self._state[slot] in (READY, FAILED):
                    break
                if trouble := self._hub.trouble():
                    raise cannot_build(key, trouble)
                cond.wait()
            if self._state[slot] == FAILED:
                error = self._error[slot]
                self._free(slot)
                raise cannot_build(key, error)
            self._state[slot] = READING
        try:
            return self.ring.take(slot, self._rows[slot])
        finally:
            with cond:
                self._free(slot)
                self._plan(self._next(key))

    def finished(self, slot, rows=0, error=None):
        """The hub's report (under its lock): `slot`'s batch is built, or failed with `error`."""
        if self._key[slot] is None:  # no longer wanted
            self._state[slot] = FREE
            return
        self._state[slot], self._rows[slot], self._error[slot] = (FAILED if error else READY), rows, error

    def started(self, slot):
        self._state[slot] = RUNNING

    def close(self):
        """Stop building; the workers let go of the frames and the ring."""
        self._hub.unregister(self.sid)
        self.ring.close()

    def _next(self, key):
        epoch, index = key
        return (epoch, index + 1) if index + 1 < self.period else (epoch + self.advance, 0)

    def _learn(self, key):
        """An epoch that ends early (first_batches) or steps by other than planned."""
        last, self._last = self._last, key
        if last is not None and key[1] == 0 and key[0] > last[0] and key != self._next(last):
            self.period, self.advance = last[1] + 1, key[0] - last[0]

    def _plan(self, start):
        """Slots for `start` and the keys after it, as many as there are slots."""
        window, key = [], start
        for _ in range(self.ring.slots):
            window.append(key)
            key = self._next(key)
        wanted = set(window)
        for slot, key in enumerate(self._key):
            if key is not None and key not in wanted and self._state[slot] != READING:
                self._drop(slot)
        free = [slot for slot, state in enumerate(self._state) if state == FREE]
        for key in window:
            if not free:
                break
            if key not in self._where:
                slot = free.pop(0)
                self._key[slot], self._state[slot], self._where[key] = key, QUEUED, slot
                self._hub.submit(self.sid, slot, key)
        self._hub.dispatch()

    def _drop(self, slot):
        state = self._state[slot]
        if state == QUEUED and not self._hub.cancel(self.sid, slot):
            state = RUNNING  # a worker has it already
        del self._where[self._key[slot]]
        self._key[slot] = None
        if state != RUNNING:  # a running build frees its slot when it is done (finished)
            self._state[slot] = FREE

    def _free(self, slot):
        self._where.pop(self._key[slot], None)
        self._key[slot], self._state[slot] = None, FREE


def describe_batch(key):
    """'batch 3 of epoch 2' for key (epoch index 1, batch index 3): epochs as the
    history counts them (from 1), batches as PatchDataset indexes them (from 0)."""
    return f"batch {key[1]} of epoch {key[0] + 1}"


def cannot_build(key, reason):
    """The one-line error of a batch the workers could not build."""
    return KsegError(f"Cannot build {describe_batch(key)}: {reason}. If a worker was killed for memory, "
                     f"lower --workers; --workers 0 builds the batches in the training process.")
