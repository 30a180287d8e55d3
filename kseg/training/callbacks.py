"""Keras callbacks of `kseg fit`: the per-epoch commit, signal and NaN guards, the LR plateau,
TensorBoard logs.

Callback order matters (Keras calls them in list order): the schedule updates the
learning rate and its counters in `on_epoch_end` before `RunRecorder` commits them,
so a resumed run continues with exactly the schedule state of its last epoch.

Why not `keras.callbacks.BackupAndRestore` (Keras 3.15, read in its source): it
writes `latest.weights.h5` and then `training_metadata.json` in place, one after the
other, so a kill between or during the two leaves weights of epoch e with the epoch
number of e-1 (its `.bkp` copy only covers an unreadable weights file); it records
the epoch alone, so the plateau's counters, the best value, the history and the LR
schedule restart on resume; and it deletes its backup when training ends, so a
finished run cannot be extended. `RunRecorder` commits all of that through one
atomic state.json, and tests/test_resume.py kills real runs to check it.
"""

import importlib.util
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np

from kseg import atomic, compat
from kseg.errors import KsegError
from kseg.runs import HISTORY_COLUMNS, timestamp
from kseg.runs.rundir import OPTIONAL_COLUMNS
from kseg.training.checkpoints import save_checkpoint


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; training stopped at the end of a step."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class NonFiniteLoss(Exception):
    """The loss (or a validation loss) became NaN or infinite."""


class StopSignals:
    """Context manager: SIGINT/SIGTERM set a flag instead of killing the process.

    The flag is read by `GuardCallback` after each step, so the process never dies
    inside a file write. A second SIGINT falls back to Python's default (an immediate
    KeyboardInterrupt), for a user who really wants out; the run directory is still
    consistent then, because every file is written atomically.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.signum = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self):
        # signal.signal only works in the main thread; elsewhere (a notebook's worker
        # thread, a test runner) training simply runs without the clean stop.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class GuardCallback(keras.callbacks.Callback):
    """After every step: stop on a signal, fail on a non-finite loss.

    Both raise instead of setting `model.stop_training`: with the flag, Keras would
    still run a full validation pass and `on_epoch_end` for a half-finished epoch,
    which would then have to be recognised and thrown away. Raising leaves at once;
    the epoch is simply not committed and is replayed on resume.
    """

    def __init__(self, signals=None):
        super().__init__()
        self.signals = signals
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check_signal()
        loss = _float((logs or {}).get("loss"))
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLoss(
                f"the training loss became {loss} at epoch {self.epoch + 1}, step {batch + 1}"
            )

    def on_test_batch_end(self, batch, logs=None):
        self._check_signal()

    def _check_signal(self):
        if self.signals is not None and self.signals.signum is not None:
            raise Interrupted(self.signals.signum)


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters survive a restart.

    Keras resets `wait`, `best` and `cooldown_counter` in `on_train_begin`; a resumed
    run puts back the values committed with its last epoch (`snapshot()`).
    """

    def __init__(self, restore=None, **kwargs):
        super().__init__(**kwargs)
        self.restore = restore

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.restore:
            self.wait = int(self.restore["wait"])
            self.cooldown_counter = int(self.restore["cooldown_counter"])
            self.best = self.restore["best"]

    def snapshot(self):
        best = None if self.best is None else float(self.best)
        return {"wait": int(self.wait), "cooldown_counter": int(self.cooldown_counter), "best": best}


