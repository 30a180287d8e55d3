"""The networks table of docs/models.md: parameters, GFLOPs at 360x480, train patches/s and
predict ms per 360x480 frame, for the named networks one after another in one process.

    python docs/probes/models_table.py [--train-steps 3] [--frames 5] NAME ... > models_table.jsonl

Short runs: float32, TensorFlow, XLA off (kseg's CPU default). Train: the model as
`kseg fit` compiles it (kseg.training.loop.build_model: cross-entropy, the training
metrics, fused batch norm, Adam) on random (16, 128, 128, 3) patches of CamVid's 12
classes, one untimed step (the trace), then the median of `--train-steps` steps.
Predict: a (1, 360, 480, 3) frame padded to the network's stride (384x480; 384x512 for
DDRNet's 64), a compiled forward pass, median (and min) of `--frames` after two untimed.
`--frames 0`: sizes only; `--train-steps 0`: no training. GFLOPs (kseg.bench.flops, a
multiply-add is 2) at the padded size. One JSON line per network.
"""

import argparse
import json
import time

import numpy as np


def measure(name, train_steps, frames, batch=16, patch=128):
    import tensorflow as tf

    import kseg
    from kseg.bench.flops import forward_flops
    from kseg.data.spec import CAMVID
    from kseg.training.config import FitConfig
    from kseg.training.loop import build_model

    stride = kseg.registry.get_entry(name).stride
    h, w = -(-360 // stride) * stride, -(-480 // stride) * stride
    model = kseg.create_model(name, num_classes=12)
    row = {"name": name, "params": int(model.count_params()), "frame": [h, w],
           "gflops": forward_flops(model, (h, w, 3)) / 1e9}
    if not frames:  # --frames 0: size only
        return row
    forward = tf.function(lambda x: model(x, training=False), jit_compile=False)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, h, w, 3)).astype("float32"))
    times = []
    for _ in range(frames + 2):
        start = time.perf_counter()
        forward(x).numpy()
        times.append(time.perf_counter() - start)
    row["predict_ms"] = 1000 * float(np.median(times[2:]))
    row["predict_ms_min"] = 1000 * float(np.min(times[2:]))
    if not train_steps:  # --train-steps 0: predict only
        return row
    # Compiled as `kseg fit` compiles it: loss, metrics, fused batch norm, Adam.
    cfg = FitConfig(arch=name, precision="float32", jit=False, patch=patch, batch_size=batch).validate()
    model = build_model(cfg, CAMVID)
    rng = np.random.default_rng(1)
    xb = rng.uniform(0, 255, (batch, patch, patch, 3)).astype("float32")
    yb = rng.integers(0, 12, (batch, patch, patch)).astype("uint8")
    times = []
    for _ in range(train_steps + 1):
        start = time.perf_counter()
        model.train_on_batch(xb, yb)
        times.append(time.perf_counter() - start)
    row["train_patches_s"] = batch / float(np.median(times[1:]))
    return row


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="+")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    for name in args.names:
        print(json.dumps(measure(name, args.train_steps, args.frames)), flush=True)
