"""Training a run: `run_fit` plans a fit (kseg.training.plan) and `train` carries the plan out.

The network ends in logits and the loss is computed from them (kseg.losses): for
cross-entropy that is the study's softmax + categorical cross-entropy, computed through
log-softmax, which does not overflow or take log(0). Adam (AdamW with weight decay) at
`lr`, the LR schedule of kseg.training.schedules, best checkpoint on `monitor`. See
kseg.runs for the files and kseg.training.callbacks for the per-epoch commit.
"""

import contextlib
import copy
import dataclasses
import signal
from pathlib import Path

from kseg import compat, output
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
)
from kseg.training.plan import plan_fit
from kseg.training.progress import RichProgress
from kseg.training.task import logit_channels


class FitInterrupted(KsegError):
    """Training stopped on SIGINT/SIGTERM; the run directory is consistent and resumable."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell convention for "killed by signal"


def run_fit(cfg, runs="runs", name=None, resume=False, explicit=(), progress=None, max_steps=None,
            callbacks=(), dry_run=False):
    """Train `cfg.arch` into `runs/<name>` (default name: the arch); returns the RunDir, or
    with `dry_run` the FitPlan, having written nothing.

    An existing run directory is continued when it was interrupted (or `resume=True`);
    a finished one is extended only when `cfg.epochs` is larger. `explicit` names the
    FitConfig fields set on purpose: on a continued run they must match the saved
    config, except RESUMABLE_CHANGES. `progress`: live bar (None: by TTY).
    `max_steps` caps the batches of each epoch (benchmarks and quick checks).
    `callbacks`: more Keras callbacks, called after kseg's own have committed an epoch.
    """
    callbacks = arguments.check_callbacks(callbacks)
    runs = arguments.check_fit_arguments(runs, name, max_steps, resume, progress)
    run = RunDir(Path(runs) / (name or cfg.arch))
    if dry_run:
        return plan_fit(cfg, run, explicit, resume, max_steps)
    with session.lock(run):
        if run.exists():
            run.recover()  # the checkpoints of a commit killed before its renames
        train(plan_fit(cfg, run, explicit, resume, max_steps), progress, callbacks)
    return run


def train(plan, progress=None, callbacks=()):
    """Train as `plan` (kseg.training.plan.FitPlan) says; the caller holds the run's lock.

    Writes config.json and env.json of a fresh run (a continued one's config.json only
    when its epochs grow), then state.json, then an epoch after another.
    """
    from kseg.training import distribute, finetune
    from kseg.training.inputs import class_weights, first_batches, training_datasets

    cfg, run = plan.config, plan.run
    _report_start(plan)
    train_data, val_data = training_datasets(cfg, plan.dataset, plan.hardware.workers,
                                             kind=plan.hardware.worker_kind)
    if plan.topology is not None:
        train_data, val_data = (distribute.worker_batches(d, plan.topology) for d in (train_data, val_data))
    train_data, val_data = first_batches(train_data, val_data, plan.max_steps)
    # A copy: the callbacks commit epochs into it, the plan stays as planned.
    state = copy.deepcopy(plan.saved.state) if plan.saved else session.first_state(cfg)
    # The model and the callbacks first: a start they refuse (a --model-arg, an
    # --init-from, a schedule) has written nothing yet.
    model = build_model(cfg, plan.dataset.spec, run, state, class_weights(cfg, plan.dataset),
                        hardware=plan.hardware)
    history = plan.saved.history if plan.saved else ()
    made = fit_callbacks(cfg, run, state, history, train_data, progress,
                         (*finetune.callbacks(model, cfg), *callbacks))
    if plan.fresh:
        session.start_fresh(run, plan.config_json(), plan.env_json())
    elif plan.saved.config.get("epochs") != cfg.epochs:  # config.json keeps the epochs asked for
        run.write_config(plan.config_json())
    state.status, state.epochs, state.message = "running", cfg.epochs, None
    state.sessions += 1
    run.write_state(state)
    _run(model, cfg, run, made, train_data, val_data, state.epoch)


def _report_start(plan):
    """Print what the run does (the lines a test or a log reads), and write an inferred
    palette to the dataset's kseg.json as `kseg data check` does."""
    from kseg.data.trainable import write_inferred_spec
    from kseg.training import distribute

    plain = dict(highlight=False, markup=False, soft_wrap=True)
    if plan.saved is not None:
        output.console.print(plan.saved.line(plan.run, plan.config.epochs), **plain)
    for line in plan.notes:
        output.err_console.print(f"Warning: {line}", **plain)
    output.console.print(plan.data_summary, **plain)
    written = write_inferred_spec(plan.dataset)
    if written:
        output.console.print(f"wrote the inferred palette to {written}", **plain)
    output.console.print(plan.hardware.line(), **plain)
    if plan.topology is not None:
        output.console.print(distribute.describe(plan.topology), **plain)


