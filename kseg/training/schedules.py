"""Learning-rate schedules with linear warmup: plateau, poly, cosine.

The rate is a pure function of where training is, the global step
`epoch * steps_per_epoch + batch`, so a run killed at any point (SIGKILL included)
and resumed with `fit(initial_epoch=k)` sets exactly the rates of an uninterrupted
run. Nothing has to be restored for that; `snapshot()` records the settings the
rate was computed from, so a resumed run whose total changed is detectable.

Warmup (all schedules) is linear over `warmup_steps` W, from base/W at step 0 to
base at step W-1; a first step at rate 0 would be wasted. After warmup, with
progress t = (step - W) / (total_steps - W) in [0, 1]:

    poly:    min_lr + (base - min_lr) * (1 - t) ** power
    cosine:  min_lr + (base - min_lr) * (1 + cos(pi * t)) / 2
    plateau: no rate; the ReduceLROnPlateau callback owns it from then on.

Both decays start at base (t = 0) and reach min_lr only at step == total_steps,
one past the last step that runs (as mmseg's poly: base * (1 - iter/max_iters)^p).
"""

import math
import numbers

import keras

from kseg.errors import KsegError
from kseg.training.config import SCHEDULES


def lr_at(schedule, step, total_steps, base_lr, warmup_steps=0, power=0.9, min_lr=0.0):
    """The learning rate of global step `step` (0-based) of a `total_steps` run.

    Args:
        schedule: one of SCHEDULES.
        step: the global step, `epoch * steps_per_epoch + batch`.
        total_steps: `epochs * steps_per_epoch`; warmup steps included.
        base_lr: the rate at the end of warmup (the peak).
        warmup_steps: linear warmup length W; 0 (default) for none.
        power: the poly exponent (0.9, as in DeepLab and mmseg).
        min_lr: the floor that poly and cosine decay to (0.0).

    Returns a float, or None for "plateau" after warmup (its callback sets the rate).
    Steps past `total_steps` get `min_lr` (t is clamped to 1).
    """
    check_schedule(schedule)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "plateau":
        return None
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "poly":
        decay = (1.0 - t) ** power
    else:
        decay = (1.0 + math.cos(math.pi * t)) / 2.0
    return min_lr + (base_lr - min_lr) * decay


def check_schedule(schedule):
    if schedule not in SCHEDULES:
        raise KsegError(f"Unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")


def warmup_steps_of(warmup_epochs, steps_per_epoch):
    """`warmup_epochs` (a float: 0.5 is half an epoch) in whole steps, checked."""
    if not (isinstance(warmup_epochs, numbers.Real) and math.isfinite(warmup_epochs) and warmup_epochs >= 0):
        raise KsegError(f"warmup_epochs={warmup_epochs!r} is not allowed; use a number >= 0 (0: no warmup).")
    return int(round(warmup_epochs * steps_per_epoch))


class StepSchedule(keras.callbacks.Callback):
    """Sets `optimizer.learning_rate` to `lr_at(global step)` before every train batch.

    Put it before the callbacks that read or commit the rate (ReduceLROnPlateau, the
    run recorder). For "plateau" it only acts during warmup; after that the rate is
    left alone for the plateau callback.

    Args:
        schedule, base_lr, power, min_lr: as for `lr_at`.
        epochs: the run's total epochs (the value given to `fit(epochs=)`).
        steps_per_epoch: batches per epoch; None takes Keras' `params["steps"]`.
        warmup_steps: linear warmup length in global steps.
        restore: a `snapshot()` of an earlier session. The rate needs nothing from
            it; `changes` lists the settings that differ from it, e.g. a finished
            run extended with more epochs: the decay is then recomputed over the new
            total, so the rate goes back up from the old run's final (near min_lr)
            rate to `lr_at(step, new_total)` and decays again to min_lr.

    Why `epoch * steps_per_epoch + batch` and not `optimizer.iterations` (which the
    .keras checkpoint also restores): reading the variable each batch would wait for
    the device and, on JAX, needs the whole training state synced back from the
    jitted loop; and it counts applied updates, which gradient accumulation divides.
    The epoch/batch count depends only on the loop position. Both agree as long as
    every epoch has `steps_per_epoch` batches (the tests check that they do).

    With `steps_per_execution > 1` Keras calls batch hooks once per execution, so the
    rate is updated at the first step of each execution and held for the rest.
    """

    def __init__(self, schedule, base_lr, epochs, steps_per_epoch=None, warmup_steps=0,
                 power=0.9, min_lr=0.0, restore=None):  # fmt: skip
        super().__init__()
        check_schedule(schedule)
        if not base_lr > 0:
            raise KsegError(f"base_lr={base_lr!r} is not allowed; the learning rate must be > 0.")
        if not 0 <= min_lr <= base_lr:
            raise KsegError(f"min_lr={min_lr!r} is not allowed; use a value in [0, base_lr={base_lr}].")
        if warmup_steps < 0:
            raise KsegError(f"warmup_steps={warmup_steps!r} is negative; use a number >= 0 (0: no warmup).")
        self.schedule, self.base_lr, self.epochs = schedule, float(base_lr), int(epochs)
        self.steps_per_epoch, self.warmup_steps = steps_per_epoch, int(warmup_steps)
        self.power, self.min_lr = float(power), float(min_lr)
        self.restore = restore
        self.changes = []  # [(key, old, new)] against `restore`, known after on_train_begin
        self._epoch = 0
        self._step = 0  # the next global step
        self._lr = None  # the last rate set

    @property
    def total_steps(self):
        return self.epochs * self.steps_per_epoch

    def on_train_begin(self, logs=None):
        steps = (self.params or {}).get("steps")
        if self.steps_per_epoch is None:
            self.steps_per_epoch = steps
        if not self.steps_per_epoch:
            raise KsegError("StepSchedule needs steps_per_epoch: the training data has no known length.")
        if steps is not None and steps != self.steps_per_epoch:
            raise KsegError(
                f"StepSchedule was set up for {self.steps_per_epoch} steps per epoch; fit runs {steps}."
            )
        if self.schedule != "plateau" and self.warmup_steps >= self.total_steps:
            raise KsegError(
                f"A warmup of {self.warmup_steps} steps leaves no steps to decay over in "
                f"{self.epochs} epochs of {self.steps_per_epoch}; shorten the warmup."
            )
        self.changes = changes(self.restore, self.snapshot())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._step = self._epoch * self.steps_per_epoch + batch
        lr = lr_at(self.schedule, self._step, self.total_steps, self.base_lr, self.warmup_steps,
                   self.power, self.min_lr)  # fmt: skip
        self._step += 1
        if lr is None:
            return
        # JAX's fit keeps the optimizer variables inside the jitted loop's state and only
        # re-reads them from the Variables after a sync: without it, the new rate would be
        # ignored until the next epoch (tests/test_schedules.py checks the effect). Keras
        # 3.15's `Callback.model` property already syncs on JAX; the explicit call keeps
        # this right where it does not, and is then a no-op. A sync costs one Python pass
        # over the variables per step; TensorFlow and PyTorch read the Variable directly.
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        self.model.optimizer.learning_rate = lr
        self._lr = lr

    def snapshot(self):
        """A small JSON dict: the settings the rates were computed from, and the position."""
        return {
            "schedule": self.schedule,
            "base_lr": self.base_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "power": self.power,
            "min_lr": self.min_lr,
            "step": self._step,
            "lr": self._lr,
        }


