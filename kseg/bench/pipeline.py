"""Data pipeline throughput and memory, for `kseg bench`.

Memory is reported two ways:
  * peak_rss_mb: resource.getrusage ru_maxrss, the whole process's peak resident
    memory (interpreter, numpy, Keras imports and anything run before the measurement);
  * peak_traced_mb: tracemalloc's peak of Python/numpy allocations made while the frames
    are decoded and spilled and one batch is built (the pipeline's own memory). The timed
    epochs run untraced: tracing slowed them 1.37x (418 against 573 patches/s on CamVid).
"""

import time
import tracemalloc

from kseg import compat
from kseg.bench.timing import peak_rss_mb
from kseg.data.readers import open_dataset
from kseg.training.config import FitConfig


def measure_pipeline(root, patch=128, grid=(4, 4), batch_size=16, augment=True, split="train",
                     cache_mb=FitConfig.frame_cache_mb, workers=None):
    """One epoch of the training PatchDataset over `split` per loader worker count, timed, in this process.

    Study settings: grid 4x4 of 128 px patches, batch 16, augmentation and shuffling on,
    `kseg fit`'s frame cache (frames beyond it are read back from the spill file, which
    is filled before the epochs are timed: decode_seconds and spill_seconds are the
    one-off costs of epoch 1). Each epoch runs through Keras' PyDataset adapter, the
    code `model.fit` iterates with, so 2 or more workers run Keras' thread pool as
    `kseg fit --workers N` does; 1 builds the batches one at a time in this thread.
    `workers`: the counts timed (default 1, 2 and what `kseg fit --workers auto` picks
    here). Figures:
      * patches_per_second: at `kseg fit`'s auto workers (what a fit gets here);
      * per_core_patches_per_second: patches per CPU-second of this process at 1 worker
        (time.process_time, all threads): what one core delivers, whatever the load;
      * scaling_1_to_2: patches/s at 2 workers over 1 (2.0 is perfect scaling).
    Memory: see the module's docstring.
    """
    from kseg.data.patches import Frames, PatchDataset  # imports keras
    from kseg.training.inputs import loader_kwargs, pick_workers

    auto = max(1, pick_workers("auto")[0])  # 0 and 1 both mean no pool
    counts = sorted({int(w) for w in workers} if workers else {1, 2, auto})
    ds = open_dataset(root)
    pairs = ds.pairs(split)
    rss_before = peak_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    frames = Frames(pairs, ds.spec, cache_mb=cache_mb)
    decode_s = time.perf_counter() - t0
    spill_s = fill_spill(frames, batch_size)
    make = lambda count: PatchDataset(frames, ds.spec, batch_size=batch_size, patch=patch, grid=grid,  # noqa: E731
                                      augment=augment, shuffle=True, seed=0, **loader_kwargs(count))
    make(1)[0]  # untimed: the first batch pays for lazy imports and first-call set-up
    traced_peak = _stop_tracing()  # the epochs run untraced
    seconds, cpu = {}, {}
    for count in counts:  # each from epoch 0, on the same decoded frames: the same work
        data = make(count)
        seconds[count], cpu[count] = epoch_seconds(data)
    rate = {count: data.num_patches / s for count, s in seconds.items()}
    fit_count = auto if auto in rate else max(rate)
    return {
        "root": str(ds.root), "split": split, "frames": len(pairs),
        "patches": data.num_patches, "batches": len(data), "patch": patch,
        "grid": list(grid) if grid else None, "batch_size": batch_size, "augment": bool(augment),
        "cache_mb": cache_mb, "cached_frames": frames.num_cached,
        "decode_seconds": round(decode_s, 3), "spill_seconds": round(spill_s, 3),
        "spilled_frames": frames.num_spilled, "epoch_seconds": round(seconds[fit_count], 3),
        "workers": fit_count, "patches_per_second": round(rate[fit_count], 1),
        "by_workers": {str(c): round(r, 1) for c, r in rate.items()},
        "per_core_patches_per_second": round(data.num_patches / cpu[1], 1) if 1 in cpu else None,
        "cpu_seconds": {str(c): round(s, 3) for c, s in cpu.items()},
        "scaling_1_to_2": round(rate[2] / rate[1], 3) if {1, 2} <= set(rate) else None,
        "decoded_mb": round(frames.nbytes / 2**20, 1),
        "peak_traced_mb": round(traced_peak / 2**20, 1),
        "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
        "memory_method": "peak_rss_mb: resource.getrusage(RUSAGE_SELF).ru_maxrss; "
                         "peak_traced_mb: tracemalloc peak while decoding and spilling the frames "
                         "and building one batch (the timed epochs are untraced)",
    }


def _stop_tracing():
    """tracemalloc's peak in bytes, then tracing off: it hooks every numpy allocation, and
    traced epochs ran 1.37x slower."""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def fill_spill(frames, batch_size):
    """Seconds to decode the frames beyond the cache into the spill file, `batch_size` at a
    time (bounded memory). `fit` does this at their first use, in epoch 1 only; done
    before the timed epochs, each of them is a steady-state one, as 19 of the study's 20."""
    start = time.perf_counter()
    for first in range(0, len(frames), batch_size):
        frames.take(range(first, min(first + batch_size, len(frames))))
    return time.perf_counter() - start


def epoch_seconds(data):
    """`(wall, CPU)` seconds of one epoch of PyDataset `data` as `model.fit` reads it.

    With workers >= 2 the batches are built in Keras' pool, in order, as `fit` builds them."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in compat.epoch_batches(data):
        pass
    return time.perf_counter() - start, time.process_time() - cpu