def build_model(cfg, spec, run=None, state=None, class_weights=None, fused_norm=True, hardware=None):
    """The compiled model of a run: built, then resumed from last.keras or --init-from.

    `class_weights`: (K,) loss weights per class, or None. `fused_norm`: train batch
    norm with TensorFlow's fused kernel (kseg.training.fused_norm; False: Keras' ops).
    `hardware`: the HardwareChoice (kseg.training.hardware.choose) whose precision and
    XLA replace cfg's own; None: cfg's, which must then name a precision, not "auto".
    """
    from kseg.losses import build_loss
    from kseg.metrics import training_metrics
    from kseg.training import checkpoints, finetune
    from kseg.training.distribute import strategy_scope
    from kseg.training.fused_norm import fuse_batch_norms
    from kseg.training.seeding import seed_everything

    precision, jit = (cfg.precision, cfg.jit) if hardware is None else (hardware.precision, hardware.jit)
    seed_everything(cfg.seed, cfg.deterministic, jit)
    with dtype_policy(precision), strategy_scope(cfg.distribute):
        # Metrics in the scope too: their variables must be the strategy's (summed over
        # replicas and workers when read), or each worker logs only its share of the data.
        metrics = training_metrics(spec.num_classes, spec.void, spec.multilabel)
        model = checkpoints.create(cfg, spec)
        if fused_norm:
            fuse_batch_norms(model)
        loss = build_loss(cfg.loss, logit_channels(cfg.task, spec), spec.void, class_weights,
                          multilabel=spec.multilabel)
        model.compile(optimizer=_optimizer(cfg), loss=loss, metrics=metrics,
                      jit_compile="auto" if jit is None else jit)
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


@dataclasses.dataclass(frozen=True)
class FitCallbacks:
    """kseg fit's Keras callbacks by name. Keras calls them in `in_order()`'s order: the
    guard first; the schedule updates the rate and its counters before the recorder
    commits them, so a resumed run continues with exactly that state; TensorBoard
    (--tensorboard) and the user's `extra` see an epoch once it is committed; the
    progress bar last."""

    guard: GuardCallback
    schedule: tuple
    recorder: RunRecorder
    board: tuple  # (RunTensorBoard,) with --tensorboard, else ()
    extra: tuple
    bar: RichProgress

    def in_order(self):
        return [self.guard, *self.schedule, self.recorder, *self.board, *self.extra, self.bar]


def fit_callbacks(cfg, run, state, history, train_data, progress, extra=()):
    """The `FitCallbacks` of a run continuing from `state` (with its `history` rows)."""
    from kseg.training.schedules import RunSchedule

    schedule = RunSchedule(cfg, len(train_data), state)
    recorder = RunRecorder(run, state, history, cfg.monitor, cfg.monitor_mode, schedule, train_data)
    board = (RunTensorBoard(run, recorder),) if cfg.tensorboard else ()
    return FitCallbacks(GuardCallback(), tuple(schedule.callbacks), recorder, board, tuple(extra),
                        RichProgress(live=progress))


def _run(model, cfg, run, callbacks, train_data, val_data, initial_epoch):
    """model.fit under StopSignals; every way out leaves state.json saying how it ended."""
    from kseg.training.inputs import RunBatches, close_data

    recorder = callbacks.recorder
    with StopSignals() as signals:
        callbacks.guard.signals = signals
        try:
            # shuffle=False: PatchDataset shuffles itself from (seed, epoch). Keras' own batch
            # shuffle draws from the global RNG, whose position differs after a resume.
            # RunBatches: one iterator for the whole fit (see its docstring).
            model.fit(RunBatches(train_data, initial_epoch), steps_per_epoch=len(train_data),
                      validation_data=val_data, epochs=cfg.epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks.in_order(), verbose=0, shuffle=False)
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
            callbacks.bar.close()
            close_data(train_data, val_data)  # the worker processes, if any, end with the fit
    run.write_state(recorder.state.stop("finished"))


def _machine_trouble(exc):
    """True for failures of the machine, not of the training: OSError (a full disk, a
    read-only folder), MemoryError, TensorFlow's ResourceExhaustedError."""
    return isinstance(exc, (OSError, MemoryError)) or type(exc).__name__ == "ResourceExhaustedError"
