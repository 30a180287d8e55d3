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
        except KsegError as exc:
            raise KsegError(f"{exc.message}; {STATE_ADVICE}") from None
        return cls(**known)

    def to_dict(self):
        return dataclasses.asdict(self)

    def stop(self, status, message=None):
        """Mark the run stopped (finished, interrupted or failed) now."""
        self.status, self.message, self.updated = status, message, timestamp()
        return self
