"""One run directory: what `kseg fit` leaves on disk and how the other commands read it.

    runs/<name>/
        config.json   the resolved training configuration (written once, at the start)
        env.json      kseg, keras, backend and python versions, platform, data fingerprint
        history.csv   one row per finished epoch (HISTORY_COLUMNS), 1-based `epoch`
        best.keras    the checkpoint with the best `monitor` value so far
        last.keras    the checkpoint of the last finished epoch, with optimizer state
        state.json    the commit point: status, epoch, best value, LR schedule state

Each epoch ends with one commit (see `kseg.training.callbacks.RunRecorder`): new checkpoints are
first written under *pending* names that carry their epoch (`.last.e0007.keras`), then
history.csv, then state.json, and only then are the pending files renamed over
last.keras / best.keras. A kill at any moment leaves state.json describing an epoch
whose files are all on disk, either under their final name or under a pending name
that `RunDir.recover()` finishes or discards on the next start.
"""

import csv
import io
import os
import re
from pathlib import Path

from kseg import atomic
from kseg.errors import KsegError
from kseg.runs.readback import check_config, parse_history, read_json, warnings_held
from kseg.runs.state import RunState

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "miou", "soft_dice",
    "val_loss", "val_accuracy", "val_miou", "val_soft_dice", "lr", "seconds",
)  # fmt: skip
_PENDING = re.compile(r"^\.(last|best)\.e(\d+)\.keras$")
# kseg.atomic's temporary files of this folder's files (".state.k2j4x9q1.json", and of a
# pending checkpoint "..last.e0003.k2j4x9q1.keras"): left by a writer that was killed.
_TEMPORARY = re.compile(r"^\.\.?(config|env|state|history|eval|last|best)(\.e\d+)?\.[\w-]+"
                        r"\.(json|csv|md|keras)$")

# Logged only by the runs that have them (two-class runs: the foreground's IoU), after
# HISTORY_COLUMNS, so every other run's history.csv keeps its columns.
OPTIONAL_COLUMNS = ("fg_iou", "val_fg_iou")


class RunDir:
    """One run directory. Reading is lazy; nothing is written by the reader methods."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self):
        return self.path.name

    # -- files ---------------------------------------------------------------
    config_path = property(lambda self: self.path / "config.json")
    env_path = property(lambda self: self.path / "env.json")
    state_path = property(lambda self: self.path / "state.json")
    history_path = property(lambda self: self.path / "history.csv")
    best_path = property(lambda self: self.path / "best.keras")
    last_path = property(lambda self: self.path / "last.keras")

    def pending_path(self, which, epoch):
        """Where the checkpoint `which` ("last" or "best") of `epoch` waits for its commit."""
        return self.path / f".{which}.e{epoch:04d}.keras"

    def exists(self):
        """True when a run was started here (state.json exists)."""
        return self.state_path.is_file()

    @property
    def config(self):
        """config.json as a dict, its keys checked (kseg.runs.readback.check_config)."""
        return check_config(read_json(self.config_path), self.config_path)

    @property
    def env(self):
        """env.json as a dict (a file that is not a JSON object is a KsegError naming it)."""
        env = read_json(self.env_path)
        if not isinstance(env, dict):
            raise KsegError(f"{self.env_path}: expected a JSON object; restore the file from a copy")
        return env

    @property
    def state(self):
        """state.json as a `RunState` (checked: a damaged file names its field)."""
        return RunState.from_dict(read_json(self.state_path), where=self.state_path)

    def optional_state(self):
        """The state, or a blank `RunState` when state.json is missing (hand-made runs)."""
        return self.state if self.state_path.is_file() else RunState(status="unknown")

    def optional_env(self):
        """env.json as a dict, {} when it is missing."""
        return self.env if self.env_path.is_file() else {}

    @property
    def stride(self):
        """What whole frames are padded to: config["stride"], else the registry's."""
        config = self.config
        if config.get("stride"):
            return int(config["stride"])
        if not config.get("arch"):
            raise KsegError(f"{self.config_path}: has neither 'stride' nor 'arch'; restore the file from "
                            f"a copy, or train the run again (kseg fit --name NEW)")
        from kseg.registry import get_entry

        try:
            return get_entry(config["arch"]).stride
        except KsegError as e:
            raise KsegError(f"{self.config_path}: 'arch': {e}") from None

    def grid(self, default=(4, 4)):
        """(grid, patch) of the study's patch grid: the run's own, or `default` for crop runs."""
        grid = self.config.get("grid") or default
        return tuple(int(g) for g in grid), int(self.config.get("patch") or 128)

    @property
    def spec(self):
        """The run's `DatasetSpec`, from config.json."""
        from kseg.data.dataset_spec import DatasetSpec

        config = self.config
        if "spec" not in config:  # a config.json made or cut by hand
            raise KsegError(f"{self.config_path} has no 'spec' (the dataset description kseg fit writes); "
                            f"restore the file, or train the run again.")
        return DatasetSpec.from_dict(config["spec"], source=f"{self.config_path} 'spec'")

    def history(self):
        """The finished epochs as a list of dicts (numbers as float, `epoch` as int)."""
        if not self.history_path.is_file():
            return []
        return parse_history(self.history_path, HISTORY_COLUMNS)

    def load_model(self, which="best"):
        """The checkpoint `which` ("best" or "last") as an uncompiled keras model."""
        import keras

        path = {"best": self.best_path, "last": self.last_path}.get(which)
        if path is None:
            raise KsegError(f"Unknown checkpoint {which!r}; choose 'best' or 'last'.")
        if not path.is_file():
            raise KsegError(f"{path} does not exist; train the run first (kseg fit).")
        try:
            with warnings_held():
                return keras.saving.load_model(path, compile=False)
        except Exception as exc:  # a truncated or foreign file raises many types
            raise KsegError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from None

    # -- writers (used by kseg fit) ------------------------------------------
    def write_config(self, config):
        atomic.write_json(self.config_path, config)

    def write_env(self, env):
        atomic.write_json(self.env_path, env)

    def write_state(self, state):
        """Commit a `RunState` (atomically: state.json is the commit point)."""
        atomic.write_json(self.state_path, state.to_dict())

    def write_history(self, rows):
        """Write all `rows` at once (atomically), so the file is never half a row long."""
        buf = io.StringIO()
        columns = HISTORY_COLUMNS + tuple(k for k in OPTIONAL_COLUMNS if any(k in row for row in rows))
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt_cell(row.get(k)) for k in columns})
        atomic.write_text(self.history_path, buf.getvalue())

    def recover(self):
        """Finish or discard the pending checkpoints of an interrupted commit.

        A pending file whose epoch state.json committed is renamed to its final name
        (the process died between the commit and the rename); any other pending file
        belongs to an epoch that never committed and is deleted, as are temporary
        files left by a killed atomic write. Call it only while holding the run's lock.
        Returns the `RunState`.
        """
        state = self.state
        for entry in self.path.iterdir():
            if not entry.name.startswith(".") or entry.name == ".lock" or not entry.is_file():
                continue
            match = _PENDING.match(entry.name)
            if not match:
                if _TEMPORARY.match(entry.name):  # other hidden files are not kseg's to delete
                    entry.unlink()
                continue
            which, epoch = match.group(1), int(match.group(2))
            committed = epoch == state.epoch and (which == "last" or epoch == state.best_epoch)
            if committed:
                os.replace(entry, self.path / f"{which}.keras")
            else:
                entry.unlink()
        return state


def _fmt_cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)
