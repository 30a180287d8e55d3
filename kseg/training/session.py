"""Opening a run directory for training: start it, continue it, or refuse with the reason.

One trainer per run directory (an flock), and a continued run must agree with the
settings it was started with, except those in RESUMABLE_CHANGES (`reconcile`, which
kseg.training.plan calls and which reads the folder without writing to it).
"""

import contextlib
import dataclasses
import shutil
import types

from kseg.errors import KsegError
from kseg.runs import RunState
from kseg.training.config import RESUMABLE_CHANGES, FitConfig

try:
    import fcntl
except ImportError:  # Windows: no lock, one trainer per run directory is up to the user
    fcntl = None


@contextlib.contextmanager
def lock(run):
    """Hold an exclusive lock on the run directory: one trainer per run at a time.

    flock is released by the kernel when the process dies, SIGKILL included, so a
    killed run never leaves a stale lock behind. A directory this call made is removed
    again, with what this call wrote into it, if no state.json was committed: a start
    refused (an unknown --monitor, a --model-arg the builder rejects, a full disk while
    config.json is written) leaves nothing behind.
    """
    made = [p for p in (run.path, *run.path.parents) if not p.exists()]  # the run folder, --runs ...
    created = bool(made)
    new_lock = created or not (run.path / ".lock").exists()
    run.path.mkdir(parents=True, exist_ok=True)
    try:
        with _flock(run):
            yield
    finally:
        if created and not run.state_path.exists():
            shutil.rmtree(run.path, ignore_errors=True)
            for parent in made[1:]:  # folders above it that this call made, while empty
                with contextlib.suppress(OSError):
                    parent.rmdir()
        elif new_lock and not run.state_path.exists():  # a folder that is not a run: as it was
            (run.path / ".lock").unlink(missing_ok=True)


