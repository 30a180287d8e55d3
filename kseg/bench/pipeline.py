"""Data pipeline throughput and memory, for `kseg bench`.

Memory is reported two ways:
  * peak_rss_mb: resource.getrusage ru_maxrss, the whole process's peak resident
    memory (interpreter, numpy, Keras imports and anything run before the measurement);
  * peak_traced_mb: tracemalloc's peak of Python/numpy allocations made while the frames
    are decoded and spilled and one batch is built (the pipeline's own memory). The timed
    epochs run untraced: tracing slowed them 1.37x (418 against 573 patches/s on CamVid).
"""

import multiprocessing
import resource
import statistics
import time
import tracemalloc

from kseg import compat
from kseg.bench.timing import peak_rss_mb
from kseg.data.readers import open_dataset
from kseg.training.config import FitConfig


def measure_pipeline(root, patch=128, grid=(4, 4), batch_size=16, augment=True, split="train",
                     cache_mb=FitConfig.frame_cache_mb, workers=None, processes=(1, 2)):
    """One epoch of the training PatchDataset over `split` per loader worker count, timed, in this process.

    Study settings: grid 4x4 of 128 px patches, batch 16, augmentation and shuffling on,
    `kseg fit`'s frame cache (frames beyond it are read back from the spill file, which
    is filled before the epochs are timed: decode_seconds and spill_seconds are the
    one-off costs of epoch 1). Thread epochs run through Keras' PyDataset adapter, the
    code `model.fit` iterates with, so 2 or more workers run Keras' thread pool as
    `kseg fit --workers N --worker-kind thread` does; 1 builds the batches one at a time
    in this thread. `workers`: the thread counts timed (default 1, 2 and what
    `--workers auto` picks for threads here). `processes`: the counts of worker
    processes timed (kseg.data.batch_pool; figures under "processes", see
    `measure_processes`), with auto's count where auto picks processes. Figures:
      * patches_per_second: at `kseg fit --workers auto` (what a fit gets here; its kind
        in worker_kind);
      * per_core_patches_per_second: patches per CPU-second of this process at 1 thread
        (time.process_time, all threads): what one core delivers, whatever the load;
      * scaling_1_to_2: patches/s at 2 threads over 1 (2.0 is perfect scaling).
    Memory: see the module's docstring.
    """
    from kseg.data.patches import Frames
    from kseg.training.hardware import pick_workers, worker_kind

    fit_kind, fit_workers = worker_kind()[0], pick_workers("auto")[0]
    auto = max(1, pick_workers("auto", kind="thread")[0])  # 0 and 1 both mean no pool
    counts = sorted({int(w) for w in workers} if workers else {1, 2, auto})
    if processes and fit_kind == "process" and fit_workers:
        processes = sorted({*processes, fit_workers})
    ds = open_dataset(root)
    rss_before = peak_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    frames = Frames(ds.pairs(split), ds.spec, cache_mb=cache_mb)
    decode_s = time.perf_counter() - t0
    spill_s = fill_spill(frames, batch_size)
    settings = dict(batch_size=batch_size, patch=patch, grid=grid, augment=augment, shuffle=True, seed=0)
    threads = _thread_epochs(frames, ds.spec, settings, counts)  # stops tracing after its first batch
    by_processes = measure_processes(frames, ds.spec, settings, processes) if processes else None
    if fit_kind == "process" and by_processes:
        fit_count = fit_workers
        fit_rate = by_processes["by_workers"][str(fit_count)]["patches_per_second"]
    else:
        fit_count = auto if auto in counts else max(counts)
        fit_rate = threads["by_workers"][str(fit_count)]
    return {"root": str(ds.root), "split": split, "frames": len(frames), "patch": patch,
            "grid": list(grid) if grid else None, "batch_size": batch_size, "augment": bool(augment),
            "cache_mb": cache_mb, "cached_frames": frames.num_cached,
            "decode_seconds": round(decode_s, 3), "spill_seconds": round(spill_s, 3),
            "spilled_frames": frames.num_spilled, "workers": fit_count, "worker_kind": fit_kind,
            "patches_per_second": fit_rate, "epoch_seconds": round(threads["patches"] / fit_rate, 3),
            **threads, "processes": by_processes,
            "decoded_mb": round(frames.nbytes / 2**20, 1),
            "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "memory_method": "peak_rss_mb: resource.getrusage(RUSAGE_SELF).ru_maxrss; "
                             "peak_traced_mb: tracemalloc peak while decoding and spilling the frames "
                             "and building one batch (the timed epochs are untraced)"}


