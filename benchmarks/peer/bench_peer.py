"""`make bench-peer`: kseg's U-Net against segmentation_models' U-Net, the study's library.

Both networks are U-Nets with a ResNet-34 encoder and decoder widths 256..16, timed at
the study's step: 128 px patches, batch 16, Adam 1e-3, sparse cross-entropy, then
`predict_on_batch` on the same batch. kseg runs at `kseg fit`'s defaults on a CPU
(precision auto, XLA off, op determinism on) and again in float32, which is the
like-for-like comparison with the peer (segmentation_models trains in float32). kseg
has 11 classes plus a void label it ignores; the peer has the study's 12-class softmax
with void as a class, a difference of one channel in the last 1x1 conv.

Each round is a fresh process: kseg's through kseg.bench.worker in this venv, the peer's
through benchmarks/peer/peer_worker.py in its own venv (.venv-peer: Keras 2 via tf-keras,
which segmentation_models needs). Rounds are interleaved, A B C then C B A, so a drift in
the machine's load touches each side alike. Every timed step is followed by a step of
the same ceiling convolution in the same process; the "paired" ratios compare the two
sides in units of it, and are the figures to read on a busy machine.

    python benchmarks/peer/bench_peer.py --rounds 3 --steps 5 --json bench-peer.json
"""

import json
import os
import platform
import statistics
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from kseg.bench.suite import run_worker
from kseg.bench.timing import CEILING_SHAPE
from kseg.bench.worker import RESULT_PREFIX
from kseg.errors import KsegError

PEER_WORKER = Path(__file__).with_name("peer_worker.py")
PEER_PYTHON = ".venv-peer/bin/python"
SIDES = ("kseg", "kseg float32", "peer")
# Figures of bench-peer.json that `make bench` reads: (side, step) -> field name.
FIELDS = {("kseg", "train"): "kseg_train_patches_per_s", ("kseg", "predict"): "kseg_predict_patches_per_s",
          ("kseg float32", "train"): "kseg_float32_train_patches_per_s",
          ("kseg float32", "predict"): "kseg_float32_predict_patches_per_s",
          ("peer", "train"): "peer_train_patches_per_s", ("peer", "predict"): "peer_predict_patches_per_s"}
# Ratios kseg / peer: (side, step) -> field name; "paired_" + name for the paired ones.
RATIOS = {("kseg", "train"): "ratio", ("kseg", "predict"): "predict_ratio",
          ("kseg float32", "train"): "float32_ratio", ("kseg float32", "predict"): "float32_predict_ratio"}


AVX2_FLAGS = ["avx2", "fma"]  # --as-avx2: the flags of a CPU without AVX-512


def kseg_precision(requested="auto", flags=None):
    """`(precision, reason)` as `kseg fit --precision` decides it, from the CPU's flags
    (`flags`: this CPU's where None).

    No GPU is looked for (that would import TensorFlow here); this is a CPU benchmark.
    """
    from kseg.training.environment import cpu_info
    from kseg.training.hardware import pick_precision

    return pick_precision(requested, cpu_info()["flags"] if flags is None else flags, [])


def side_envs(as_avx2=False, environ=os.environ):
    """`(flags, kseg env, peer env)`: each side at its own defaults, as `kseg fit` and a
    plain TensorFlow process start. kseg's side gets the TF_ENABLE_ONEDNN_OPTS that `kseg
    fit` sets (kseg.training.hardware.pick_onednn); the peer's keeps TensorFlow's default.

    `as_avx2`: both run as on a CPU with AVX2 and no AVX-512: oneDNN's kernels capped at
    AVX2 (ONEDNN_MAX_CPU_ISA), and TensorFlow's default there, oneDNN off, on the peer's
    side. TensorFlow's own kernels are built for AVX2 in its wheel already."""
    from kseg.training.environment import cpu_info
    from kseg.training.hardware import pick_onednn

    flags = AVX2_FLAGS if as_avx2 else cpu_info()["flags"]
    kseg_env, peer_env = {}, {}
    if as_avx2:
        kseg_env["ONEDNN_MAX_CPU_ISA"] = peer_env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        peer_env.setdefault("TF_ENABLE_ONEDNN_OPTS", environ.get("TF_ENABLE_ONEDNN_OPTS", "0"))
    value, _ = pick_onednn("fit", flags, environ)
    if value is not None:
        kseg_env["TF_ENABLE_ONEDNN_OPTS"] = value
    return flags, kseg_env, peer_env