@contextlib.contextmanager
def _flock(run):
    if fcntl is None:
        yield
        return
    with open(run.path / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KsegError(f"Another kseg fit is training {run.path}; wait for it or use --name.") from None
        yield


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a continued run brings from its folder: config.json as written, the state to
    continue from (with a new --lr recorded) and the history rows it committed."""

    config: types.MappingProxyType = dataclasses.field(repr=False)
    state: RunState
    history: tuple = dataclasses.field(repr=False)

    @property
    def epoch(self):
        """The epochs committed: training continues with epoch `epoch + 1`."""
        return self.state.epoch

    def line(self, run, epochs):
        """`Resuming runs/unet after epoch 3/20 (was interrupted).`"""
        verb = "Extending" if self.state.status == "finished" else "Resuming"
        return f"{verb} {run.path} after epoch {self.epoch}/{epochs} (was {self.state.status})."


def reconcile(run, cfg, resume, explicit):
    """`(FitConfig, SavedRun or None)`: `cfg` for a fresh run, else the saved run's settings
    with the RESUMABLE_CHANGES that `explicit` names taken from `cfg`. Reads, never writes.

    A run that never committed an epoch is started afresh with the new settings: it
    has no weights that the new settings could contradict.
    """
    if not run.exists():
        _refuse_restart(run, "has no state.json")
        _refuse_foreign(run)
        if resume:
            raise KsegError(f"Nothing to resume: {run.path} has no state.json. Drop --resume to start it.")
        return cfg, None
    state = run.state  # a damaged state.json stops here, naming its field
    if state.epoch == 0:
        # history.csv may hold the row of an epoch killed before its commit: not a reason.
        _refuse_restart(run, "records no finished epoch (state.json: epoch 0)", history=False)
        return cfg, None
    config = run.config
    saved = FitConfig.from_dict(config, where=run.config_path)
    _check_same_run(run, cfg, saved, explicit)
    epochs = cfg.epochs if "epochs" in explicit else (state.epochs or saved.epochs)
    _check_can_continue(run, state, epochs, resume)
    changes = {key: getattr(cfg, key) for key in RESUMABLE_CHANGES if key in explicit}
    changes["epochs"] = epochs
    if "task" not in config:
        changes["task"] = "multiclass"  # a run started before --task: softmax, whatever its classes
    history = tuple(r for r in run.history() if r["epoch"] <= state.epoch)  # not an uncommitted epoch
    resumed = SavedRun(types.MappingProxyType(config), _with_new_lr(state, cfg, saved, explicit), history)
    return dataclasses.replace(saved, **changes), resumed


def _with_new_lr(state, cfg, saved, explicit):
    """A new --lr replaces the schedule's current rate. Repeating the rate the run was given
    (the same command line again) must not undo the plateau's reductions. config.json
    keeps the starting rate; the change is recorded with its epoch."""
    last_given = state.lr_changes[-1]["lr"] if state.lr_changes else saved.lr
    if "lr" not in explicit or cfg.lr == last_given:
        return state
    changes = [*state.lr_changes, {"epoch": state.epoch + 1, "lr": cfg.lr}]
    return dataclasses.replace(state, lr=cfg.lr, lr_changes=changes)


def _refuse_restart(run, why, history=True):
    """A run folder is started afresh only when it holds no checkpoint (and, with `history`,
    no history.csv): a start would replace them, and a run is never restarted silently."""
    files = (run.last_path, run.best_path) + ((run.history_path,) if history else ())
    kept = [p.name for p in files if p.is_file()]
    if kept:
        raise KsegError(f"{run.path} {why} but holds {', '.join(kept)}: kseg will not start it again "
                        f"over them; restore state.json from a copy, or start afresh with --name NEW.")


# What a start that died before its first state.json can leave in a run folder.
_START_FILES = {"config.json", "env.json", ".lock", "tensorboard"}


def _refuse_foreign(run):
    """A folder without state.json becomes a run only when it holds nothing but what a
    start of kseg fit writes: --name pointing at a user's folder must not fill it."""
    if not run.path.is_dir():
        return  # a new folder (kseg fit --dry-run does not make it)
    theirs = sorted(p.name for p in run.path.iterdir()
                    if p.name not in _START_FILES and not p.name.startswith("."))
    if theirs:
        raise KsegError(f"{run.path} is not a kseg run (no state.json) and holds files kseg did not "
                        f"write (e.g. {theirs[0]}); choose another --name or --runs.")


def _check_same_run(run, cfg, saved, explicit):
    if cfg.arch != saved.arch:
        raise KsegError(f"{run.path} holds a {saved.arch!r} run, not {cfg.arch!r}; pick another --name.")
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    for key in (explicit & fields) - set(RESUMABLE_CHANGES):
        if _norm(getattr(cfg, key)) != _norm(getattr(saved, key)):
            raise KsegError(
                f"{run.path} was started with {key}={_norm(getattr(saved, key))}, not "
                f"{_norm(getattr(cfg, key))}; continue it without that option, or use --name."
            )


def _check_can_continue(run, state, epochs, resume):
    done = state.epoch
    if state.status == "finished" and epochs <= done:
        raise KsegError(f"{run.path} already finished {done} epochs; use --name for a new run, or "
                        f"--epochs N with N > {done} to extend it.")
    if state.status == "failed" and not resume:
        raise KsegError(f"{run.path} failed at epoch {done + 1} ({state.message}); add --resume to "
                        f"continue from epoch {done} (perhaps with a lower --lr), or use --name.")
    # A commit killed before its rename left last.keras under its pending name (recover()).
    if not (run.last_path.is_file() or run.pending_path("last", done).is_file()):
        raise KsegError(f"{run.last_path} is missing but state.json records {done} epochs; "
                        f"start again with --name.")


def first_state(cfg):
    """The RunState of a run about to start (written once the start is accepted)."""
    return RunState(epochs=cfg.epochs, monitor=cfg.monitor, lr=cfg.lr)


def start_fresh(run, config, env):
    """Write config.json and env.json of a new run. reconcile has made sure that no
    checkpoint is there; a history.csv is the row of an epoch killed before its commit."""
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    run.write_env(env)
    run.history_path.unlink(missing_ok=True)


def _norm(value):
    return list(value) if isinstance(value, tuple) else value
