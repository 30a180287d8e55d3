"""Throughput and memory measurements, one process per measurement.

Each measurement runs in a fresh Python process (`python -m kseg.bench TASK_JSON`),
because the Keras backend, the dtype policy and TensorFlow's thread pools are fixed at
start-up, and because a process's peak resident memory (ru_maxrss) is then that
measurement's own. `kseg.benchsuite` starts the processes and builds the tables.

Timing: every figure is the median of `steps` calls after `warmup` calls (the first
call traces and compiles). The machine's ceiling is the speed of one large 3x3
convolution's train step, whose FLOPs are exact, so every network's speed can be read
as a fraction of what this machine's convolution kernels reach.
"""

import json
import resource
import statistics
import sys
import time

import numpy as np

RESULT_PREFIX = "KSEG_BENCH_RESULT "
FRAME = (360, 480)  # a CamVid frame; padded to (384, 480) for stride-32 networks
CEILING_SHAPE = (16, 32, 32, 128)  # (batch, H, W, channels) of the ceiling's convolution


def median_seconds(fn, steps, warmup=2):
    """Median wall time of `steps` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb():
    """This process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def ceiling_step(shape=CEILING_SHAPE, jit=False):
    """`(step, flops)`: one train step of a 3x3 same-padded Conv2D(C -> C) on (B, H, W, C).

    Forward: 2*B*H*W*C*C*9 FLOPs; backward: as much again for the input gradient and
    for the kernel gradient, so 3x forward per step. A 1x1 depthwise layer in front
    (2*B*H*W*C FLOPs, 0.1%) makes the input gradient necessary, as for any layer
    inside a network. The dtype is float32 whatever the global policy.
    """
    import keras

    b, h, w, c = shape
    inputs = keras.Input((h, w, c))
    x = keras.layers.DepthwiseConv2D(1, name="front", dtype="float32")(inputs)
    x = keras.layers.Conv2D(c, 3, padding="same", name="conv", dtype="float32")(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse", jit_compile=jit)
    rng = np.random.default_rng(0)
    xb = rng.standard_normal(shape, dtype=np.float32)
    yb = rng.standard_normal(shape, dtype=np.float32)
    return (lambda: model.train_on_batch(xb, yb)), 3 * 2 * b * h * w * c * c * 9


def conv_ceiling(shape=CEILING_SHAPE, steps=5, jit=False):
    """GFLOP/s of the ceiling's convolution train step (see `ceiling_step`)."""
    step, flops = ceiling_step(shape, jit)
    seconds = median_seconds(step, steps)
    return {"shape": list(shape), "jit": jit, "flops_per_step": flops, "seconds_per_step": seconds,
            "gflops": flops / seconds / 1e9}


def paired_ratio(fn, flops, ceiling, ceiling_flops, steps, warmup=1):
    """`(median seconds of fn, median of fn's GFLOP/s over the ceiling's)`.

    Each timed call of `fn` is followed by one ceiling step, and each ratio uses the
    pair's own times: on a machine shared with other jobs, both halves of a pair see
    about the same load, so the ratio is steadier than either speed.
    """
    for _ in range(warmup):
        fn()
    ceiling()  # compiled already; one more call settles its caches
    times, ratios = [], []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        mid = time.perf_counter()
        ceiling()
        end = time.perf_counter()
        times.append(mid - start)
        ratios.append((flops / (mid - start)) / (ceiling_flops / (end - mid)))
    return statistics.median(times), statistics.median(ratios)


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
            ceiling_shape=CEILING_SHAPE):
    """Training and prediction speed of registered network `arch` at the study's settings.

    Each timed step is paired with a step of the ceiling's convolution in this same
    process (`paired_ratio`): `train_of_local_ceiling` is the median ratio.

    Training: `train_on_batch` with Adam and the cross-entropy `kseg fit` uses, on
    (batch_size, patch, patch, 3) images and labels with void. Prediction:
    `predict_on_batch` on the same images. Full frames: one CamVid-sized frame by
    `kseg.data.frames.predict_frames` (padded to the stride) and by
    `predict_patch_grid` (the study's 4x4 grid of `patch` pixel cells). FLOPs per patch
    and per padded frame come from `kseg.flops`; training counts 3x forward.
    """
    _settings(precision, deterministic, threads)
    import keras

    from kseg import flops, registry
    from kseg.metrics import segmentation_loss

    stride = registry.get_entry(arch).stride
    model = registry.create_model(arch, num_classes=num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=segmentation_loss(void), jit_compile=jit)
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
    """Frames/s of one 360x480 frame: padded whole frame vs the study's 4x4 patch grid."""
    from kseg import flops
    from kseg.data.frames import predict_frames, predict_patch_grid

    frame = np.random.default_rng(1).uniform(0, 255, (1, *FRAME, 3)).astype(np.float32)
    padded = tuple(-(-s // stride) * stride for s in FRAME)
    full_s = median_seconds(lambda: predict_frames(model, frame, stride), steps)
    grid_s = median_seconds(lambda: predict_patch_grid(model, frame, grid=(4, 4), patch=patch), steps)
    frame_flops = flops.forward_flops(model, (*padded, 3))
    return {"frame": list(FRAME), "padded_frame": list(padded), "flops_per_frame": frame_flops,
            "frame_fps": 1 / full_s, "grid_fps": 1 / grid_s, "frame_gflops": frame_flops / full_s / 1e9,
            "frame_speedup": grid_s / full_s}


def pipeline(root=None, patch=128, grid=(4, 4), batch_size=16):
    """Patches/s of the training PatchDataset (CamVid train at `root`, else synthetic)."""
    from kseg.data.bench import measure_pipeline
    from kseg.data.synth import default_dataset_dir

    result = measure_pipeline(root or default_dataset_dir(), patch=patch, grid=grid, batch_size=batch_size)
    result["dataset"] = "camvid" if root else "synthetic"
    return result


def fit_memory(arch="unet", data=None, steps=20, runs=None):
    """Peak memory of the real `kseg fit ARCH --epochs 1`, capped at `steps` batches.

    Runs the CLI in this process, with `keras.Model.fit` given `steps_per_epoch` and
    `validation_steps`, so data loading, the model, metrics and callbacks are exactly
    those of `kseg fit`; only the epoch is shorter.
    """
    import tempfile

    import keras

    from kseg.cli import main

    original = keras.Model.fit

    def capped_fit(self, *args, **kwargs):
        kwargs.update(steps_per_epoch=steps, validation_steps=max(1, steps // 4))
        return original(self, *args, **kwargs)

    keras.Model.fit = capped_fit
    runs = runs or tempfile.mkdtemp(prefix="kseg-bench-fit-")
    argv = ["fit", arch, "--epochs", "1", "--runs", runs, "--plain"] + (["--data", str(data)] if data else [])
    start = time.perf_counter()
    try:
        main(argv, prog_name="kseg", standalone_mode=False)
    finally:
        keras.Model.fit = original
    return {"arch": arch, "dataset": "camvid" if data else "synthetic", "steps": steps,
            "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def confusion(num_frames=16):
    """Seconds for the confusion matrix of `num_frames` CamVid-size (360x480) frames."""
    from kseg.metrics.bench import measure_confusion

    return measure_confusion(num_frames=num_frames)


TASKS = {"ceiling": conv_ceiling, "network": network, "pipeline": pipeline, "fit_memory": fit_memory,
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
