"""Training as in the study, resumable at any point.

The network ends in logits and the loss is cross-entropy `from_logits=True`: the same
function as the study's softmax + categorical cross-entropy, but computed through
log-softmax, which does not overflow or take log(0). Adam at `lr`, ReduceLROnPlateau
on val_loss (Keras' defaults: factor 0.1, patience 10), best checkpoint on
val_accuracy. See kseg/runs.py for the files and kseg/callbacks.py for the commit.
"""

import contextlib
import dataclasses
import time
from pathlib import Path

from kseg import output
from kseg.callbacks import (
    GuardCallback,
    Interrupted,
    NonFiniteLoss,
    ResumablePlateau,
    RunRecorder,
    StopSignals,
)
from kseg.errors import KsegError
from kseg.fitconfig import RESUMABLE_CHANGES, FitConfig, data_fingerprint, environment
from kseg.progress import RichProgress
from kseg.runs import RunDir

try:
    import fcntl
except ImportError:  # Windows: no lock, one trainer per run directory is up to the user
    fcntl = None


class FitInterrupted(KsegError):
    """Training stopped on SIGINT/SIGTERM; the run directory is consistent and resumable."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell convention for "killed by signal"


def fit(cfg, runs="runs", name=None, resume=False, explicit=(), progress=None):
    """Train `cfg.arch` into `runs/<name>` (default name: the arch); returns the RunDir.

    An existing run directory is continued when it was interrupted (or `resume=True`);
    a finished one is extended only when `cfg.epochs` is larger. `explicit` names the
    FitConfig fields the user set on purpose: on a continued run they must match the
    saved config, except RESUMABLE_CHANGES. `progress`: RichProgress live flag (None:
    by TTY).
    """
    cfg.validate()
    run = RunDir(Path(runs) / (name or cfg.arch))
    with _lock(run):
        cfg, state, history = _open_run(run, cfg, resume, set(explicit))
        return _train(run, cfg, state, history, progress)


def _open_run(run, cfg, resume, explicit):
    """Start a fresh run directory or reopen one; returns (cfg, state, history rows)."""
    if not run.exists():
        if resume:
            raise KsegError(f"Nothing to resume: {run.path} has no state.json. Drop --resume to start it.")
        return cfg, None, []
    state = run.recover()
    saved = FitConfig.from_dict(run.config)
    status, done = state["status"], state["epoch"]
    if cfg.arch != saved.arch:
        raise KsegError(f"{run.path} holds a {saved.arch!r} run, not {cfg.arch!r}; pick another --name.")
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    for key in (explicit & fields) - set(RESUMABLE_CHANGES):
        if _norm(getattr(cfg, key)) != _norm(getattr(saved, key)):
            raise KsegError(
                f"{run.path} was started with {key}={_norm(getattr(saved, key))}, not "
                f"{_norm(getattr(cfg, key))}; continue it without that option, or use --name."
            )
    epochs = cfg.epochs if "epochs" in explicit else state.get("epochs", saved.epochs)
    if status == "finished" and epochs <= done:
        raise KsegError(
            f"{run.path} already finished {done} epochs; use --name for a new run, or "
            f"--epochs N with N > {done} to extend it."
        )
    if status == "failed" and not resume:
        raise KsegError(
            f"{run.path} failed at epoch {done + 1} ({state.get('message')}); add --resume to "
            f"continue from epoch {done} (perhaps with a lower --lr), or use --name."
        )
    if done > 0 and not run.last_path.is_file():
        raise KsegError(
            f"{run.last_path} is missing but state.json records {done} epochs; start again with --name."
        )
    saved_lr = saved.lr
    for key in RESUMABLE_CHANGES:
        if key in explicit:
            setattr(saved, key, getattr(cfg, key))
    saved.epochs = epochs
    changes = state.get("lr_changes") or []
    last_given = changes[-1]["lr"] if changes else saved_lr
    if "lr" in explicit and cfg.lr != last_given:
        # A new --lr replaces the schedule's current rate. Repeating the rate the run was
        # given (the same command line again) must not undo the plateau's reductions.
        # config.json keeps the starting rate; the change is recorded with its epoch.
        state["lr"] = cfg.lr
        state.setdefault("lr_changes", []).append({"epoch": done + 1, "lr": cfg.lr})
    history = [r for r in run.history() if r["epoch"] <= done]  # drop rows of an uncommitted epoch
    verb = "Extending" if status == "finished" else "Resuming"
    output.console.print(
        f"{verb} {run.path} after epoch {done}/{epochs} (was {status}).", highlight=False, soft_wrap=True
    )
    return saved, state, history


def _train(run, cfg, state, history, progress):
    import keras

    from kseg import registry
    from kseg.metrics import segmentation_loss, training_metrics

    entry = registry.get_entry(cfg.arch)
    if cfg.patch % entry.stride:
        raise KsegError(f"--patch {cfg.patch} is not a multiple of {cfg.arch}'s stride {entry.stride}.")
    dataset, data_label = _open_data(cfg.data)
    spec = dataset.spec
    metrics = training_metrics(spec.num_classes, spec.void)
    cfg.check_monitor([m.name for m in metrics])
    train_data, val_data, pairs = _datasets(cfg, dataset)

    fresh = state is None
    if fresh:
        run.path.mkdir(parents=True, exist_ok=True)
        config = {
            **cfg.to_dict(),
            "data": data_label,
            "data_path": str(dataset.root),
            "spec": spec.to_dict(),
            "stride": entry.stride,
            "monitor_mode": cfg.monitor_mode,
        }
        run.write_config(config)
        run.write_env(environment(data_fingerprint([p for pair in pairs for p in (pair.image, pair.mask)])))
        for stale in (run.history_path, run.last_path, run.best_path):
            stale.unlink(missing_ok=True)  # leftovers of a run that died before its first commit
        state = {
            "status": "running",
            "epoch": 0,
            "epochs": cfg.epochs,
            "best_value": None,
            "best_epoch": None,
            "monitor": cfg.monitor,
            "lr": cfg.lr,
            "plateau": None,
            "train_seconds": 0.0,
            "sessions": 0,
        }
    else:
        config = run.config
        if config.get("epochs") != cfg.epochs:
            run.write_config({**config, "epochs": cfg.epochs})
    state.update(status="running", epochs=cfg.epochs, sessions=state.get("sessions", 0) + 1, message=None)
    run.write_state(state)

    seed_everything(cfg.seed, cfg.deterministic, cfg.jit)
    keras.config.set_dtype_policy(cfg.precision)
    with _strategy_scope(cfg.distribute):
        model = _build_model(registry, cfg, spec)
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.lr),
            loss=segmentation_loss(spec.void),
            metrics=metrics,
            jit_compile="auto" if cfg.jit is None else cfg.jit,
        )
        if state["epoch"] > 0:
            _load_checkpoint(model, run.last_path)
            model.optimizer.learning_rate = state["lr"]  # the plateau's rate, or an explicit --lr
        elif cfg.init_from:
            _init_from(model, cfg.init_from, spec.num_classes)

    plateau = ResumablePlateau(
        restore=state.get("plateau"),
        monitor="val_loss",
        factor=cfg.plateau_factor,
        patience=cfg.plateau_patience,
    )
    recorder = RunRecorder(run, state, history, cfg.monitor, cfg.monitor_mode, plateau, train_data)
    bar = RichProgress(live=progress)
    with StopSignals() as signals:
        callbacks = [GuardCallback(signals), plateau, recorder, bar]
        try:
            # shuffle=False: PatchDataset shuffles itself from (seed, epoch). Keras' own batch
            # shuffle draws from the global RNG, whose position differs after a resume.
            model.fit(
                train_data,
                validation_data=val_data,
                epochs=cfg.epochs,
                initial_epoch=state["epoch"],
                callbacks=callbacks,
                verbose=0,
                shuffle=False,
            )
        except Interrupted as exc:
            _stop(run, recorder.state, "interrupted", f"stopped by {exc}")
            raise FitInterrupted(
                f"Stopped by {exc} after epoch {recorder.state['epoch']}/{cfg.epochs}; "
                f"{run.path} is consistent. Run the same command again to continue.",
                exc.signum,
            ) from None
        except NonFiniteLoss as exc:
            _stop(run, recorder.state, "failed", str(exc))
            good = recorder.state["epoch"]
            kept = f"the checkpoints of epoch {good} are kept" if good else "no checkpoint was written"
            raise KsegError(
                f"Training stopped: {exc}. In {run.path} {kept}. Lower --lr and continue "
                f"with --resume --lr LR, or start again with --name."
            ) from None
        except KeyboardInterrupt:
            _stop(run, recorder.state, "interrupted", "KeyboardInterrupt")
            raise
        except BaseException as exc:
            _stop(run, recorder.state, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        finally:
            bar.close()
    _stop(run, recorder.state, "finished", None)
    return run


def _stop(run, state, status, message):
    state.update(status=status, message=message, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    run.write_state(state)


def _open_data(data):
    from kseg.data import readers, synth

    if data is None:
        return readers.open_dataset(synth.default_dataset_dir()), "synthetic"
    root = Path(data).expanduser().resolve()
    return readers.open_dataset(root), str(root)


def _datasets(cfg, dataset):
    """(train, val, pairs used): PatchDatasets per cfg.split; pairs feed the fingerprint."""
    from kseg.data import patches, weights

    train_pairs = dataset.pairs("train")
    weights_ = weights.median_frequency_weights(train_pairs, dataset.spec) if cfg.class_weights else None
    common = dict(
        spec=dataset.spec,
        batch_size=cfg.batch_size,
        patch=cfg.patch,
        grid=cfg.grid,
        seed=cfg.seed,
        class_weights=weights_,
    )
    # One memory budget for decoded frames: training frames first (augmented and read
    # every epoch in random order), validation frames get what is left.
    budget = cfg.frame_cache_mb
    train_frames = patches.Frames(train_pairs, dataset.spec, cache_mb=budget)
    train = patches.PatchDataset(train_frames, augment=cfg.augment, shuffle=True, **common)
    if cfg.split == "80/20":
        # The study's split: 20 % of the training patches, seeded.
        train, val = patches.split_patches(train, fraction=0.2, seed=cfg.seed)
        return train, val, train_pairs
    if "val" not in dataset.splits:
        raise KsegError(
            f"{dataset.root} has no val split; use --split 80/20 to validate on training patches."
        )
    val_pairs = dataset.pairs("val")
    val_budget = max(0.0, budget - train_frames.nbytes / 2**20)
    val = patches.PatchDataset(val_pairs, shuffle=False, cache_mb=val_budget, **common)
    return train, val, train_pairs + val_pairs


def seed_everything(seed, deterministic=None, jit=None):
    """Seed Python, numpy and the backend; set TensorFlow op determinism.

    `deterministic=None` turns TF op determinism on only when no GPU is visible and XLA
    was not asked for: on a GPU it picks slower kernels and fails on ops that have no
    deterministic one, and Keras silently drops `jit_compile=True` while it is on. The
    flag is process-wide, so it is set either way, not only turned on.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if deterministic is None:
            deterministic = not (jit or tf.config.list_physical_devices("GPU"))
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        else:
            # No public switch back; Keras reads the same private module's flag.
            from tensorflow.python.framework import config as tf_config

            tf_config.disable_op_determinism()


