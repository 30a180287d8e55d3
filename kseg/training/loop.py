"""`fit`: train a network into a run directory, resumable at any point.

The network ends in logits and the loss is computed from them (kseg.losses): for
cross-entropy that is the study's softmax + categorical cross-entropy, computed through
log-softmax, which does not overflow or take log(0). Adam (AdamW with weight decay) at
`lr`, the LR schedule of kseg.training.schedules, best checkpoint on `monitor`. See
kseg.runs for the files and kseg.training.callbacks for the per-epoch commit.
"""

import contextlib
import signal
from pathlib import Path

from kseg import compat, output
from kseg.data.overlap import split_overlaps
from kseg.errors import KsegError
from kseg.runs import RunDir
from kseg.training import arguments, session
from kseg.training.callbacks import (
    GuardCallback,
    Interrupted,
    NonFiniteLoss,
    RunRecorder,
    RunTensorBoard,
    StopSignals,
    require_tensorboard,
)
from kseg.training.environment import data_fingerprint, environment
from kseg.training.progress import RichProgress
from kseg.training.task import check_task_options, logit_channels, resolve_task


class FitInterrupted(KsegError):
    """Training stopped on SIGINT/SIGTERM; the run directory is consistent and resumable."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell convention for "killed by signal"


def fit(cfg, runs="runs", name=None, resume=False, explicit=(), progress=None, max_steps=None,
        callbacks=()):
    """Train `cfg.arch` into `runs/<name>` (default name: the arch); returns the RunDir.

    An existing run directory is continued when it was interrupted (or `resume=True`);
    a finished one is extended only when `cfg.epochs` is larger. `explicit` names the
    FitConfig fields set on purpose: on a continued run they must match the saved
    config, except RESUMABLE_CHANGES. `progress`: live bar (None: by TTY).
    `max_steps` caps the batches of each epoch (benchmarks and quick checks).
    `callbacks`: more Keras callbacks, called after kseg's own have committed an epoch.
    """
    from kseg.training import distribute, finetune, hardware
    from kseg.training.inputs import class_weights, first_batches, open_data, pick_workers, training_datasets

    cfg.validate()
    callbacks = arguments.check_callbacks(callbacks)
    runs = arguments.check_fit_arguments(runs, name, max_steps, resume, progress)
    run = RunDir(Path(runs) / (name or cfg.arch))
    with session.lock(run):
        cfg, state, history = session.open_run(run, cfg, resume, set(explicit))
        # Before TensorFlow's or JAX's first op: multi-worker set-up must come first.
        topo = distribute.topology(cfg.batch_size, cfg.distribute)  # None without --distribute
        dataset, label = open_data(cfg.data)
        for line in split_overlaps(dataset.splits):
            output.err_console.print(f"Warning: {line}", soft_wrap=True, markup=False, highlight=False)
        if state is not None and "task" not in run.config:
            cfg.task = "multiclass"  # a run started before --task: softmax, whatever its classes
        cfg.task = resolve_task(cfg.task, dataset.spec)
        check_task_options(cfg, dataset.spec)
        _check_against(cfg, dataset.spec)
        _check_data(dataset, cfg)  # after the cheap checks: it decodes every file
        workers, workers_reason = pick_workers(cfg.workers, kind=cfg.worker_kind)
        train_data, val_data, pairs = training_datasets(cfg, dataset, workers)
        chosen, choice = hardware.choose(cfg)
        choice["workers"], choice["workers_reason"] = workers, workers_reason
        jit = {True: "on", False: "off", None: "auto"}[choice["jit"]]
        output.console.print(f"precision {choice['precision']} ({choice['precision_reason']}), "
                             f"XLA {jit} ({choice['jit_reason']}), {choice['workers']} data workers "
                             f"({choice['workers_reason']})", highlight=False)
        if topo:
            output.console.print(distribute.describe(topo), highlight=False, soft_wrap=True)
            train_data, val_data = (distribute.worker_batches(d, topo) for d in (train_data, val_data))
        train_data, val_data = first_batches(train_data, val_data, max_steps)
        fresh = state is None
        state = session.first_state(cfg) if fresh else state
        # The model and the callbacks first: a start they refuse (a --model-arg, an
        # --init-from, a schedule) has written nothing yet.
        model = build_model(chosen, dataset.spec, run, state, class_weights(cfg, dataset))
        callbacks = _callbacks(cfg, run, state, history, train_data, len(train_data), progress,
                               (*finetune.callbacks(model, cfg), *callbacks))
        if fresh:
            _start(run, cfg, dataset, label, pairs, choice, topo)
        elif run.config.get("epochs") != cfg.epochs:  # config.json keeps the epochs asked for
            run.write_config({**run.config, "epochs": cfg.epochs})
        state.status, state.epochs, state.message = "running", cfg.epochs, None
        state.sessions += 1
        run.write_state(state)
        _run(model, cfg, run, callbacks, train_data, val_data, state.epoch)
    return run


def _check_data(dataset, cfg):
    """`kseg data check`'s checks and refusals (one class, void, classes absent from train)
    before any file is written; prints what was inferred and the task trained."""
    from kseg.data.check import check_dataset
    from kseg.data.trainable import one_line

    summary = check_dataset(dataset, channels=cfg.channels)
    line = one_line({**summary["inferred"], "task": f"{cfg.task} task"})
    output.console.print(line, highlight=False, markup=False, soft_wrap=True)
    if summary["kseg_json"]:
        output.console.print(f"wrote the inferred palette to {summary['kseg_json']}", highlight=False,
                             markup=False, soft_wrap=True)


def _check_against(cfg, spec):
    """Checks that need the registry or the dataset, before any file is written."""
    from kseg import registry
    from kseg.metrics import training_metrics

    stride = registry.get_entry(cfg.arch).stride
    if cfg.patch % stride:
        raise KsegError(f"--patch {cfg.patch} is not a multiple of {cfg.arch}'s stride {stride}.")
    cfg.check_monitor([m.name for m in training_metrics(spec.num_classes, spec.void, spec.multilabel)])
    if cfg.tensorboard:  # also when a resumed run has it from config.json
        require_tensorboard()


def _start(run, cfg, dataset, label, pairs, choice, topo=None):
    """Write config.json and env.json (with the precision and XLA chosen, and the
    `--distribute` topology) of a fresh run."""
    from kseg import registry

    config = {**cfg.to_dict(), "data": label, "data_path": str(dataset.root),
              "spec": dataset.spec.to_dict(), "stride": registry.get_entry(cfg.arch).stride,
              "monitor_mode": cfg.monitor_mode}
    env = environment(data_fingerprint([p for pair in pairs for p in (pair.image, pair.mask)]), chosen=choice,
                      distribute=topo)
    session.start_fresh(run, config, env)


def build_model(cfg, spec, run=None, state=None, class_weights=None, fused_norm=True):
    """The compiled model of a run: built, then resumed from last.keras or --init-from.

    `class_weights`: (K,) loss weights per class, or None. `fused_norm`: train batch
    norm with TensorFlow's fused kernel (kseg.training.fused_norm; False: Keras' ops).
    """
    from kseg.losses import build_loss
    from kseg.metrics import training_metrics
    from kseg.training import checkpoints, finetune
    from kseg.training.distribute import strategy_scope
    from kseg.training.fused_norm import fuse_batch_norms
    from kseg.training.seeding import seed_everything

    seed_everything(cfg.seed, cfg.deterministic, cfg.jit)
    with dtype_policy(cfg.precision), strategy_scope(cfg.distribute):
        # Metrics in the scope too: their variables must be the strategy's (summed over
        # replicas and workers when read), or each worker logs only its share of the data.
        metrics = training_metrics(spec.num_classes, spec.void, spec.multilabel)
        model = checkpoints.create(cfg, spec)
        if fused_norm:
            fuse_batch_norms(model)
        loss = build_loss(cfg.loss, logit_channels(cfg.task, spec), spec.void, class_weights,
                          multilabel=spec.multilabel)
        model.compile(optimizer=_optimizer(cfg), loss=loss, metrics=metrics,
                      jit_compile="auto" if cfg.jit is None else cfg.jit)
        if finetune.wants_encoder_rate(cfg):  # --freeze-encoder-epochs, --encoder-lr-mult
            finetune.scale_encoder_steps(model, cfg)
        if state is not None and state.epoch > 0:
            checkpoints.load_checkpoint(model, run.last_path)
            model.optimizer.learning_rate = state.lr  # the schedule's rate, or an explicit --lr
        elif cfg.init_from:
            checkpoints.init_from(model, cfg.init_from, logit_channels(cfg.task, spec))
        build_training_state(model, cfg.patch)
    return model


def build_training_state(model, patch):
    """Create the optimizer's, the loss's and the metrics' variables before `fit`.

    Keras' TensorFlow trainer leaves them to the first trace of the train step unless a
    distribution strategy is set, and a tf.function whose first trace created variables
    is traced again: every fit traced its train step twice (23-39 s more start-up per
    network on a 2-core AVX2 CPU). This is Keras' own
    symbolic build, as it runs under a strategy: shapes only, no data read, no step run.
    The shapes are a training batch's, (1, patch, patch, C) images and (1, patch, patch)
    uint8 labels (some layers cannot be built for unknown sides), or the model's own
    fixed sides.
    """
    import keras

    shape = model.input_shape
    if not all(d is None or isinstance(d, int) for d in shape):
        return  # several inputs (a plugin's): Keras builds them on the first step
    shape = (1, *(patch if side is None else side for side in shape[1:-1]), shape[-1])
    images, labels = keras.KerasTensor(shape, "float32"), keras.KerasTensor(shape[:-1], "uint8")
    compat.symbolic_build(model, (images, labels))


@contextlib.contextmanager
def dtype_policy(name):
    """Build under Keras' global dtype policy `name`, then put the previous one back: the
    model keeps its layers' policies, and later models of the process are not affected."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _optimizer(cfg):
    import keras

    if cfg.weight_decay > 0:
        return keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.Adam(cfg.lr)


