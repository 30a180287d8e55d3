"""The steps of `make gpu-check` (benchmarks/gpu/gpu_check.py runs them, in STEPS' order).

Each step is `step(check, timeout) -> dict`: "status" ("pass", "fail" or "skip"), "reason"
(None when passed) and its figures; it raises StepFailed to fail with a reason. `check` is
gpu_check.GpuCheck: the options, the work folder, the backend, the sizes and `run`, which
runs a command within the timeout.
"""

import csv
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).resolve().parent / "gpu_probes.py"
RESULT_PREFIX = "GPU_CHECK "  # gpu_probes.RESULT_PREFIX
DRY_RUN_FRAMES = {"train": 4, "val": 2}  # a dry run trains on the first frames of each split only
BENCH_ARCHS = ("unet", "deeplabv3", "deeplabv3plus")
# The tests whose code paths differ on a GPU: the fused batch-norm kernel (cuDNN there) on
# TensorFlow; the JAX and torch backends training kseg's networks (torch on the GPU where
# it has CUDA). tests/test_distribute.py is left out: it splits the CPU into 2 devices.
TESTS = {"tensorflow": ["tests/test_fused_norm.py"], "other": ["tests/test_backends.py"]}


class StepFailed(Exception):
    """A step's failure with the reason to record (a timeout, an exit status, a bad file)."""


def install(check, timeout):
    """The wheels not yet installed, then kseg, into this Python; pip never reaches the network."""
    if check.args.no_install:
        return {"status": "skip", "reason": "--no-install: kseg runs from this checkout (PYTHONPATH)"}
    folder = Path(check.args.wheels or os.environ.get("KSEG_WHEELS") or REPO / ".whl")
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    present, new = [], []
    for wheel in wheels:
        dist = wheel.name.split("-")[0]
        try:  # an installed package stays as it is: the machine's own build may differ from the wheel
            present.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            new.append(wheel)
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check"]
    env = check.env(PIP_NO_INDEX="1")
    if new:  # first, so that kseg's build finds setuptools where only its wheel was here
        check.run([*pip, *map(str, new)], "install-wheels", timeout, env=env)
    installed = [w.name for w in new]
    if _editable_kseg():  # a developer's `pip install -e .` stays: a plain install would replace it
        present.append("kseg (editable)")
    else:
        check.run([*pip, "--no-build-isolation", str(REPO)], "install", timeout, env=env)
        installed.append("kseg")
    importlib.invalidate_caches()  # the backend is picked next, from what is installed now
    return {"status": "pass", "reason": None, "wheels_folder": str(folder), "installed": installed,
            "already_installed": present}


def _editable_kseg():
    """True where kseg is installed editable (PEP 610's direct_url.json says so). Every kseg
    found is read: the checkout on sys.path may hold a kseg.egg-info of an earlier build."""
    for dist in importlib.metadata.distributions(name="kseg"):
        text = dist.read_text("direct_url.json")
        if text and json.loads(text).get("dir_info", {}).get("editable"):
            return True
    return False


def pick_backend(requested=None):
    """`(backend, reason)`: TensorFlow where importable, else JAX, else torch."""
    if requested:
        return requested, "asked for (--backend)"
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND is set"
    found = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name)]
    if not found:
        return None, "none of tensorflow, jax and torch is installed"
    why = {"tensorflow": "TensorFlow is installed", "jax": "TensorFlow is not installed; JAX is",
           "torch": "neither TensorFlow nor JAX is installed; torch is"}
    return found[0], why[found[0]]


def environment(check, timeout):
    """The backend, the machine (nvidia-smi, CPUs, git commit) and what the backend sees."""
    check.backend, why = pick_backend(check.args.backend)
    smi = nvidia_smi()
    check.doc.update(backend_reason=why)
    check.doc["machine"].update(cpus=os.cpu_count(), nvidia_smi=smi, git=git_commit(), python=sys.executable)
    if check.backend is None:
        raise StepFailed(why)
    found = probe(check, "environment", timeout)
    check.doc["machine"].update({k: v for k, v in found.items() if k not in ("status", "reason")})
    check.gpu_count = len(found.get("gpus", []))
    out = {"status": found["status"], "reason": found.get("reason"), "backend": check.backend, "why": why,
           "gpus": found.get("gpus"), "auto": found.get("auto")}
    if not check.dry_run and not check.gpu_count:
        check.dry_run = True
        check.doc["dry_run_reason"] = f"no GPU visible to {check.backend}"
        if smi:  # the driver sees a GPU that the backend does not: a CPU-only build, or no CUDA plugin
            out.update(status="fail", reason=f"nvidia-smi lists {len(smi)} GPU(s), {check.backend} sees none")
    return out