def _strategy_scope(enabled):
    # PERF HOOK (owned by the perf helper): kseg/distribute.py provides
    # `strategy_scope()`, a context manager inside which the model, optimizer and
    # metrics are built (a tf.distribute / keras.distribution setup).
    if not enabled:
        return contextlib.nullcontext()
    try:
        from kseg import distribute
    except ModuleNotFoundError:
        raise KsegError("--distribute needs kseg.distribute, which this build does not have.") from None
    return distribute.strategy_scope()


def _build_model(registry, cfg, spec):
    try:
        return registry.create_model(cfg.arch, num_classes=spec.num_classes, **cfg.model_kwargs)
    except TypeError as exc:
        raise KsegError(f"{cfg.arch} rejected --model-arg {cfg.model_kwargs}: {exc}") from None


def _load_checkpoint(model, path):
    """Weights and optimizer state of `path` into the compiled `model`."""
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except ValueError as exc:
        raise KsegError(
            f"{path} does not fit {model.name} with {model.output_shape[-1]} classes "
            f"({str(exc).splitlines()[0]}); use --name for a new run."
        ) from None


def _init_from(model, source, num_classes):
    """Start from the weights of another checkpoint (a .keras file or a run directory)."""
    import keras

    import kseg.metrics.keras_metrics  # noqa: F401  (registers kseg's objects for loading)

    path = Path(source)
    if path.is_dir():
        path = RunDir(path).best_path
    if not path.is_file():
        raise KsegError(f"--init-from {source}: no such checkpoint (a .keras file or a run directory).")
    src = keras.saving.load_model(path, compile=False)
    src_classes = src.output_shape[-1]
    if src.name != model.name or src_classes != num_classes:
        raise KsegError(
            f"--init-from {path} is a {src.name!r} model with {src_classes} classes; "
            f"this run trains {model.name!r} with {num_classes}."
        )
    shapes = [w.shape for w in src.weights], [w.shape for w in model.weights]
    if shapes[0] != shapes[1]:
        raise KsegError(f"--init-from {path}: its layers differ from {model.name}'s (other --model-arg?).")
    model.set_weights(src.get_weights())


@contextlib.contextmanager
def _lock(run):
    """Hold an exclusive lock on the run directory: one trainer per run at a time.

    flock is released by the kernel when the process dies, SIGKILL included, so a
    killed run never leaves a stale lock behind.
    """
    run.path.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(run.path / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KsegError(f"Another kseg fit is training {run.path}; wait for it or use --name.") from None
        yield


def _norm(value):
    return list(value) if isinstance(value, tuple) else value
