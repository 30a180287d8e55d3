"""A real `kseg fit` against the bare steps it is made of, and its peak memory, for `kseg bench`."""

import statistics
import tempfile
import time
from pathlib import Path

from kseg.bench.timing import median_seconds, peak_rss_mb, timed_calls

STUDY_EPOCHS = 20  # the study trains 20 epochs (FitConfig.epochs)


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
        loop add (1.0: nothing);
      * study_epoch_seconds: a whole epoch of this data (every train and val batch),
        projected as epoch_over_bare x its bare time; study_hours: 20 of them, in hours;
      * fused_norm_speedup: the bare train step with Keras' own batch-norm ops over the
        step as fit runs it (TensorFlow's fused kernel, kseg.training.fused_norm), the
        median ratio of steps timed in pairs.
    """
    from kseg.training import hardware
    from kseg.training.data import first_batches, open_data, pick_workers, training_datasets
    from kseg.training.loop import build_model, fit
    from kseg.training.recipes import resolve

    runs = runs or tempfile.mkdtemp(prefix="kseg-bench-fit-")
    cfg, explicit = resolve(arch, epochs=2, **({"data": str(data)} if data else {}))
    start = time.perf_counter()
    run = fit(cfg, runs=runs, explicit=explicit, progress=False, max_steps=steps)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    epoch_s = float(run.history()[-1]["seconds"])
    dataset, _ = open_data(cfg.data)
    workers = pick_workers(cfg.workers)[0]
    train, val, _ = training_datasets(cfg, dataset, workers)
    train_steps, val_steps = map(len, first_batches(train, val, steps))  # the batches fit ran
    chosen = hardware.choose(cfg)[0]  # precision and XLA as fit decided them
    model = build_model(chosen, dataset.spec)
    (x, y), (xv, yv) = train[0][:2], val[0][:2]
    # Alone, as fit runs it; the pairs below alternate two models, which slows both.
    train_s = median_seconds(lambda: model.train_on_batch(x, y), repeats)
    test_s = median_seconds(lambda: model.test_on_batch(xv, yv), repeats)
    keras_norm = build_model(chosen, dataset.spec, fused_norm=False)
    times, keras_times = timed_calls(lambda: model.train_on_batch(x, y), repeats, warmup=2,
                                     paired=lambda: keras_norm.train_on_batch(x, y))
    bare = train_steps * train_s + val_steps * test_s
    study_epoch = epoch_s / bare * (len(train) * train_s + len(val) * test_s)
    return {"arch": arch, "dataset": Path(data).name if data else "synthetic", "steps": train_steps,
            "val_steps": val_steps, "batch_size": cfg.batch_size, "workers": workers,
            "seconds": wall, "peak_rss_mb": peak, "epoch_seconds": epoch_s,
            "train_step_seconds": train_s, "test_step_seconds": test_s,
            "bare_train_patches_per_s": cfg.batch_size / train_s, "bare_seconds": bare,
            "epoch_over_bare": epoch_s / bare, "study_train_steps": len(train), "study_val_steps": len(val),
            "study_epoch_seconds": study_epoch, "study_epochs": STUDY_EPOCHS,
            "study_hours": STUDY_EPOCHS * study_epoch / 3600,
            "fused_norm_speedup": statistics.median(k / t for k, t in zip(keras_times, times, strict=True))}