def camvid_data(check, timeout):
    """Unpack the CamVid pack (a dry run without one: pack kseg's synthetic scenes first)."""
    import camvid_pack  # numpy, imageio and Pillow: here, not before the check can report their absence

    pack, out = Path(check.args.pack), {"status": "pass", "reason": None}
    if pack.is_file():
        out["source"] = "CamVid pack"
    else:
        if not check.dry_run:
            out.update(status="fail", reason=f"no CamVid pack at {pack} (make camvid-pack where CamVid is); "
                                             "the epochs train on synthetic scenes instead")
        from kseg.data.synth import write_synthetic

        scenes = write_synthetic(check.work / "synthetic", n_train=4, n_val=2, n_test=0, size=(64, 96))
        pack = check.work / "synthetic-pack.tar"
        camvid_pack.pack(scenes, pack)
        out["source"] = "kseg's synthetic scenes, packed as CamVid is"
    root = camvid_pack.unpack(pack, check.work / "data")
    summary = json.loads((root / "pack.json").read_text())
    check.frames = dict(summary["frames"])
    if check.dry_run:
        check.frames = _keep_first_frames(root, check.frames)
    check.data = root
    return {**out, "pack": str(pack), "bytes": pack.stat().st_size, "root": str(root),
            "frames_in_pack": summary["frames"], "frames_used": check.frames,
            "jpeg_mean_abs_diff": summary["mean_abs_diff"]}


def probe(check, name, timeout, **options):
    """Run gpu_probes.py NAME in a fresh process; its result dict."""
    sizes = check.sizes()
    opts = {"arch": check.args.arch, "plugins": check.args.plugin, **options,
            **{k: sizes[k] for k in ("patch", "batch", "steps")}}
    output = check.run([sys.executable, str(PROBES), name, json.dumps(opts)], name, timeout)
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise StepFailed(f"{PROBES.name} {name} printed no result")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def mixed_float16(check, timeout):
    return probe(check, "mixed_float16", timeout)


def xla(check, timeout):
    if check.backend == "torch":
        return {"status": "skip", "reason": "Keras' torch backend does not compile the train step"}
    return probe(check, "xla", timeout)


def fused_batch_norm(check, timeout):
    if check.backend != "tensorflow":
        return {"status": "skip", "reason": f"TensorFlow only: kseg's fused batch norm is TensorFlow's "
                                            f"FusedBatchNormV3 (cuDNN); on {check.backend} Keras' own runs"}
    return probe(check, "fused_batch_norm", timeout)


def distribute(check, timeout):
    """`kseg fit --distribute` over every device: 1 epoch of 1 patch per frame."""
    if check.backend not in ("tensorflow", "jax"):
        return {"status": "skip",
                "reason": f"kseg fit --distribute supports TensorFlow and JAX, not {check.backend}"}
    replicas = 1 if check.dry_run else max(1, check.gpu_count)
    sizes = check.sizes()
    run, row, env = _fit(check, "distribute", timeout, "--distribute", "--patch", sizes["patch"],
                         "--grid", "1x1", "--batch-size", sizes["batch"] * replicas)
    topo = env.get("distribute") or {}
    ok = topo.get("replicas") == replicas
    return {"status": "pass" if ok else "fail",
            "reason": None if ok else f"{topo.get('replicas')} replica(s), expected {replicas}, one a device",
            "expected_replicas": replicas, "topology": topo, "epoch_seconds": float(row["seconds"]),
            "loss": float(row["loss"])}


def epoch(check, timeout, recipe):
    """One epoch of `recipe` on the pack: its seconds, patches/s and what kseg chose."""
    _, row, env = _fit(check, recipe, timeout, "--recipe", recipe, *check.sizes()[recipe])
    config = json.loads((check.work / "runs" / recipe / "config.json").read_text())
    per_frame = config["grid"][0] * config["grid"][1] if config["grid"] else config["crops_per_image"]
    patches, seconds = check.frames["train"] * per_frame, float(row["seconds"])
    scores = {k: float(row[k]) for k in ("loss", "val_loss", "val_accuracy", "val_miou") if row.get(k)}
    return {"status": "pass", "reason": None, "epoch_seconds": seconds, "train_patches": patches,
            "patches_per_second": patches / seconds, "patch": config["patch"],
            "batch_size": config["batch_size"], **scores, "backend": env["backend"],
            "devices": env["devices"], "chosen": env.get("chosen")}