def _thread_epochs(frames, spec, settings, counts):
    """Figures of one epoch per count of Keras' loader threads (see measure_pipeline)."""
    from kseg.data.patches import PatchDataset
    from kseg.training.inputs import loader_kwargs

    make = lambda count: PatchDataset(frames, spec, **settings, **loader_kwargs(count))  # noqa: E731
    make(1)[0]  # untimed: the first batch pays for lazy imports and first-call set-up
    traced_peak = _stop_tracing()  # the epochs run untraced
    seconds, cpu = {}, {}
    for count in counts:  # each from epoch 0, on the same decoded frames: the same work
        data = make(count)
        seconds[count], cpu[count] = epoch_seconds(data)
    rate = {count: data.num_patches / s for count, s in seconds.items()}
    return {"patches": data.num_patches, "batches": len(data),
            "by_workers": {str(c): round(r, 1) for c, r in rate.items()},
            "per_core_patches_per_second": round(data.num_patches / cpu[1], 1) if 1 in cpu else None,
            "cpu_seconds": {str(c): round(s, 3) for c, s in cpu.items()},
            "scaling_1_to_2": round(rate[2] / rate[1], 3) if {1, 2} <= set(rate) else None,
            "peak_traced_mb": round(traced_peak / 2**20, 1)}


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


def measure_processes(frames, spec, settings, counts=(1, 2)):
    """Patches/s and host CPU per patch of one epoch built by each count of worker
    processes (kseg.data.batch_pool, `kseg fit --worker-kind process`), in order, read
    in this thread as `model.fit` reads a dataset with a pool (Keras runs no loader).

    Each count gets a fresh pool; its first batch (starting the workers, sharing the
    frames) is untimed, the other batches of the epoch are timed. CPU: this process's
    own (time.process_time: receiving each batch and copying it out of shared memory)
    and the workers' (time.process_time each reports with its batches, over the
    patches it built: read-ahead builds are counted with their patches); the workers'
    start-up is left out (resource's RUSAGE_CHILDREN, which includes it, is given too).
    Then `project`.
    """
    from kseg.data.batch_pool import BatchPool
    from kseg.data.patches import PatchDataset

    runs = {}
    for count in sorted({int(c) for c in counts}):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        data = PatchDataset(frames, spec, **settings, pool=BatchPool(count), workers=0)
        try:
            runs[count] = _process_epoch(data)
        finally:
            data.close()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        runs[count]["children_cpu_seconds_rusage"] = round(
            after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 3)
    rate = {count: run["patches_per_second"] for count, run in runs.items()}
    return {"by_workers": {str(count): run for count, run in runs.items()},
            "scaling_1_to_2": round(rate[2] / rate[1], 3) if {1, 2} <= set(rate) else None,
            **project(runs[max(runs)], settings["batch_size"])}


