"""Paired probe: does XLA win on this CPU? (benchmarks/LOG.md, run J)

    python benchmarks/probes/cpu_jit.py [ARCH] [STEPS]

Builds registered network ARCH (default unet) twice in one process, compiled with
`jit_compile=False` and `jit_compile=True`, and alternates their `train_on_batch` steps
at the study's settings (batch 16, 128 px, float32, Adam, kseg's cross-entropy), so
both halves of each pair see the same machine load. Half the pairs run XLA first, half
second. Prints one JSON line: the CPU's flags, whether TensorFlow's oneDNN kernels are
on (TensorFlow turns them on by default only on CPUs with AVX512_VNNI, AVX512_BF16 or
AMX), each step's seconds and the median ratio XLA / no-XLA (> 1: XLA is faster).
"""

import json
import statistics
import sys

import numpy as np

from kseg.bench.timing import timed_calls
from kseg.training.environment import cpu_info, onednn


def train_step(arch, jit, x, y):
    import keras

    from kseg import registry
    from kseg.losses import build_loss

    keras.utils.set_random_seed(0)
    model = registry.create_model(arch, num_classes=11)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss("ce", 11, 11), jit_compile=jit)
    return lambda: model.train_on_batch(x, y)


def main(arch="unet", steps=6):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 128, 128, 3)).astype(np.float32)
    y = rng.integers(0, 12, (16, 128, 128)).astype(np.uint8)  # void (11) included
    eager, xla = train_step(arch, False, x, y), train_step(arch, True, x, y)
    half = steps // 2
    plain_a, xla_a = timed_calls(eager, half, warmup=2, paired=xla)  # no-XLA first
    xla_b, plain_b = timed_calls(xla, steps - half, warmup=1, paired=eager)  # XLA first
    plain, fast = plain_a + plain_b, xla_a + xla_b
    ratios = [p / f for p, f in zip(plain, fast, strict=True)]
    print(json.dumps({"arch": arch, "cpu": cpu_info(), "onednn": onednn(),
                      "no_xla_s": [round(t, 3) for t in plain], "xla_s": [round(t, 3) for t in fast],
                      "no_xla_patches_per_s": round(16 / statistics.median(plain), 2),
                      "xla_patches_per_s": round(16 / statistics.median(fast), 2),
                      "xla_speedup_median": round(statistics.median(ratios), 3)}), flush=True)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["unet"]), *(int(a) for a in sys.argv[2:3]))
