"""The one timing loop of the benchmarks, peak memory, and the machine's conv ceiling.

Every figure is a statistic of `steps` timed calls after `warmup` untimed ones (the
first call traces and compiles). The machine's ceiling is the speed of one large 3x3
convolution's train step, whose FLOPs are exact, so every network's speed can be read
as a fraction of what this machine's convolution kernels reach.
"""

import resource
import statistics
import sys
import time

import numpy as np

CEILING_SHAPE = (16, 32, 32, 128)  # (batch, H, W, channels) of the ceiling's convolution


def timed_calls(fn, steps, warmup=1, paired=None):
    """`(times, paired_times)`: seconds of `steps` calls of `fn` after `warmup` untimed calls.

    `paired`, when given, is called (and timed) right after each timed call of `fn`:
    on a machine shared with other jobs both halves of a pair see about the same load.
    """
    for _ in range(warmup):
        fn()
    if paired is not None:
        paired()  # compiled already; one more call settles its caches
    times, paired_times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        mid = time.perf_counter()
        times.append(mid - start)
        if paired is not None:
            paired()
            paired_times.append(time.perf_counter() - mid)
    return times, paired_times


def median_seconds(fn, steps, warmup=2):
    """Median wall time of `steps` calls of `fn` after `warmup` untimed calls."""
    return statistics.median(timed_calls(fn, steps, warmup)[0])


def paired_ratio(fn, flops, ceiling, ceiling_flops, steps, warmup=1):
    """`(median seconds of fn, median of fn's GFLOP/s over the ceiling's)`, each ratio
    from one pair of calls (see `timed_calls`), so it is steadier than either speed."""
    times, ceiling_times = timed_calls(fn, steps, warmup, paired=ceiling)
    ratios = [(flops / t) / (ceiling_flops / c) for t, c in zip(times, ceiling_times, strict=True)]
    return statistics.median(times), statistics.median(ratios)


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
