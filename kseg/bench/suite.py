"""`kseg bench`: which measurements to run, in which processes, and the targets.

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
# The targets: name -> required value.
TARGETS = {
    "training at >= 50% of the conv ceiling": 0.5,
    "data pipeline >= 20x training throughput": 20.0,
    "full frame >= 3x faster than the 4x4 patch grid": 3.0,
    "kseg fit peak memory <= 2 GB": 2048.0,
    # "Far faster": scoring must never be what an evaluation waits for.
    "confusion matrix >= 10x faster than full-frame prediction": 10.0,
}


def available_backends():
    """Backends whose package is installed (TensorFlow always is)."""
    return [b for b in BACKENDS if b == "tensorflow" or importlib.util.find_spec(b)]


def default_data():
    """CamVid for the pipeline and fit-memory runs: $KSEG_CAMVID or ../shared/camvid."""
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
         batch_size=16, fit_arch="unet", plugins=(), ceiling_shape=None):
    """The list of `(section, label, backend, task)` measurements to run.

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
        jobs.append(("fit_memory", fit_arch, "tensorflow",
                     {"task": "fit_memory", "arch": fit_arch, "data": data, "steps": 4 if quick else 20,
                      **extra}))
    return jobs


def _ceil(shape):
    return {"ceiling_shape": shape["shape"]} if shape else {}


def run_suite(jobs, progress=None):
    """Run `jobs` from `plan` one after the other; returns the results document."""
    results = {"machine": machine(), "started": timestamp(), "runs": []}
    for i, (section, label, backend, task) in enumerate(jobs):
        if progress:
            progress(f"[{i + 1}/{len(jobs)}] {section}: {label} ({backend.split()[0]})")
        result = run_worker(task, backend.split()[0])
        results["runs"].append({"section": section, "label": label, "backend": backend, "task": task,
                                "result": result})
    summarize(results)
    return results


def machine():
    """What the numbers were measured on."""
    from kseg.training.environment import cpu_info

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_info(), "cpus": os.cpu_count(), "python": platform.python_version()}


def summarize(results):
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
    results["targets"] = check_targets(runs)
    return results


def check_targets(runs):
    """One row per target: the goal, the measured value, met or not."""
    nets = [r["result"] for r in runs if r["section"] == "network"]
    rows = []
    goal = TARGETS["training at >= 50% of the conv ceiling"]
    for net in nets:
        # The paired in-process ratio when measured (steadier on a shared machine).
        value = net.get("train_of_local_ceiling", net.get("train_of_ceiling"))
        rows.append(_target(f"training at >= 50% of the conv ceiling ({net['arch']})", goal, value, value))
    pipe = next((r["result"] for r in runs if r["section"] == "pipeline"), None)
    fastest = max((n["train_patches_per_s"] for n in nets), default=None)
    if pipe and fastest:
        ratio = pipe["patches_per_second"] / fastest
        rows.append(_target("data pipeline >= 20x training throughput", 20.0, ratio, ratio))
    for net in nets:
        if "frame_speedup" in net:
            rows.append(_target(f"full frame >= 3x faster than the 4x4 patch grid ({net['arch']})", 3.0,
                                net["frame_speedup"], net["frame_speedup"]))
    cm = next((r["result"] for r in runs if r["section"] == "confusion"), None)
    predict_fps = max((n["frame_fps"] for n in nets if "frame_fps" in n), default=None)
    if cm and predict_fps:
        ratio = cm["numpy_fps"] / predict_fps
        rows.append(_target("confusion matrix >= 10x faster than full-frame prediction", 10.0, ratio, ratio))
    fit = next((r["result"] for r in runs if r["section"] == "fit_memory"), None)
    if fit:
        mb = fit["peak_rss_mb"]
        rows.append({"target": f"kseg fit {fit['arch']} peak memory <= 2 GB ({fit['dataset']})",
                     "goal": 2048.0, "measured": mb, "met": mb <= 2048.0})
    return rows


def _target(name, goal, measured, value):
    return {"target": name, "goal": goal, "measured": measured, "met": value is not None and value >= goal}
