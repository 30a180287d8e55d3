"""Which TensorFlow settings train fastest on a CPU without AVX-512? (benchmarks/LOG.md, run P)

    python benchmarks/probes/cpu_defaults.py [--archs unet,deeplabv3] [--steps 3] [--rounds 2]

Each network is timed in fresh processes, one per setting, interleaved A B C then C B A
across rounds so that drift in the machine's load touches each setting alike. The settings
are environment variables, which TensorFlow reads once when it starts:

- eigen:        TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's own kernels (its default on such CPUs);
- onednn:       TF_ENABLE_ONEDNN_OPTS=1, oneDNN's kernels;
- onednn-inter1: the same, with one inter-op thread instead of one per core.

`--cap-isa AVX2` (the default) adds ONEDNN_MAX_CPU_ISA=AVX2 to every setting, so an AVX-512
CPU runs the code oneDNN runs on an AVX2 one (TensorFlow's Eigen kernels are built for AVX2
in the wheel already). Each process compiles the network as `kseg fit` does (float32, fused
batch norm, kseg's loss and metrics, Adam) and times `train_on_batch` at the study's step
(batch 16, 128 px), with XLA off and, in the first round, on: those two alternate step by
step in one process. Then the predict time of one 360x480 frame (XLA off). Prints one JSON
line per process and, at the end, the median train speed of each setting over eigen's.
"""

import json
import os
import statistics
import subprocess
import sys

import click

SETTINGS = {"eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"},
            "onednn": {"TF_ENABLE_ONEDNN_OPTS": "1"},
            "onednn-inter1": {"TF_ENABLE_ONEDNN_OPTS": "1", "KSEG_PROBE_INTER_OP": "1"}}
ARCHS = "unet,deeplabv3,deeplabv3plus,lraspp-mobilenetv3large,ddrnet23slim,fpn-resnet50,unet-efficientnetv2b0"


def child(arch, steps, xla):
    """Time `arch` in this process; returns the JSON row."""
    import numpy as np
    import tensorflow as tf

    if os.environ.get("KSEG_PROBE_INTER_OP"):
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["KSEG_PROBE_INTER_OP"]))
    from kseg.bench.models_table import predict_call
    from kseg.bench.timing import timed_calls
    from kseg.data.dataset_spec import CAMVID
    from kseg.training.config import FitConfig
    from kseg.training.environment import onednn
    from kseg.training.loop import build_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 128, 128, 3)).astype("float32")
    y = rng.integers(0, CAMVID.num_classes, (16, 128, 128)).astype("uint8")

    def step(jit):
        cfg = FitConfig(arch=arch, precision="float32", jit=jit, patch=128, batch_size=16).validate()
        model = build_model(cfg, CAMVID)
        return model, lambda: model.train_on_batch(x, y)

    model, plain = step(False)
    inter_op = tf.config.threading.get_inter_op_parallelism_threads()
    row = {"arch": arch, "onednn": onednn(), "inter_op": inter_op}
    if xla:
        _, fast = step(True)
        plain_s, xla_s = timed_calls(plain, steps, warmup=1, paired=fast)
        row["xla_s"] = [round(t, 3) for t in xla_s]
    else:
        plain_s, _ = timed_calls(plain, steps, warmup=1)
    row["train_s"] = [round(t, 3) for t in plain_s]
    frame = np.zeros((1, 384, 512 if arch.startswith("ddrnet") else 480, 3), "float32")
    predict_s = timed_calls(predict_call(model, frame), 5, warmup=2)[0]
    row["predict_ms"] = round(1000 * statistics.median(predict_s), 1)
    return row


def run_setting(arch, setting, steps, xla, cap_isa):
    env = {**os.environ, **SETTINGS[setting], "TF_CPP_MIN_LOG_LEVEL": "2"}
    if cap_isa:
        env["ONEDNN_MAX_CPU_ISA"] = cap_isa
    cmd = [sys.executable, __file__, "--child", arch, "--steps", str(steps), *(["--xla"] if xla else [])]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"{arch} {setting} failed: {out.stderr.strip().splitlines()[-1:]}")
    row = {"setting": setting, "isa_cap": cap_isa, **json.loads(lines[-1])}
    print(json.dumps(row), flush=True)
    return row


def summary(rows):
    """{arch: {setting: median train s}, ...} and speed ratios over eigen (> 1: faster)."""
    out = {}
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        med = {s: statistics.median(t for r in mine if r["setting"] == s for t in r["train_s"])
               for s in SETTINGS}
        xla = [t for r in mine if "xla_s" in r and r["setting"] == "eigen" for t in r["xla_s"]]
        predict = {s: statistics.median(r["predict_ms"] for r in mine if r["setting"] == s) for s in SETTINGS}
        out[arch] = {"train_patches_s": {s: round(16 / t, 2) for s, t in med.items()},
                     "over_eigen": {s: round(med["eigen"] / t, 3) for s, t in med.items()},
                     "xla_over_eigen": round(med["eigen"] / statistics.median(xla), 3) if xla else None,
                     "predict_ms": predict}
    return out


@click.command()
@click.option("--archs", default=ARCHS, show_default=True)
@click.option("--steps", default=3, show_default=True)
@click.option("--rounds", default=2, show_default=True)
@click.option("--cap-isa", default="AVX2", show_default=True, help="ONEDNN_MAX_CPU_ISA ('' for none).")
@click.option("--child", "child_arch", default=None, hidden=True)
@click.option("--xla", is_flag=True, hidden=True)
@click.option("--json", "json_path", default=None, help="Also write the rows and summary here.")
def main(archs, steps, rounds, cap_isa, child_arch, xla, json_path):
    if child_arch:
        print(json.dumps(child(child_arch, steps, xla)), flush=True)
        return
    from kseg.training.environment import cpu_info

    rows = []
    for arch in archs.split(","):
        for r in range(rounds):
            order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
            rows += [run_setting(arch, s, steps, r == 0 and s != "onednn-inter1", cap_isa) for s in order]
    result = {"cpu": cpu_info(), "isa_cap": cap_isa, "rows": rows, "summary": summary(rows)}
    print(json.dumps(result["summary"], indent=1))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