def _process_epoch(data):
    """Figures of one epoch of PatchDataset `data` (with a pool) after its first batch."""
    data[0]  # starts the workers, shares the frames: untimed
    pool, batches = data.pool, range(1, len(data))
    before = pool.info()
    start, cpu = time.perf_counter(), time.process_time()
    patches = sum(len(data[index][0]) for index in batches)
    wall, parent = time.perf_counter() - start, time.process_time() - cpu
    after = pool.info()
    worker_cpu = sum(a["cpu_seconds"] - b["cpu_seconds"] for a, b in zip(after, before, strict=True))
    built = sum(a["patches"] - b["patches"] for a, b in zip(after, before, strict=True))
    per_patch = 1000 * worker_cpu / built if built else None  # None: all built before the clock started
    return {"patches": patches, "seconds": round(wall, 3), "patches_per_second": round(patches / wall, 1),
            "parent_cpu_ms_per_batch": round(1000 * parent / len(batches), 3),
            "worker_cpu_ms_per_patch": per_patch and round(per_patch, 3),
            "host_cpu_ms_per_patch": per_patch and round(1000 * parent / patches + per_patch, 3),
            "frameworks_in_workers": sorted({f for w in after for f in w["frameworks"]})}


CORES = 16  # the host projected: the study's GPU machine class


def project(run, batch_size, cores=CORES):
    """Patches/s a `cores`-core host would feed with `cores - 1` workers, from one run."""
    worker_ms, parent_ms = run["worker_cpu_ms_per_patch"], run["parent_cpu_ms_per_batch"]
    per_worker = 1000 / worker_ms if worker_ms else None  # patches per worker CPU-second
    parent_cap = 1000 * batch_size / parent_ms if parent_ms else None  # what the parent can receive
    fed = [rate for rate in (per_worker and per_worker * (cores - 1), parent_cap) if rate]
    return {"projected_cores": cores,
            "per_worker_patches_per_cpu_second": per_worker and round(per_worker, 1),
            "parent_patches_per_cpu_second": parent_cap and round(parent_cap, 1),
            "projected_patches_per_second": round(min(fed), 1) if per_worker else None,
            "projection_assumption": f"{cores - 1} workers, each on a core of its own at the patches per "
                                     f"CPU-second measured here (no loss to shared memory bandwidth or "
                                     f"clock speed), capped by the training process's own CPU per batch "
                                     f"(receiving and copying out; measured with no train step beside it) "
                                     f"on the {cores}th core"}


def independent_scaling(root, batches=120, frames=48, rounds=2):
    """The machine's own ceiling for the pool's 1 -> 2 scaling: 1, then 2 processes at
    once, each building `batches` batches (study settings) from the first `frames`
    frames of `root`'s train split, decoded for itself: no pool, no shared memory,
    nothing copied out. Alternated `rounds` times; {"runs": [[count, patches/s], ...],
    "scaling_1_to_2": the ratio of the medians}."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as the pool's workers
    runs = []
    for count in (1, 2) * rounds:
        ready, results = context.Barrier(count + 1), context.Queue()
        procs = [context.Process(target=_build_alone, args=(root, frames, batches, ready, results))
                 for _ in range(count)]
        for proc in procs:
            proc.start()
        ready.wait()  # every process has decoded its frames: all start building together
        built = [results.get() for _ in procs]  # (seconds, patches) of each process
        for proc in procs:
            proc.join()
        runs.append([count, round(sum(n for _, n in built) / max(s for s, _ in built), 1)])
    rate = {n: statistics.median(r for c, r in runs if c == n) for n in (1, 2)}
    return {"runs": runs, "scaling_1_to_2": round(rate[2] / rate[1], 3)}


def _build_alone(root, frames, batches, ready, results):
    from kseg.data.frame_store import Frames
    from kseg.data.patch_builder import PatchBuilder

    ds = open_dataset(root)
    store = Frames(ds.pairs("train")[:frames], ds.spec)
    builder = PatchBuilder(len(store.pairs), ds.spec, 16, 128, (4, 4), augment=True, shuffle=True)
    ready.wait()
    start, patches = time.perf_counter(), 0
    for index in range(batches):
        patches += len(builder.batch(store, index // len(builder), index % len(builder), threads=1)[1])
    results.put((time.perf_counter() - start, patches))