class RunRecorder(keras.callbacks.Callback):
    """Commits each finished epoch to the run directory.

    Order of writes for epoch e (state.json is the commit point):
      1. last.keras's successor to `.last.e000e.keras` (and a copy to `.best...` if
         the monitor improved), each written atomically;
      2. history.csv, rewritten atomically from the in-memory rows;
      3. state.json (atomic): epoch = e from here on;
      4. the pending checkpoints renamed over last.keras / best.keras.
    A kill before 3 leaves state at e-1 with last.keras/best.keras of e-1 untouched;
    resume truncates history to e-1 rows, deletes the pending files and replays e.
    A kill between 3 and 4 leaves state at e with its checkpoints under pending
    names; `RunDir.recover()` renames them. Writing the checkpoint straight over
    last.keras before the commit (the naive order) would resume epoch e from
    weights that already trained on it.
    """

    def __init__(self, run, state, history, monitor, mode, schedule=None, train_data=None):
        super().__init__()
        self.run, self.state, self.rows = run, state, list(history)
        self.monitor, self.mode, self.schedule = monitor, mode, schedule
        self.train_data = train_data
        self._t0 = None
        self._lr = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.train_data is not None and hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        self._lr = current_lr(self.model)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:  # the rate of the epoch's first step, after a step schedule set it
            self._lr = current_lr(self.model)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: _float(v) for k, v in (logs or {}).items()}
        for key in ("loss", "val_loss"):
            if key in logs and not math.isfinite(logs[key]):
                raise NonFiniteLoss(f"{key} became {logs[key]} at epoch {epoch + 1}")
        e = epoch + 1
        row = {k: logs.get(k) for k in HISTORY_COLUMNS}
        row.update({k: logs[k] for k in OPTIONAL_COLUMNS if k in logs})
        row.update(epoch=e, lr=self._lr, seconds=round(time.perf_counter() - self._t0, 3))
        value = logs.get(self.monitor)
        improved = self._improved(value)

        pending_last = self.run.pending_path("last", e)
        with atomic.atomic_path(pending_last) as tmp:
            save_checkpoint(self.model, tmp)
        pending_best = None
        if improved:
            pending_best = self.run.pending_path("best", e)
            with atomic.atomic_path(pending_best) as tmp:
                shutil.copyfile(pending_last, tmp)  # same weights; no second serialisation

        self.rows = [r for r in self.rows if r["epoch"] < e] + [row]
        self.run.write_history(self.rows)

        s = self.state
        s.status, s.epoch, s.updated = "running", e, timestamp()
        s.lr = current_lr(self.model)  # after the schedule's update: the next epoch's rate
        s.train_seconds = round(sum(r["seconds"] for r in self.rows), 3)
        if self.schedule is not None:
            self.schedule.commit(s)  # the plateau's counters / the step schedule's record
        if improved:
            s.best_value, s.best_epoch = value, e
        self.run.write_state(s)  # <- commit

        os.replace(pending_last, self.run.last_path)
        if pending_best is not None:
            os.replace(pending_best, self.run.best_path)

    def _improved(self, value):
        if value is None or not math.isfinite(value):
            return False
        best = self.state.best_value
        if best is None:
            return True
        return value > best if self.mode == "max" else value < best


def require_tensorboard():
    """Fail in one line, before training, where Keras' TensorBoard callback could not write:
    tf.summary needs TensorFlow and the tensorboard package, which TensorFlow 2.20+ no
    longer installs (without it, the first epoch's scalars raise TBNotInstalledError)."""
    missing = [m for m in ("tensorflow", "tensorboard") if importlib.util.find_spec(m) is None]
    if missing:
        raise KsegError(f"--tensorboard needs {' and '.join(missing)}: pip install {' '.join(missing)} "
                        f"(or pip install 'kseg[tensorboard]'), or drop --tensorboard.")


class RunTensorBoard(keras.callbacks.TensorBoard):
    """keras.callbacks.TensorBoard writing `<run>/tensorboard/{train,validation}`, continued
    by every later session of the run (`kseg fit --tensorboard`).

    The step of an epoch's scalars is kseg's epoch number, 1-based as in history.csv, so
    a run resumed after epoch k logs k+1, k+2 ... Every session writes new event files
    (tf.summary names them by time, host, pid and a counter) beside the earlier ones,
    which TensorBoard reads as one run. Put after RunRecorder: only committed epochs
    are logged, so an epoch replayed after a kill or a NaN is logged once. Keras
    requires TensorFlow for this (tf.summary) under every backend.
    """

    def __init__(self, run, recorder, **kwargs):
        super().__init__(log_dir=str(Path(run.path) / "tensorboard"), **kwargs)
        self.recorder = recorder

    def on_epoch_end(self, epoch, logs=None):
        # Keras logs the optimizer's rate, which a plateau may already have lowered for
        # the next epoch; log the rate this epoch trained at, as history.csv does.
        rows = self.recorder.rows
        rate = rows[-1]["lr"] if rows and rows[-1]["epoch"] == epoch + 1 else None
        with compat.tensorboard_learning_rate(self, rate):
            super().on_epoch_end(epoch + 1, logs)


def current_lr(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def _float(value):
    if value is None:
        return None
    return float(np.asarray(value))