def evaluate(check, timeout, recipe):
    """`kseg eval` of the epoch's run on val: mIoU, pixel accuracy, time per frame."""
    runs = check.work / "runs"
    if not (runs / recipe / "best.keras").is_file():
        return {"status": "skip", "reason": f"no checkpoint: {recipe}_epoch did not finish"}
    check.run(check.kseg("eval", recipe, "--runs", runs, "--splits", "val"), f"{recipe}_eval", timeout)
    report = json.loads((runs / recipe / "eval.json").read_text())
    val = report["splits"]["val"]
    return {"status": "pass", "reason": None, "checkpoint": "best", "mode": report.get("mode"),
            "val_miou": val["miou"], "val_pixel_accuracy": val["accuracy"], "frames": val["frames"],
            "eval_seconds": val["eval_seconds"], "predict_ms_per_frame": val["predict_ms_per_frame"]}


def bench(check, timeout):
    """`kseg bench --table`: parameters, GFLOPs, train patches/s and predict ms per frame."""
    archs = [check.args.arch] if check.dry_run else list(dict.fromkeys([check.args.arch, *BENCH_ARCHS]))
    out = check.work / "bench-table.json"
    check.run(check.kseg("bench", *archs, "--table", "--steps", check.sizes()["bench_steps"], "--json", out),
              "bench", timeout)
    return {"status": "pass", "reason": None, "networks": json.loads(out.read_text())}


def tests(check, timeout):
    """The GPU-relevant tests (a dry run collects them only: CI runs them in `make test`)."""
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skip", "reason": "pytest is not installed"}
    files = list(TESTS["tensorflow"]) if check.backend == "tensorflow" else []
    if importlib.util.find_spec("jax") or importlib.util.find_spec("torch"):
        files += TESTS["other"]
    if not files:  # pytest would collect the whole suite
        return {"status": "skip", "reason": f"no GPU-relevant tests for {check.backend} alone"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    output = check.run(argv + (["--collect-only"] if check.dry_run else []), "pytest", timeout)
    summary = [line for line in output.splitlines() if line.strip()][-1]
    return {"status": "pass", "reason": None, "files": files, "collected_only": check.dry_run,
            "summary": summary}


def nvidia_smi():
    """[{"name", "memory", "driver"}] of nvidia-smi, or None where it is absent."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        text = subprocess.run([exe, *query], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [{"error": str(exc)}]
    return [dict(zip(("name", "memory", "driver"), (p.strip() for p in line.split(",")), strict=False))
            for line in text.splitlines() if line.strip()]


def git_commit():
    """{"commit", "dirty"} of this checkout, or {"commit": None, "reason"}."""
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=30, check=True).stdout.strip()
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "reason": f"no git checkout here ({type(exc).__name__})"}


def _fit(check, name, timeout, *options):
    """`kseg fit ARCH --epochs 1 ... --name NAME`: (run folder, its history row, its env.json)."""
    if check.data is None:
        raise StepFailed("no data: the camvid_pack step failed")
    runs = check.work / "runs"
    argv = check.kseg("fit", check.args.arch, *options, "--epochs", "1", "--workers", "auto",
                      "--data", check.data, "--runs", runs, "--name", name, "--plain")
    check.run(argv, name if name == "distribute" else f"{name}_epoch", timeout)
    run = runs / name
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise StepFailed(f"{run}/history.csv has no epoch")
    return run, rows[-1], json.loads((run / "env.json").read_text())


def _keep_first_frames(root, frames):
    """Cut each split's pair list to its first DRY_RUN_FRAMES; the frame counts kept."""
    kept = {}
    for split, count in frames.items():
        lines = (root / f"{split}.txt").read_text().splitlines(keepends=True)
        lines = lines[:DRY_RUN_FRAMES.get(split, count)]
        (root / f"{split}.txt").write_text("".join(lines))
        kept[split] = len(lines)
    return kept


STEPS = [  # (name, step, timeout in seconds on a GPU)
    ("install", install, 90), ("environment", environment, 60), ("camvid_pack", camvid_data, 60),
    ("mixed_float16", mixed_float16, 60), ("xla", xla, 75), ("fused_batch_norm", fused_batch_norm, 60),
    ("distribute", distribute, 90),
    ("study_epoch", functools.partial(epoch, recipe="study"), 150),
    ("study_eval", functools.partial(evaluate, recipe="study"), 60),
    ("camvid_epoch", functools.partial(epoch, recipe="camvid"), 150),
    ("camvid_eval", functools.partial(evaluate, recipe="camvid"), 60),
    ("bench", bench, 90), ("pytest", tests, 120),
]