def plan(rounds=3, steps=5, precision="mixed_bfloat16", patch=128, batch_size=16):
    """`[(round, side, task)]`: the three sides per round, in A B C then C B A order."""
    common = {"patch": patch, "batch_size": batch_size, "steps": steps}
    kseg = {"task": "network", "arch": "unet", "frames": False, "deterministic": True, "num_classes": 11,
            "void": 11, **common}
    tasks = {"kseg": {**kseg, "precision": precision}, "kseg float32": {**kseg, "precision": "float32"},
             "peer": {"num_classes": 12, "precision": "float32", **common}}
    jobs = []
    for i in range(rounds):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            jobs.append((i + 1, side, tasks[side]))
    return jobs


def run_peer(task, python=PEER_PYTHON, timeout=1800, env=None):
    """One peer round in a fresh process of the peer's venv; its result dict, or {"error": ...}."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1", "SM_FRAMEWORK": "tf.keras",
           "KERAS_BACKEND": "tensorflow", **(env or {})}
    try:
        proc = subprocess.run([str(python), str(PEER_WORKER), json.dumps(task)], capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
    return {"error": f"exit {proc.returncode}: {tail[0][:300]}"}


def per_ceiling(result, step):
    """Median over pairs of ceiling seconds / step seconds, from a kseg worker's result.

    The worker reports `{step}_of_local_ceiling` = median of (F/t) / (Fc/c) with F the
    step's FLOPs and Fc the ceiling's; dividing by F/Fc leaves median(c/t). A peer result
    carries `{step}_per_ceiling` already.
    """
    if f"{step}_per_ceiling" in result:
        return result[f"{step}_per_ceiling"]
    b, h, w, c = result.get("ceiling_shape") or CEILING_SHAPE
    ceiling_flops = 3 * 2 * b * h * w * c * c * 9  # as kseg.bench.timing.ceiling_step counts it
    flops = result["flops_per_patch"] * result["batch_size"] * (3 if step == "train" else 1)
    return result[f"{step}_of_local_ceiling"] * ceiling_flops / flops


def summarize(rounds):
    """The flat figures of bench-peer.json from `[{"round", "side", "result"}]`.

    Patches/s are medians over the rounds that ran; each ratio is kseg's median over
    the peer's. Figures of a side with no successful round are None.
    """
    ok = {side: [r["result"] for r in rounds if r["side"] == side and "error" not in r["result"]]
          for side in SIDES}
    out = {}
    for (side, step), name in FIELDS.items():
        values = [r[f"{step}_patches_per_s"] for r in ok[side]]
        out[name] = statistics.median(values) if values else None
        paired = [per_ceiling(r, step) for r in ok[side]]
        out[f"{side.replace(' ', '_')}_{step}_per_ceiling"] = statistics.median(paired) if paired else None
    for (side, step), name in RATIOS.items():
        out[name] = _ratio(out[FIELDS[side, step]], out[FIELDS["peer", step]])
        prefix = side.replace(" ", "_")
        out[f"paired_{name}"] = _ratio(out[f"{prefix}_{step}_per_ceiling"], out[f"peer_{step}_per_ceiling"])
    out["rounds_ok"] = {side: len(results) for side, results in ok.items()}
    return out


def _ratio(a, b):
    return a / b if a is not None and b else None


def table_rows(doc):
    """`(columns, rows)`: one column per side, one row per figure (fits 80 characters)."""
    sides = (("kseg", doc["kseg_precision"], "kseg", ""), ("kseg", "float32", "kseg_float32", "float32_"),
             ("peer", doc["peer_precision"], "peer", None))
    columns = [""] + [f"{name} {precision}" for name, precision, _, _ in sides]
    rows = [["train patches/s"] + [doc[f"{key}_train_patches_per_s"] for _, _, key, _ in sides],
            ["predict patches/s"] + [doc[f"{key}_predict_patches_per_s"] for _, _, key, _ in sides]]
    for label, field in (("train ratio", "{}ratio"), ("predict ratio", "{}predict_ratio"),
                         ("train, paired ratio", "paired_{}ratio"),
                         ("predict, paired ratio", "paired_{}predict_ratio")):
        # The ratios are kseg / peer, so the peer's own is 1 by definition.
        rows.append([label] + [1.0 if prefix is None else doc[field.format(prefix)]
                               for _, _, _, prefix in sides])
    return columns, rows


def run_rounds(jobs, python=PEER_PYTHON, progress=None, envs=({}, {})):
    """Run `plan`'s jobs one after the other; `[{"round", "side", "task", "result"}]`.
    `envs`: the variables of kseg's side and of the peer's (`side_envs`)."""
    rounds = []
    for i, (number, side, task) in enumerate(jobs):
        if progress:
            progress(f"[{i + 1}/{len(jobs)}] round {number}: {side}")
        start = time.perf_counter()
        if side == "peer":
            result = run_peer(task, python, env=envs[1])
        else:
            result = run_worker(task, env=envs[0])
            result.setdefault("ceiling_shape", task.get("ceiling_shape"))
        result["wall_seconds"] = time.perf_counter() - start
        rounds.append({"round": number, "side": side, "task": task, "result": result})
    return rounds


def kseg_versions():
    """Versions on kseg's side, read from package metadata (nothing is imported)."""
    out = {"python": platform.python_version()}
    for name in ("kseg", "keras", "tensorflow", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def bench_peer(rounds=3, steps=5, precision="auto", python=PEER_PYTHON, progress=None, patch=128,
               batch_size=16, ceiling_shape=None, as_avx2=False):
    """Run the interleaved rounds; returns bench-peer.json's document (see `summarize`)."""
    from kseg.runs import timestamp
    from kseg.training.environment import cpu_info

    if not Path(python).is_file():
        raise KsegError(f"No peer venv: {python} does not exist. Build it with `make bench-peer` "
                        f"(it installs benchmarks/peer/requirements.txt into .venv-peer) or give "
                        f"--peer-python.")
    flags, kseg_env, peer_env = side_envs(as_avx2)
    chosen, reason = kseg_precision(precision, flags)
    jobs = plan(rounds, steps, chosen, patch, batch_size)
    if ceiling_shape:  # a small ceiling convolution for tests
        jobs = [(n, side, {**task, "ceiling_shape": list(ceiling_shape)}) for n, side, task in jobs]
    load = os.getloadavg()
    started = timestamp()
    results = run_rounds(jobs, python, progress, (kseg_env, peer_env))
    peer_ok = [r["result"] for r in results if r["side"] == "peer" and "error" not in r["result"]]
    return {**summarize(results), "kseg_precision": chosen, "kseg_precision_reason": reason,
           "peer_precision": "float32", "as_avx2": as_avx2, "kseg_env": kseg_env, "peer_env": peer_env,
           "started": started, "load_before": list(load),
           "load_after": list(os.getloadavg()),
           "settings": {"rounds": rounds, "steps": steps, "patch": patch, "batch_size": batch_size,
                        "kseg": "unet, 11 classes + void (ignored), cross-entropy, Adam 1e-3, "
                                "op determinism on, XLA off (kseg fit's CPU defaults)",
                        "peer": "segmentation_models Unet('resnet34', encoder_weights=None), 12 classes "
                                "softmax, sparse_categorical_crossentropy, Adam 1e-3"},
           "cpu": cpu_info(), "cpus": os.cpu_count(), "platform": platform.platform(),
           "versions": {"kseg": kseg_versions(), "peer": peer_ok[0]["versions"] if peer_ok else None},
           "rounds": results}


@click.command("bench-peer")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Rounds of each side, interleaved.")
@click.option("--steps", default=5, show_default=True, type=click.IntRange(1),
              help="Timed train and predict steps per round.")
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "float32", "mixed_bfloat16", "mixed_float16"]),
              help="kseg's precision (as `kseg fit --precision`); kseg also runs in float32.")
