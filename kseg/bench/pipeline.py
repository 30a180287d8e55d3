"""Data pipeline throughput and memory, for `kseg bench`."""

import time
import tracemalloc

from kseg.bench.timing import peak_rss_mb, timed_calls
from kseg.data.readers import open_dataset
from kseg.training.config import FitConfig


def measure_pipeline(root, patch=128, grid=(4, 4), batch_size=16, augment=True, split="train",
                     cache_mb=FitConfig.frame_cache_mb):
    """One epoch of the training PatchDataset over `split`, timed, in this process.

    Study settings: grid 4x4 of 128 px patches, batch 16, augmentation and shuffling on,
    one worker, `kseg fit`'s frame cache (frames beyond it are decoded per patch).
    Memory is reported two ways:
      * peak_rss_mb: resource.getrusage ru_maxrss, the whole process's peak resident
        memory (interpreter, numpy, Keras imports and anything run before this call);
      * peak_traced_mb: tracemalloc's peak of Python/numpy allocations made during
        decoding and the epoch (the pipeline's own memory; numpy reports its buffers
        to tracemalloc). Tracing is on during the timed epoch; its overhead is small
        here because the work is a few large numpy operations per patch.
    """
    from kseg.data.patches import PatchDataset  # imports keras

    ds = open_dataset(root)
    pairs = ds.pairs(split)
    rss_before = peak_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    data = PatchDataset(pairs, ds.spec, batch_size=batch_size, patch=patch, grid=grid,
                        augment=augment, shuffle=True, seed=0, cache_mb=cache_mb)
    decode_s = time.perf_counter() - t0
    (epoch_s,), _ = timed_calls(lambda: [data[i] for i in range(len(data))], steps=1, warmup=0)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "root": str(ds.root), "split": split, "frames": len(pairs),
        "patches": data.num_patches, "batches": len(data), "patch": patch,
        "grid": list(grid) if grid else None, "batch_size": batch_size, "augment": bool(augment),
        "cache_mb": cache_mb, "cached_frames": data.frames.num_cached,
        "decode_seconds": round(decode_s, 3), "epoch_seconds": round(epoch_s, 3),
        "patches_per_second": round(data.num_patches / epoch_s, 1),
        "decoded_mb": round(data.frames.nbytes / 2**20, 1),
        "peak_traced_mb": round(traced_peak / 2**20, 1),
        "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
        "memory_method": "peak_rss_mb: resource.getrusage(RUSAGE_SELF).ru_maxrss; "
                         "peak_traced_mb: tracemalloc peak during decode + epoch",
    }