def _callbacks(cfg, run, state, history, train_data, steps, progress, extra=()):
    """Keras calls callbacks in list order: the schedule updates the rate and its counters
    before RunRecorder commits them, so a resumed run continues with exactly that state;
    TensorBoard (--tensorboard) and the user's `extra` see an epoch once it is committed.
    The guard comes first and the progress bar last (_run reads both there)."""
    from kseg.training.schedules import RunSchedule

    schedule = RunSchedule(cfg, steps, state)
    recorder = RunRecorder(run, state, history, cfg.monitor, cfg.monitor_mode, schedule, train_data)
    board = [RunTensorBoard(run, recorder)] if cfg.tensorboard else []
    return [GuardCallback(), *schedule.callbacks, recorder, *board, *extra, RichProgress(live=progress)]


def _run(model, cfg, run, callbacks, train_data, val_data, initial_epoch):
    """model.fit under StopSignals; every way out leaves state.json saying how it ended."""
    from kseg.training.inputs import RunBatches, close_data

    guard, bar = callbacks[0], callbacks[-1]
    recorder = next(c for c in callbacks if isinstance(c, RunRecorder))
    with StopSignals() as signals:
        guard.signals = signals
        try:
            # shuffle=False: PatchDataset shuffles itself from (seed, epoch). Keras' own batch
            # shuffle draws from the global RNG, whose position differs after a resume.
            # RunBatches: one iterator for the whole fit (see its docstring).
            model.fit(RunBatches(train_data, initial_epoch), steps_per_epoch=len(train_data),
                      validation_data=val_data, epochs=cfg.epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=0, shuffle=False)
        except Interrupted as exc:
            run.write_state(recorder.state.stop("interrupted", f"stopped by {exc}"))
            raise FitInterrupted(f"Stopped by {exc} after epoch {recorder.state.epoch}/{cfg.epochs}; "
                                 f"{run.path} is consistent. Run the same command again to continue.",
                                 exc.signum) from None
        except NonFiniteLoss as exc:
            run.write_state(recorder.state.stop("failed", str(exc)))
            good = recorder.state.epoch
            kept = f"the checkpoints of epoch {good} are kept" if good else "no checkpoint was written"
            raise KsegError(f"Training stopped: {exc}. In {run.path} {kept}. Lower --lr and continue "
                            f"with --resume --lr LR, or start again with --name.") from None
        except KeyboardInterrupt:
            # A second Ctrl-C (StopSignals lets it raise where it lands), or the first one where
            # StopSignals could not install its handler (not the main thread).
            how = "a second SIGINT" if signals.signum else "SIGINT"
            run.write_state(recorder.state.stop("interrupted", f"stopped at once by {how}"))
            raise FitInterrupted(f"Stopped at once by {how} after epoch {recorder.state.epoch}/{cfg.epochs}; "
                                 f"{run.path} is consistent. Run the same command again to continue.",
                                 signal.SIGINT) from None
        except BaseException as exc:
            # A full disk or memory running out is the machine's, not the run's: the run is
            # consistent, so it is "interrupted" and the same command continues it, as the
            # error line says ("free some space, then run the same command again").
            how = "interrupted" if _machine_trouble(exc) else "failed"
            with contextlib.suppress(OSError):  # the disk may still be full; state.json stays as it was
                run.write_state(recorder.state.stop(how, f"{type(exc).__name__}: {exc}".splitlines()[0]))
            raise
        finally:
            bar.close()
            close_data(train_data, val_data)  # the worker processes, if any, end with the fit
    run.write_state(recorder.state.stop("finished"))


def _machine_trouble(exc):
    """True for failures of the machine, not of the training: OSError (a full disk, a
    read-only folder), MemoryError, TensorFlow's ResourceExhaustedError."""
    return isinstance(exc, (OSError, MemoryError)) or type(exc).__name__ == "ResourceExhaustedError"
