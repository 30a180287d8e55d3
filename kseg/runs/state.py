"""`state.json`: the commit point of a run, as one dataclass.

Every field `kseg fit` commits after an epoch lives here; the trainer, the callbacks,
`kseg eval` and the report read and write this class, never a dict literal.
"""

import dataclasses
import time

from kseg.errors import KsegError
from kseg.validation import check_fields, number

STATUSES = ("running", "finished", "interrupted", "failed")
# What a damaged state.json's message tells the user to do.
STATE_ADVICE = ("restore the file from a copy, or start afresh with --name NEW (the run's checkpoints "
                "are left as they are)")


def timestamp():
    """Local time as ISO 8601 with offset, e.g. 2026-11-25T10:21:52+0000."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclasses.dataclass
class RunState:
    """Where a run stands. `epoch` counts committed epochs (the checkpoints on disk)."""

    status: str = "running"  # running | finished | interrupted | failed
    epoch: int = 0
    epochs: int | None = None  # epochs asked for (grows when a finished run is extended)
    best_value: float | None = None
    best_epoch: int | None = None
    monitor: str | None = None
    lr: float | None = None  # the rate of the next epoch (after the schedule's update)
    lr_changes: list = dataclasses.field(default_factory=list)  # [{"epoch", "lr"}] from --lr on resume
    plateau: dict | None = None  # ResumablePlateau.snapshot()
    schedule: dict | None = None  # StepSchedule.snapshot()
    train_seconds: float = 0.0
    sessions: int = 0  # how many times `kseg fit` opened this run
    message: str | None = None  # why it stopped, for interrupted and failed runs
    updated: str | None = None

    @classmethod
    def from_dict(cls, d, where="state.json"):
        """From state.json, checked: `status` and `epoch` must be there (without them a run
        would silently start again), every field of its type; other missing fields take
        their defaults, unknown ones are dropped (a newer kseg may add fields). A damaged
        file is a KsegError naming `where` and the field."""
        known = check_fields(cls, d, where, required=("status", "epoch"), advice=STATE_ADVICE)
        if known["status"] not in STATUSES:
            raise KsegError(f"{where}: status must be one of {', '.join(STATUSES)}. Received: "
                            f"{known['status']!r}; {STATE_ADVICE}")
        try:
            for key in ("epoch", "epochs", "sessions"):
                if known.get(key) is not None:
                    number(known[key], f"{where}: {key}", low=0, integer=True)
            _check_nested(known, where)
        except KsegError as exc:
            raise KsegError(f"{exc.message}; {STATE_ADVICE}") from None
        return cls(**known)

    def to_dict(self):
        return dataclasses.asdict(self)

    def stop(self, status, message=None):
        """Mark the run stopped (finished, interrupted or failed) now."""
        self.status, self.message, self.updated = status, message, timestamp()
        return self


def _check_nested(known, where):
    """The parts of state.json a resumed run reads field by field: each `lr_changes` entry
    ({"epoch", "lr"}) and the plateau's counters ({"wait", "cooldown_counter", "best"};
    `best` may be infinite, Keras' start value), and the rate, which must be > 0."""
    if known.get("lr") is not None:
        number(known["lr"], f"{where}: lr", low=0, low_open=True)
    for i, change in enumerate(known.get("lr_changes") or []):
        name = f"{where}: lr_changes[{i}]"
        if not isinstance(change, dict) or not {"epoch", "lr"} <= set(change):
            raise KsegError(f"{name} must be an object with epoch and lr. Received: {change!r:.80}")
        number(change["epoch"], f"{name}.epoch", low=1, integer=True)
        number(change["lr"], f"{name}.lr", low=0, low_open=True)
    plateau = known.get("plateau")
    if plateau is not None:
        if not {"wait", "cooldown_counter", "best"} <= set(plateau):
            raise KsegError(f"{where}: plateau must hold wait, cooldown_counter and best. "
                            f"Received: {plateau!r:.80}")
        for key in ("wait", "cooldown_counter"):
            number(plateau[key], f"{where}: plateau.{key}", low=0, integer=True)
        best = plateau["best"]
        if isinstance(best, bool) or not isinstance(best, (int, float)):
            raise KsegError(f"{where}: plateau.best must be a number. Received: {best!r:.80}")
