"""Opening a run directory for training: start it, continue it, or refuse with the reason.

One trainer per run directory (an flock), and a continued run must agree with the
settings it was started with, except those in RESUMABLE_CHANGES.
"""

import contextlib
import dataclasses

from kseg import output
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
    again if nothing but the lock was written (a start refused for an unknown --monitor).
    """
    created = not run.path.exists()
    run.path.mkdir(parents=True, exist_ok=True)
    try:
        with _flock(run):
            yield
    finally:
        if created and {p.name for p in run.path.iterdir()} <= {".lock"}:
            (run.path / ".lock").unlink(missing_ok=True)
            run.path.rmdir()


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


def open_run(run, cfg, resume, explicit):
    """`(cfg, state, history rows)`: a fresh run (state None) or the one on disk, continued.

    A run that never committed an epoch is started afresh with the new settings: it
    has no weights that the new settings could contradict.
    """
    if not run.exists():
        if resume:
            raise KsegError(f"Nothing to resume: {run.path} has no state.json. Drop --resume to start it.")
        return cfg, None, []
    state = run.recover()
    if state.epoch == 0:
        return cfg, None, []
    saved = FitConfig.from_dict(run.config)
    _check_same_run(run, cfg, saved, explicit)
    epochs = cfg.epochs if "epochs" in explicit else (state.epochs or saved.epochs)
    _check_can_continue(run, state, epochs, resume)
    last_given = state.lr_changes[-1]["lr"] if state.lr_changes else saved.lr
    for key in RESUMABLE_CHANGES:
        if key in explicit:
            setattr(saved, key, getattr(cfg, key))
    saved.epochs = epochs
    if "lr" in explicit and cfg.lr != last_given:
        # A new --lr replaces the schedule's current rate. Repeating the rate the run was
        # given (the same command line again) must not undo the plateau's reductions.
        # config.json keeps the starting rate; the change is recorded with its epoch.
        state.lr = cfg.lr
        state.lr_changes.append({"epoch": state.epoch + 1, "lr": cfg.lr})
    if run.config.get("epochs") != epochs:
        run.write_config({**run.config, "epochs": epochs})  # config.json keeps the epochs asked for
    history = [r for r in run.history() if r["epoch"] <= state.epoch]  # drop an uncommitted epoch
    verb = "Extending" if state.status == "finished" else "Resuming"
    output.console.print(f"{verb} {run.path} after epoch {state.epoch}/{epochs} (was {state.status}).",
                         highlight=False, soft_wrap=True)
    return saved, state, history


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
    if not run.last_path.is_file():
        raise KsegError(f"{run.last_path} is missing but state.json records {done} epochs; "
                        f"start again with --name.")


def start_fresh(run, cfg, config, env):
    """Write config.json and env.json of a new run; returns its first RunState."""
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    run.write_env(env)
    for stale in (run.history_path, run.last_path, run.best_path):
        stale.unlink(missing_ok=True)  # leftovers of a run that died before its first commit
    return RunState(epochs=cfg.epochs, monitor=cfg.monitor, lr=cfg.lr)


def _norm(value):
    return list(value) if isinstance(value, tuple) else value
