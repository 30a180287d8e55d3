"""One benchmark measurement per process: `python -m kseg.bench.worker TASK_JSON`.

Each measurement runs in a fresh Python process, because the Keras backend, the dtype
policy and TensorFlow's thread pools are fixed at start-up, and because a process's
peak resident memory (ru_maxrss) is then that measurement's own. `kseg.bench.suite`
starts the processes; kseg.bench.timing holds the one timing loop and the ceiling.
"""

import json
import sys
from pathlib import Path

import numpy as np

from kseg.bench.timing import (
    CEILING_SHAPE,
    ceiling_step,
    conv_ceiling,
    median_seconds,
    paired_ratio,
    peak_rss_mb,
)

RESULT_PREFIX = "KSEG_BENCH_RESULT "
FRAME = (360, 480)  # a CamVid frame; padded to (384, 480) for stride-32 networks


def _settings(precision="float32", deterministic=False, threads=None):
    """Dtype policy, TF op determinism (as `kseg fit` sets it on CPU) and thread pools."""
    import keras

    keras.config.set_dtype_policy(precision)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads[0])
            tf.config.threading.set_inter_op_parallelism_threads(threads[1])
        if deterministic:
            tf.config.experimental.enable_op_determinism()


def network(arch, patch=128, batch_size=16, steps=5, jit=False, precision="float32",
            deterministic=False, frames=True, num_classes=11, void=11, threads=None,
            ceiling_shape=CEILING_SHAPE, fused_norm=True):
    """Training and prediction speed of registered network `arch` at the study's settings.

    Each timed step is paired with a step of the ceiling's convolution in this same
    process (`paired_ratio`): `train_of_local_ceiling` is the median ratio.

    Training: `train_on_batch` with Adam and the cross-entropy `kseg fit` uses, on
    (batch_size, patch, patch, 3) images and labels with void, batch norm fused as
    `kseg fit` trains it (kseg.training.fused_norm; `fused_norm=False`: Keras' ops). Prediction:
    `predict_on_batch` on the same images. Full frames: one CamVid-sized frame by
    `kseg.inference.frames.predict_frames` (padded to the stride) and by
    `predict_patch_grid` (the study's 4x4 grid of `patch` pixel cells). FLOPs per patch
    and per padded frame come from `kseg.bench.flops`; training counts 3x forward.
    """
    _settings(precision, deterministic, threads)
    import keras

    from kseg import registry
    from kseg.bench import flops
    from kseg.losses import build_loss
    from kseg.training.fused_norm import fuse_batch_norms

    stride = registry.get_entry(arch).stride
    model = registry.create_model(arch, num_classes=num_classes)
    if fused_norm:
        fuse_batch_norms(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss("ce", num_classes, void),
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, patch, patch, 3)).astype(np.float32)
    y = rng.integers(0, num_classes + 1, (batch_size, patch, patch)).astype(np.uint8)  # void included
    patch_flops = flops.forward_flops(model, (patch, patch, 3))
    out = {"arch": arch, "params": int(model.count_params()), "patch": patch, "batch_size": batch_size,
           "flops_per_patch": patch_flops}
    ceiling, ceiling_flops = ceiling_step(tuple(ceiling_shape))
    median_seconds(ceiling, 1, warmup=1)  # compile it before the timed pairs
    train_flops, predict_flops = 3 * patch_flops * batch_size, patch_flops * batch_size
    train_s, train_ratio = paired_ratio(lambda: model.train_on_batch(x, y), train_flops, ceiling,
                                        ceiling_flops, steps)
    predict_s, predict_ratio = paired_ratio(lambda: model.predict_on_batch(x), predict_flops, ceiling,
                                            ceiling_flops, steps)
    out.update(train_patches_per_s=batch_size / train_s, predict_patches_per_s=batch_size / predict_s,
               train_gflops=train_flops / train_s / 1e9, predict_gflops=predict_flops / predict_s / 1e9,
               train_of_local_ceiling=train_ratio, predict_of_local_ceiling=predict_ratio)
    if frames:
        try:
            out.update(_frames(model, stride, patch, max(2, steps // 2)))
        except Exception as exc:  # keep the training figures when full frames fail
            out["frames_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _frames(model, stride, patch, steps):
    """Frames/s of one 360x480 frame: padded whole frame vs the study's 4x4 patch grid,
    and (one timed frame each, after one warm-up) 256 px sliding windows with overlap
    0.33 and flip test-time augmentation of the whole frame (two passes)."""
    from kseg.bench import flops
    from kseg.inference.frames import frame_logits, predict_frames, predict_patch_grid
    from kseg.inference.mode import InferenceMode

    frame = np.random.default_rng(1).uniform(0, 255, (1, *FRAME, 3)).astype(np.float32)
    padded = tuple(-(-s // stride) * stride for s in FRAME)
    full_s = median_seconds(lambda: predict_frames(model, frame, stride), steps)
    grid_s = median_seconds(lambda: predict_patch_grid(model, frame, grid=(4, 4), patch=patch), steps)
    side = 256  # sliding windows of a CamVid frame: 2 x 3 tiles
    window, tta = InferenceMode(window=side), InferenceMode(flip=True)
    window_s = median_seconds(lambda: frame_logits(model, frame[0], stride, window), 1, warmup=1)
    tta_s = median_seconds(lambda: frame_logits(model, frame[0], stride, tta), 1, warmup=1)
    frame_flops = flops.forward_flops(model, (*padded, 3))
    return {"frame": list(FRAME), "padded_frame": list(padded), "flops_per_frame": frame_flops,
            "frame_fps": 1 / full_s, "grid_fps": 1 / grid_s, "frame_gflops": frame_flops / full_s / 1e9,
            "frame_speedup": grid_s / full_s, "window": side, "window_fps": 1 / window_s,
            "tta_flip_fps": 1 / tta_s}


def pipeline(root=None, patch=128, grid=(4, 4), batch_size=16, workers=None):
    """Patches/s of the training PatchDataset (CamVid train at `root`, else synthetic),
    per loader worker count (see kseg.bench.pipeline.measure_pipeline)."""
    from kseg.bench.pipeline import measure_pipeline
    from kseg.data.synth import default_dataset_dir

    result = measure_pipeline(root or default_dataset_dir(), patch=patch, grid=grid, batch_size=batch_size,
                              workers=workers)
    result["dataset"] = Path(root).name if root else "synthetic"
    return result


def fit_run(arch="unet", data=None, steps=20, runs=None, repeats=5):
    """A real 2-epoch `kseg fit ARCH` capped at `steps` batches an epoch: peak memory, epoch
    time against its bare steps (see kseg.bench.fitrun.measure_fit)."""
    from kseg.bench.fitrun import measure_fit

    return measure_fit(arch, data=data, steps=steps, runs=runs, repeats=repeats)


def confusion(num_frames=16):
    """Seconds for the confusion matrix of `num_frames` CamVid-size (360x480) frames."""
    from kseg.bench.confusion_speed import measure_confusion

    return measure_confusion(num_frames=num_frames)


TASKS = {"ceiling": conv_ceiling, "network": network, "pipeline": pipeline, "fit": fit_run,
         "confusion": confusion}


def run_task(task):
    """Run `{"task": name, **kwargs}` in this process; returns its result dict."""
    import importlib

    import keras

    kwargs = dict(task)
    name = kwargs.pop("task")
    for module in kwargs.pop("plugins", ()):
        importlib.import_module(module)  # registers extra models, e.g. a test's tiny one
    result = TASKS[name](**kwargs)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    result["backend"] = keras.backend.backend()
    return result


def main(argv=None):
    """Worker entry point: one JSON task in argv, one JSON result line on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    result = run_task(json.loads(argv[0]))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
