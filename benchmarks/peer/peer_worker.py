"""The peer's rounds of `make bench-peer`, run by the peer's own venv:
`.venv-peer/bin/python benchmarks/peer/peer_worker.py TASK_JSON`.

The peer is segmentation_models 1.0.1's `Unet("resnet34", encoder_weights=None)` on
Keras 2 (tf-keras, SM_FRAMEWORK=tf.keras), the library the study used. It cannot share
a process with kseg (Keras 3), so this script is standalone: it imports no kseg module
through the package (that would import Keras 3 models), only kseg/bench/timing.py by
its path, for the one timing loop and the ceiling convolution every kseg figure uses.
It prints one result line in kseg.bench.worker's format.
"""

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

RESULT_PREFIX = "KSEG_BENCH_RESULT "  # = kseg.bench.worker.RESULT_PREFIX
TIMING = Path(__file__).resolve().parents[2] / "kseg" / "bench" / "timing.py"


def _timing():
    """kseg/bench/timing.py as a module, loaded by path (it imports only numpy and stdlib)."""
    spec = importlib.util.spec_from_file_location("kseg_bench_timing", TIMING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_peer(num_classes=12, precision="float32"):
    """segmentation_models' U-Net, ResNet-34 encoder from scratch, softmax over `num_classes`."""
    import tensorflow as tf

    tf.keras.mixed_precision.set_global_policy(precision)
    import segmentation_models as sm

    model = sm.Unet("resnet34", encoder_weights=None, classes=num_classes, activation="softmax",
                    input_shape=(None, None, 3))
    # Integer labels, as kseg trains on: sparse cross-entropy equals categorical
    # cross-entropy on one-hot labels without building the (B, H, W, K) one-hot tensor.
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def peer(patch=128, batch_size=16, steps=5, num_classes=12, precision="float32", ceiling_shape=None):
    """Train and predict patches/s of the peer, each step paired with a ceiling step.

    `*_per_ceiling` is the median over pairs of (ceiling step seconds / peer step
    seconds): the speed in units of this process's own ceiling convolution, which
    a load on the machine slows about as much as the peer's step.
    """
    timing = _timing()
    model = build_peer(num_classes, precision)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, patch, patch, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, (batch_size, patch, patch)).astype(np.uint8)  # (B, p, p)
    ceiling, _ = timing.ceiling_step(tuple(ceiling_shape or timing.CEILING_SHAPE))
    timing.median_seconds(ceiling, 1, warmup=1)  # compile it before the timed pairs
    # paired_ratio with FLOPs 1 and 1 gives the median of ceiling_s / step_s.
    train_s, train_pc = timing.paired_ratio(lambda: model.train_on_batch(x, y), 1, ceiling, 1, steps)
    predict_s, predict_pc = timing.paired_ratio(lambda: model.predict_on_batch(x), 1, ceiling, 1, steps)
    return {"arch": "segmentation_models Unet resnet34", "params": int(model.count_params()),
            "patch": patch, "batch_size": batch_size, "steps": steps, "precision": precision,
            "num_classes": num_classes, "train_patches_per_s": batch_size / train_s,
            "predict_patches_per_s": batch_size / predict_s, "train_per_ceiling": train_pc,
            "predict_per_ceiling": predict_pc, "versions": versions(),
            "peak_rss_mb": timing.peak_rss_mb()}


def versions():
    """Versions of what the peer's speed depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("tensorflow", "tf-keras", "segmentation-models", "image-classifiers", "efficientnet",
                 "keras-applications", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None):
    """One JSON task in argv (peer()'s keyword arguments), one JSON result line on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    # Before TensorFlow is imported: tf.keras is Keras 2 (tf-keras), and segmentation_models
    # builds on it rather than on the standalone `keras` package (Keras 3 in this venv).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
    result = peer(**json.loads(argv[0]))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