@click.option("--peer-python", default=PEER_PYTHON, show_default=True, help="Python of the peer's venv.")
@click.option("--json", "json_path", default="bench-peer.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the results.")
@click.option("--as-avx2", is_flag=True, help="Run both sides as on a CPU with AVX2 and no AVX-512 "
              "(oneDNN capped at AVX2; each side at its defaults for such a CPU).")
def main(rounds, steps, precision, peer_python, json_path, as_avx2):
    """Time kseg's U-Net against segmentation_models' U-Net, in interleaved rounds."""
    from kseg import atomic, output

    progress = lambda text: output.err_console.print(text, highlight=False)  # noqa: E731
    doc = bench_peer(rounds, steps, precision, peer_python, progress, as_avx2=as_avx2)
    errors = [f"round {r['round']} {r['side']}: {r['result']['error']}" for r in doc["rounds"]
              if "error" in r["result"]]
    for line in errors:
        output.err_console.print(line, highlight=False)
    atomic.write_json(json_path, doc)
    columns, rows = table_rows(doc)
    caption = (f"ratio: kseg / peer (segmentation_models); median of {rounds} round(s) x {steps} step(s); "
               f"paired: in units of a ceiling conv step timed after each step; load average before "
               f"{doc['load_before'][0]:.2f}")
    if as_avx2:
        caption += (f"; as on a CPU without AVX-512: oneDNN capped at AVX2, kseg {doc['kseg_env']}, "
                    f"peer {doc['peer_env']}")
    output.print_table("kseg vs segmentation_models (U-Net, ResNet-34)", columns, rows, digits=2,
                       caption=caption)
    output.err_console.print(f"Wrote {json_path}.", highlight=False)
    if len(errors) == len(doc["rounds"]):
        raise KsegError(f"Every round failed; the first: {errors[0]}")


if __name__ == "__main__":
    main()
