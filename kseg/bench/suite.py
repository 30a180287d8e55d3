"""`kseg bench`: which measurements to run, in which processes; kseg.bench.targets checks them.

Every measurement (kseg.bench.worker) runs in its own Python process with KERAS_BACKEND set,
so the backends, dtype policies and XLA settings are compared on the same benchmark.
The machine's ceiling is the fastest measured convolution train step (any backend);
each network's speed is also given as a fraction of it.
"""

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from kseg.bench import targets
from kseg.bench.worker import RESULT_PREFIX
from kseg.runs import timestamp

BACKENDS = ("tensorflow", "jax", "torch")
# Precision and XLA variants of the TensorFlow train step (label, task options).
VARIANTS = (
    ("xla", {"jit": True}),
    ("mixed_bfloat16", {"precision": "mixed_bfloat16"}),
    ("mixed_float16", {"precision": "mixed_float16"}),
    ("deterministic", {"deterministic": True}),
)
# A variant may take this many times its network's float32 measurement (at least
# VARIANT_MIN_SECONDS) before it is stopped and reported as a gap. float16 on a CPU has no
# fast kernels: on this project's Intel Xeon (avx512_fp16, amx) a float16 train step of a
# small conv net ran 150x slower than float32, and the U-Net variant did not end in 18 min.
VARIANT_TIMEOUT_FACTOR = 5
VARIANT_MIN_SECONDS = 120


def available_backends():
    """Backends whose package is installed (TensorFlow always is)."""
    return [b for b in BACKENDS if b == "tensorflow" or importlib.util.find_spec(b)]


def default_data():
    """CamVid for the pipeline and `kseg fit` runs: $KSEG_CAMVID or ../shared/camvid."""
    for candidate in (os.environ.get("KSEG_CAMVID"), "../shared/camvid", "shared/camvid"):
        if candidate and (Path(candidate) / "train").is_dir():
            return str(Path(candidate).resolve())
    return None


def run_worker(task, backend="tensorflow", env=None, timeout=1800):
    """Run one kseg.bench.worker task in a fresh process; its result dict, or {"error": ...}."""
    full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "kseg.bench.worker", json.dumps(task)],
                              capture_output=True,
                              text=True, env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "backend": backend}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            result["wall_seconds"] = time.perf_counter() - start
            return result
    tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
    return {"error": f"exit {proc.returncode}: {tail[0][:300]}", "backend": backend}


def plan(archs, quick=False, backends=None, variants=True, data=None, steps=None, patch=128,
         batch_size=16, fit_arch="unet", plugins=(), ceiling_shape=None, fit_steps=None):
    """The list of `(section, label, backend, task)` measurements to run.

    `fit_steps`: batches per epoch of the real fit (None: 20, or 4 with `quick`; 0:
    whole epochs, as a run trains them).
    `ceiling_shape` (B, H, W, C) replaces the ceiling convolution's default (tests only).
    """
    backends = backends or available_backends()
    steps = steps or (2 if quick else 5)
    common = {"steps": steps, "patch": patch, "batch_size": batch_size}
    shape = {"shape": list(ceiling_shape)} if ceiling_shape else {}
    extra = {"plugins": list(plugins)} if plugins else {}
    jobs = []
    for backend in backends:
        jobs.append(("ceiling", backend, backend, {"task": "ceiling", "steps": steps, **shape}))
    if "tensorflow" in backends and not quick:
        jobs.append(("ceiling", "tensorflow xla", "tensorflow",
                     {"task": "ceiling", "steps": steps, "jit": True, **shape}))
    for arch in archs:
        jobs.append(("network", arch, "tensorflow",
                     {"task": "network", "arch": arch, **common, **extra, **_ceil(shape)}))
    for arch in archs:
        for backend in backends:
            if backend != "tensorflow":
                jobs.append(("variant", arch, backend,
                             {"task": "network", "arch": arch, "frames": False, **common, **extra,
                              **_ceil(shape)}))
        if variants and not quick and "tensorflow" in backends:
            for label, options in VARIANTS:
                jobs.append(("variant", arch, f"tensorflow {label}",
                             {"task": "network", "arch": arch, "frames": False, **common, **options, **extra,
                              **_ceil(shape)}))
    jobs.append(("pipeline", "camvid" if data else "synthetic", "tensorflow",
                 {"task": "pipeline", "root": data, "patch": patch, "batch_size": batch_size, **extra}))
    jobs.append(("confusion", "16 frames 360x480", "tensorflow", {"task": "confusion"}))
    if fit_arch:
        if fit_steps is None:
            fit_steps = 4 if quick else 20
        jobs.append(("fit", fit_arch, "tensorflow",  # steps None: whole epochs
                     {"task": "fit", "arch": fit_arch, "data": data, "steps": fit_steps or None,
                      "repeats": 2 if quick else 5, **extra}))
    return jobs


def variant_timeout(done, section, label):
    """`{"timeout": s}` for a variant of network `label`: VARIANT_TIMEOUT_FACTOR x the wall
    time of its float32 measurement among `done` runs; `{}` (run_worker's default) otherwise."""
    if section != "variant":
        return {}
    base = [r["result"]["wall_seconds"] for r in done
            if r["section"] == "network" and r["label"] == label and "wall_seconds" in r["result"]]
    return {"timeout": round(max(VARIANT_MIN_SECONDS, VARIANT_TIMEOUT_FACTOR * base[0]))} if base else {}


def _ceil(shape):
    return {"ceiling_shape": shape["shape"]} if shape else {}


def run_suite(jobs, progress=None, peer=None):
    """Run `jobs` from `plan` one after the other; returns the results document.

    `peer`: bench-peer.json's figures (kseg.bench.targets.load_peer), or None."""
    results = {"machine": machine(), "started": timestamp(), "runs": []}
    for i, (section, label, backend, task) in enumerate(jobs):
        if progress:
            progress(f"[{i + 1}/{len(jobs)}] {section}: {label} ({backend.split()[0]})")
        result = run_worker(task, backend.split()[0], **variant_timeout(results["runs"], section, label))
        results["runs"].append({"section": section, "label": label, "backend": backend, "task": task,
                                "result": result})
    summarize(results, peer)
    return results


def machine():
    """What the numbers were measured on."""
    from kseg.training.environment import cpu_info

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_info(), "cpus": os.cpu_count(), "python": platform.python_version()}


def summarize(results, peer=None):
    """Add the ceiling, fractions of it and the target checks to `results` (in place)."""
    runs = [r for r in results["runs"] if "error" not in r["result"]]
    ceilings = [r["result"]["gflops"] for r in runs if r["section"] == "ceiling"]
    ceiling = max(ceilings) if ceilings else None
    results["ceiling_gflops"] = ceiling
    for r in runs:
        res = r["result"]
        for key in ("train_gflops", "predict_gflops", "frame_gflops"):
            if key in res and ceiling:
                res[key.replace("gflops", "of_ceiling")] = res[key] / ceiling
    results["peer"] = peer
    results["targets"] = targets.check(runs, peer)
    return results