def changes(old, new):
    """[(key, old value, new value)] of the schedule settings that differ.

    Position ("step") and the last rate ("lr") are not settings and are not compared.
    A changed total_steps (a different --epochs) means the decay is recomputed over the
    new total from the current step; a changed steps_per_epoch (another batch size or
    dataset) keeps the epoch, so the fraction of the run done is kept.
    """
    if not old:
        return []
    return [(k, old.get(k), v) for k, v in new.items() if k not in ("step", "lr") and old.get(k) != v]


def make_schedule(schedule, base_lr, epochs, steps_per_epoch, warmup_epochs=0.0, restore=None,
                  power=0.9, min_lr=0.0):  # fmt: skip
    """The callbacks that drive the rate of `schedule`, to put before the run recorder.

    Args:
        schedule: one of SCHEDULES.
        base_lr: the peak rate (after warmup).
        epochs: the run's total epochs; steps_per_epoch: batches per epoch.
        warmup_epochs: linear warmup length in epochs (a float; rounded to steps).
        restore: the StepSchedule `snapshot()` committed by an earlier session.
        power, min_lr: as for `lr_at`.

    Returns a list: one StepSchedule for "poly" and "cosine"; for "plateau" one
    StepSchedule that only acts during warmup, or [] without warmup. The caller keeps
    its own ReduceLROnPlateau (with its resumable counters) after it in the list; this
    module builds none, so it does not depend on where that callback lives. During
    warmup the plateau still watches val_loss: a reduction it makes in a warmup epoch
    is overwritten by the ramp at the next step, and warmup epochs count towards its
    patience. Use a patience longer than the warmup.
    """
    check_schedule(schedule)
    warmup_steps = warmup_steps_of(warmup_epochs, steps_per_epoch)
    if schedule == "plateau" and warmup_steps == 0:
        return []
    return [StepSchedule(schedule, base_lr, epochs, steps_per_epoch, warmup_steps, power, min_lr, restore)]


class RunSchedule:
    """The LR callbacks of one `kseg fit` session and the state they commit each epoch.

    `callbacks`: the step schedule (poly, cosine, or plateau's warmup), then, for
    "plateau", the ResumablePlateau. `commit(state)` writes both snapshots into the
    RunState that RunRecorder commits.
    """

    def __init__(self, cfg, steps_per_epoch, state):
        from kseg.training.callbacks import ResumablePlateau

        # An explicit --lr on resume restarts the schedule from that rate.
        base = state.lr_changes[-1]["lr"] if state.lr_changes else cfg.lr
        self.steps = make_schedule(cfg.schedule, base, cfg.epochs, steps_per_epoch, cfg.warmup_epochs,
                                   restore=state.schedule)
        self.plateau = None
        if cfg.schedule == "plateau":
            self.plateau = ResumablePlateau(restore=state.plateau, monitor="val_loss",
                                            factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        self.callbacks = [*self.steps, *([self.plateau] if self.plateau else [])]

    def commit(self, state):
        state.plateau = self.plateau.snapshot() if self.plateau else None
        state.schedule = self.steps[0].snapshot() if self.steps else None
