"""`make gpu-check`: kseg on a machine with a GPU and no internet, in at most 8 minutes, into one JSON.

    python3 benchmarks/gpu/gpu_check.py --pack camvid-pack.tar --json gpu-check.json [--dry-run]

Steps, each with its own timeout and recorded as pass, fail or skip (with the reason), its
seconds and its figures; the JSON is rewritten atomically after every step, so a killed
check still leaves what it measured:

  install           pip install --no-index --no-deps --no-build-isolation: the wheels of .whl/
                    (or $KSEG_WHEELS) that are not installed yet, then kseg (--no-install skips)
  environment       the backend (TensorFlow if importable, else JAX, else torch; --backend or
                    KERAS_BACKEND override), versions, devices, nvidia-smi, CPUs, git commit
  camvid_pack       the CamVid pack unpacked into the work folder (dry run without a pack: a
                    pack of kseg's synthetic scenes, made and unpacked the same way)
  mixed_float16, xla, fused_batch_norm   benchmarks/gpu/gpu_probes.py, one process each
  distribute        `kseg fit --distribute`: MirroredStrategy (TF) or DataParallel (JAX) over every device
  study_epoch, study_eval, camvid_epoch, camvid_eval   one epoch of each recipe, then `kseg eval` on val
  bench             `kseg bench --table` on this backend
  pytest            the tests that exercise a GPU's code paths (a dry run only collects them)

Every kseg command runs this checkout's kseg (PYTHONPATH), with --workers auto and the
precision and XLA kseg picks. A machine where the backend sees no GPU, or --dry-run, runs
the same steps on the CPU at tiny sizes (devices hidden) and the JSON says "dry_run": true.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # kseg.atomic from this checkout, before any install
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_steps  # noqa: E402
from gpu_steps import StepFailed  # noqa: E402

from kseg import atomic  # noqa: E402

# 8 minutes: the steps' budget, plus a stopped step's 5 s of grace, Python's start and a margin
BUDGET_SECONDS = 430
DRY_RUN_SLOWDOWN = 4  # a CPU compiles and trains the same steps this many times slower, or more
MIN_STEP_SECONDS = 15  # a step is not started with less time than this left
BACKEND_FREE_STEPS = ("install", "environment", "camvid_pack")  # the others need keras and a backend
# The probes' patch, batch and steps; each recipe's extra `kseg fit` options; kseg bench's steps.
# The camvid recipe's one warmup epoch would leave one epoch no steps to decay over: half of it.
SIZES = {
    "gpu": {"patch": 64, "batch": 8, "steps": 3, "bench_steps": 5,
            "study": [], "camvid": ["--warmup", "0.5"]},
    "dry": {"patch": 32, "batch": 2, "steps": 2, "bench_steps": 1,
            "study": ["--patch", "32", "--grid", "2x2", "--batch-size", "4"],
            "camvid": ["--patch", "32", "--crops-per-image", "2", "--batch-size", "4", "--warmup", "0.5"]},
}


class GpuCheck:
    """The check's state: its options, work folder, backend, sizes and the JSON document."""

    def __init__(self, args):
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="kseg-gpu-check-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.dry_run = bool(args.dry_run)
        self.backend = None
        self.gpu_count = 0
        self.data, self.frames = None, None  # the unpacked dataset root, its frames per split
        self.doc = {"kind": "kseg gpu-check", "version": 1, "dry_run": self.dry_run,
                    "dry_run_reason": "--dry-run" if self.dry_run else None, "started": _now(),
                    "finished": None, "seconds": None, "budget_seconds": self.budget(), "arch": args.arch,
                    "work_dir": str(self.work), "backend": None, "machine": {}, "steps": {}}

    def budget(self):
        return self.args.budget or (BUDGET_SECONDS * DRY_RUN_SLOWDOWN if self.dry_run else BUDGET_SECONDS)

    def sizes(self):
        return SIZES["dry" if self.dry_run else "gpu"]

    def env(self, **extra):
        """The environment of every command: this checkout first on PYTHONPATH, the backend,
        and in a dry run no visible GPU."""
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        if self.backend:
            env["KERAS_BACKEND"] = self.backend
        if self.dry_run:
            env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
        env.update(extra)
        return env

    def kseg(self, *args):
        """argv of `kseg ARGS` with this checkout's kseg and the --plugin modules imported."""
        if not self.args.plugin:
            return [sys.executable, "-m", "kseg", *map(str, args)]
        code = ("import importlib, sys; [importlib.import_module(m) for m in sys.argv.pop(1).split(',')]; "
                "from kseg.cli.main import run; run()")
        return [sys.executable, "-c", code, ",".join(self.args.plugin), *map(str, args)]

    def run(self, argv, name, timeout, env=None):
        """Run `argv` in the repository with its output in logs/NAME.log; its output, or
        StepFailed on a timeout or a non-zero exit (with the log's last lines)."""
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "w") as out:
            # its own process group: a timeout stops its children (data workers, pytest's) too
            proc = subprocess.Popen(argv, cwd=REPO, env=env or self.env(), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                raise StepFailed(f"timed out after {timeout:.0f} s; {_tail(log)}") from None
        if code != 0:
            raise StepFailed(f"exit status {code}: {_tail(log)}")
        return log.read_text(errors="replace")

    def step(self, name, function, timeout):
        """Run one step within its timeout and what is left of the budget; record it and save."""
        left = self.budget() - (time.monotonic() - self.started)
        entry = {"status": "skip", "reason": None, "seconds": 0.0}
        if left < MIN_STEP_SECONDS:
            entry["reason"] = f"not started: {max(left, 0):.0f} s left of the {self.budget()} s budget"
        elif self.backend is None and name not in BACKEND_FREE_STEPS:
            entry["reason"] = "not started: no Keras backend (see the environment step)"
        else:
            limit = min(timeout * (DRY_RUN_SLOWDOWN if self.dry_run else 1), left)
            start = time.monotonic()
            try:
                entry.update(function(self, limit))
            except StepFailed as exc:
                entry.update(status="fail", reason=str(exc))
            except Exception as exc:  # a bug or a bad file in one step must not stop the others
                entry.update(status="fail", reason=f"{type(exc).__name__}: {exc}")
            entry.update(seconds=round(time.monotonic() - start, 2), timeout_seconds=round(limit))
        self.doc["steps"][name] = entry
        self.save()
        print(f"gpu-check: {name}: {entry['status']} ({entry['seconds']:.1f} s)"
              + (f": {entry['reason'][:200]}" if entry["reason"] else ""), flush=True)
        return entry

    def save(self):
        self.doc.update(dry_run=self.dry_run, backend=self.backend, budget_seconds=self.budget(),
                        seconds=round(time.monotonic() - self.started, 2))
        atomic.write_json(self.args.json, self.doc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="gpu-check.json", help="the JSON to write (default gpu-check.json)")
    parser.add_argument("--pack", default=str(REPO / "camvid-pack.tar"),
                        help="the CamVid pack (make camvid-pack)")
    parser.add_argument("--dry-run", action="store_true", help="the CPU at tiny sizes, GPUs hidden")
    parser.add_argument("--no-install", action="store_true", help="skip the pip install step")
    parser.add_argument("--wheels", help="folder of wheels to install (default $KSEG_WHEELS or .whl/)")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        help="instead of the first installed")
    parser.add_argument("--arch", default="unet", help="the network of the probes and epochs (default unet)")
    parser.add_argument("--plugin", action="append", default=[], help="a module registering networks (tests)")
    parser.add_argument("--budget", type=float, help=f"seconds for all steps (default {BUDGET_SECONDS}; "
                        f"{DRY_RUN_SLOWDOWN}x in a dry run)")
    parser.add_argument("--work", help="work folder (default: a new temporary one, kept)")
    args = parser.parse_args(argv)
    check = GpuCheck(args)
    print(f"gpu-check: work folder {check.work}; writing {args.json}", flush=True)
    for name, function, timeout in gpu_steps.STEPS:
        check.step(name, function, timeout)
    check.doc["finished"] = _now()
    check.save()
    failed = [n for n, s in check.doc["steps"].items() if s["status"] == "fail"]
    print(f"gpu-check: {len(check.doc['steps']) - len(failed)} of {len(check.doc['steps'])} steps passed or "
          f"skipped{', failed: ' + ', '.join(failed) if failed else ''}; wrote {args.json}", flush=True)
    return 1 if failed else 0


def _stop(proc):
    """SIGTERM to the step's process group (kseg fit stops cleanly), SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log, lines=12):
    text = [line for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(text[-lines:])[-2000:] or "no output"


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


if __name__ == "__main__":
    sys.exit(main())
