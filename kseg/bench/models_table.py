"""The networks table (`kseg bench --table`, docs/models.md): parameters, GFLOPs at
360x480, train patches/s and predict ms per 360x480 frame, one network after another.

Short runs: float32 on the current Keras backend; on TensorFlow XLA off (kseg's CPU
default), on JAX compiled (its only mode), on torch eager. Train: the model as
`kseg fit` compiles it (kseg.training.loop.build_model: cross-entropy, the training
metrics, fused batch norm, Adam) on random (16, 128, 128, 3) patches of CamVid's 12
classes, one untimed step (the trace), then the median of `train_steps` steps. Predict:
a (1, 360, 480, 3) frame padded to the network's stride (384x480; 384x512 for DDRNet's
64), a compiled forward pass (TensorFlow: a tf.function; elsewhere Keras' predict_on_batch),
median and fastest of `frames` after two untimed. GFLOPs (kseg.bench.flops, a multiply-add
is 2) at the padded size.
"""

import time

import numpy as np

FRAME = (360, 480)
COLUMNS = ["network", "frame", "parameters (M)", "GFLOPs", "train patches/s", "predict ms", "frames/s"]


def _times(fn, count, warm):
    times = []
    for _ in range(count + warm):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[warm:]


def measure(name, train_steps=2, frames=5, batch=16, patch=128):
    """One row: {"name", "params", "frame", "gflops"[, "predict_ms", "predict_ms_min"]
    [, "train_patches_s"]}; `frames=0` stops after the sizes, `train_steps=0` after predict."""
    import keras

    from kseg import registry
    from kseg.bench.flops import forward_flops
    from kseg.data.dataset_spec import CAMVID
    from kseg.training.config import FitConfig
    from kseg.training.loop import build_model

    stride = registry.get_entry(name).stride
    h, w = (-(-side // stride) * stride for side in FRAME)
    model = registry.create_model(name, num_classes=CAMVID.num_classes)
    row = {"name": name, "params": int(model.count_params()), "frame": [h, w],
           "gflops": forward_flops(model, (h, w, 3)) / 1e9}
    if not frames:
        return row
    x = np.random.default_rng(0).uniform(0, 255, (1, h, w, 3)).astype("float32")
    times = _times(predict_call(model, x), frames, warm=2)
    row["predict_ms"], row["predict_ms_min"] = 1000 * float(np.median(times)), 1000 * float(np.min(times))
    if not train_steps:
        return row
    tensorflow = keras.backend.backend() == "tensorflow"  # elsewhere jit=False would run JAX eagerly
    cfg = FitConfig(arch=name, precision="float32", jit=False if tensorflow else None, patch=patch,
                    batch_size=batch).validate()
    model = build_model(cfg, CAMVID)  # compiled as `kseg fit` compiles it
    rng = np.random.default_rng(1)
    xb = rng.uniform(0, 255, (batch, patch, patch, 3)).astype("float32")
    yb = rng.integers(0, CAMVID.num_classes, (batch, patch, patch)).astype("uint8")
    row["train_patches_s"] = batch / float(np.median(_times(lambda: model.train_on_batch(xb, yb), train_steps,
                                                            warm=1)))
    return row


def predict_call(model, x):
    """A call that predicts `x` and waits for the result: a tf.function on TensorFlow (XLA
    off), Keras' compiled predict function elsewhere (returns numpy, so the device is done)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda: model.predict_on_batch(x)
    import tensorflow as tf

    forward = tf.function(lambda v: model(v, training=False), jit_compile=False)
    tensor = tf.constant(x)
    return lambda: forward(tensor).numpy()


def table_rows(rows):
    """`rows` of `measure` in COLUMNS' order (None where not measured)."""
    out = []
    for r in rows:
        fps = 1000 / r["predict_ms"] if "predict_ms" in r else None
        out.append((r["name"], "x".join(map(str, r["frame"])), r["params"] / 1e6, r["gflops"],
                    r.get("train_patches_s"), r.get("predict_ms"), fps))
    return out
