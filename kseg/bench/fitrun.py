"""A real `kseg fit` against the bare steps it is made of, and its peak memory, for `kseg bench`."""

import statistics
import tempfile
import time
from pathlib import Path

import keras

from kseg.bench.timing import median_seconds, peak_rss_mb, timed_calls

STUDY_EPOCHS = 20  # the study trains 20 epochs (FitConfig.epochs)


class EpochPhases(keras.callbacks.Callback):
    """Splits each epoch into its train steps, its validation steps and the rest
    (creating and releasing iterators, callbacks, checkpoints): one {"train", "val",
    "fixed"} row of seconds per epoch in `rows`.

    "train" runs from the first train batch's begin to the last one's end, so it holds
    every step and the fetches between them; "val" likewise for the test batches.
    """

    def __init__(self):
        super().__init__()
        self.rows, self._t = [], {}

    def on_epoch_begin(self, epoch, logs=None):
        self._t = {"begin": time.perf_counter()}

    def on_train_batch_begin(self, batch, logs=None):
        self._t.setdefault("train_begin", time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        self._t["train_end"] = time.perf_counter()

    def on_test_batch_begin(self, batch, logs=None):
        self._t.setdefault("val_begin", time.perf_counter())

    def on_test_batch_end(self, batch, logs=None):
        self._t["val_end"] = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        t = self._t
        train = t["train_end"] - t["train_begin"]
        val = t["val_end"] - t["val_begin"] if "val_begin" in t else 0.0
        fixed = time.perf_counter() - t["begin"] - train - val
        self.rows.append({"train": train, "val": val, "fixed": fixed})


def whole_epoch_seconds(phases, steps, val_steps, whole_steps, whole_val_steps):
    """A whole epoch's seconds from a capped one's `phases` (an EpochPhases row): the
    capped epoch's fixed part once, plus its seconds per train and per val step times
    the whole epoch's steps. Capping shrinks the steps but not the fixed part, so the
    capped epoch's own ratio overstates a whole epoch's."""
    per_step = whole_steps * phases["train"] / steps + whole_val_steps * phases["val"] / val_steps
    return phases["fixed"] + per_step


def measure_fit(arch="unet", data=None, steps=20, runs=None, repeats=5):
    """`kseg fit ARCH --epochs 2` with each epoch capped at `steps` batches (None: whole epochs).

    The library's own fit runs (with `max_steps`), so data loading, the model, metrics
    and callbacks are exactly `kseg fit`'s, at its defaults (precision and XLA auto,
    `--workers auto`). Then the same model, compiled the same way, times its bare train
    and test steps on one batch already in memory (median of `repeats`). Figures:
      * peak_rss_mb: ru_maxrss right after the fit, so the fit's own peak;
      * epoch_seconds: epoch 2 of history.csv, training + validation (epoch 1 also
        traces the steps); validation runs max(1, steps // 4) batches, as fit caps it;
      * bare_seconds: train steps x bare train step + validation steps x bare test step;
      * epoch_over_bare: epoch_seconds / bare_seconds, what loading, callbacks and the
        loop add to a capped epoch (1.0: nothing);
      * train_seconds, val_seconds, fixed_seconds: epoch 2 split by EpochPhases, and
        step_over_bare: fit's seconds per train step over the bare step's;
      * study_epoch_seconds: a whole epoch of this data (every train and val batch),
        projected by whole_epoch_seconds; study_bare_seconds: its bare steps;
        study_over_bare: the two's ratio, the target's; study_hours: 20 epochs, in hours;
      * fused_norm_speedup: the bare train step with Keras' own batch-norm ops over the
        step as fit runs it (TensorFlow's fused kernel, kseg.training.fused_norm), the
        median ratio of steps timed in pairs.
    """
    from kseg.training import hardware
    from kseg.training.inputs import first_batches, open_data, training_datasets
    from kseg.training.loop import run_fit
    from kseg.training.recipes import resolve

    runs = runs or tempfile.mkdtemp(prefix="kseg-bench-fit-")
    cfg, explicit = resolve(arch, epochs=2, **({"data": str(data)} if data else {}))
    start = time.perf_counter()
    phases = EpochPhases()
    run = run_fit(cfg, runs=runs, explicit=explicit, progress=False, max_steps=steps, callbacks=[phases])
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    epoch_s = float(run.history()[-1]["seconds"])
    dataset, _ = open_data(cfg.data)
    chosen = hardware.choose(cfg)  # precision, XLA and workers as the fit chose them
    train, val = training_datasets(cfg, dataset, 0)  # for their lengths and a batch: built here
    train_steps, val_steps = map(len, first_batches(train, val, steps))  # the batches fit ran
    train_s, test_s, fused_speedup = _bare_steps(cfg, dataset.spec, chosen, train[0][:2], val[0][:2],
                                                 repeats)
    bare = train_steps * train_s + val_steps * test_s
    last = phases.rows[-1]
    study_epoch = whole_epoch_seconds(last, train_steps, val_steps, len(train), len(val))
    study_bare = len(train) * train_s + len(val) * test_s
    return {"arch": arch, "dataset": Path(data).name if data else "synthetic", "steps": train_steps,
            "val_steps": val_steps, "batch_size": cfg.batch_size, "workers": chosen.workers,
            "seconds": wall, "peak_rss_mb": peak, "epoch_seconds": epoch_s,
            "train_step_seconds": train_s, "test_step_seconds": test_s,
            "bare_train_patches_per_s": cfg.batch_size / train_s, "bare_seconds": bare,
            "epoch_over_bare": epoch_s / bare, "train_seconds": last["train"], "val_seconds": last["val"],
            "fixed_seconds": last["fixed"],
            "step_over_bare": last["train"] / train_steps / train_s,
            "study_train_steps": len(train), "study_val_steps": len(val),
            "study_epoch_seconds": study_epoch, "study_bare_seconds": study_bare,
            "study_over_bare": study_epoch / study_bare, "study_epochs": STUDY_EPOCHS,
            "study_hours": STUDY_EPOCHS * study_epoch / 3600,
            "fused_norm_speedup": fused_speedup}


def _bare_steps(cfg, spec, chosen, batch, val_batch, repeats):
    """(train step s, test step s, fused-norm speedup) of fit's model on one batch in memory,
    at the precision and XLA of `chosen` (a HardwareChoice)."""
    from kseg.training.loop import build_model

    model = build_model(cfg, spec, hardware=chosen)
    # Alone, as fit runs it; the pairs below alternate two models, which slows both.
    train_s = median_seconds(lambda: model.train_on_batch(*batch), repeats)
    test_s = median_seconds(lambda: model.test_on_batch(*val_batch), repeats)
    keras_norm = build_model(cfg, spec, fused_norm=False, hardware=chosen)
    times, keras_times = timed_calls(lambda: model.train_on_batch(*batch), repeats, warmup=2,
                                     paired=lambda: keras_norm.train_on_batch(*batch))
    return train_s, test_s, statistics.median(k / t for k, t in zip(keras_times, times, strict=True))
