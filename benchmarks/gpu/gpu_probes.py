"""The in-process checks of `make gpu-check` (benchmarks/gpu/gpu_check.py), one per process:

    KERAS_BACKEND=jax python benchmarks/gpu/gpu_probes.py mixed_float16 '{"arch": "unet", ...}'

Options (JSON): arch, patch, batch, steps, plugins (modules to import first, which
register networks). The process prints one line `GPU_CHECK {...}`: the check's figures,
with "status" ("pass" or "fail") and, when not passed, a "reason".

Each check builds the network with kseg.training.loop.build_model, compiled as `kseg fit`
compiles it (loss, metrics, fused batch norm on TensorFlow, the precision and XLA asked
for), and trains on one random batch of CamVid's classes, void included.
"""

import dataclasses
import importlib
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT_PREFIX = "GPU_CHECK "


def environment(opts):
    """Versions, devices and what `--precision auto` / `--jit auto` pick here."""
    import keras
    import numpy

    import kseg
    from kseg.training import hardware
    from kseg.training.config import FitConfig
    from kseg.training.environment import environment as run_env

    env = run_env()
    chosen = dataclasses.asdict(hardware.choose(FitConfig(arch="unet")))
    gpus = hardware.gpus()
    return {"status": "pass", "backend": keras.backend.backend(), "backend_version": env["backend_version"],
            "keras": keras.__version__, "numpy": numpy.__version__, "python": env["python"],
            "kseg": kseg.__version__, "kseg_path": str(Path(kseg.__file__).parent), "devices": env["devices"],
            "gpus": [{"name": n, "compute_capability": c} for n, c in gpus], "auto": chosen,
            "cpu": env["cpu"], "platform": env["platform"]}


def mixed_float16(opts):
    """mixed_float16: Keras wraps the optimizer in a LossScaleOptimizer; losses stay finite."""
    import keras

    model, x, y = _compiled(opts, precision="mixed_float16")
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    scale = (lambda: float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale))) if scaled else None
    initial = scale() if scaled else None
    timing = _train(model, x, y, opts["steps"])
    out = {"dtype_policy": model.dtype_policy.name, "loss_scale_optimizer": scaled, **timing}
    if scaled:  # halved after each step whose scaled gradients overflowed (that step is skipped)
        out.update(loss_scale_initial=initial, loss_scale=scale())
    return _verdict(out, [(scaled, "the optimizer is not a LossScaleOptimizer"),
                          (out["finite"], "a loss was not finite"),
                          (out["dtype_policy"] == "mixed_float16", "the policy is not mixed_float16")])


def xla(opts):
    """The train step compiled: TensorFlow with jit_compile=True (its first loss against the
    same step without XLA, from the same weights), JAX as Keras always runs it (jit)."""
    import keras

    backend = keras.backend.backend()
    model, x, y = _compiled(opts, precision="float32", jit=True if backend == "tensorflow" else None)
    weights = model.get_weights()
    timing = _train(model, x, y, opts["steps"])
    out = {"jit_compile": bool(model.jit_compile), **timing}
    checks = [(out["jit_compile"], "the model is not compiled with XLA"),
              (out["finite"], "a loss was not finite")]
    if backend == "tensorflow":
        plain, _, _ = _compiled(opts, precision="float32", jit=False)
        plain.set_weights(weights)
        plain_loss = _step(plain, x, y)
        out["loss_without_xla"] = plain_loss
        out["relative_difference"] = abs(out["losses"][0] - plain_loss) / max(abs(plain_loss), 1e-12)
        # float32 convolutions may run in TF32 on a GPU, and XLA fuses differently: 1e-2, not 1e-5
        checks.append((out["relative_difference"] < 1e-2, "the first loss differs from the step without XLA"))
    return _verdict(out, checks)


def fused_batch_norm(opts):
    """TensorFlow's fused kernel (cuDNN on a GPU) against Keras' own batch norm: one step of
    each from the same weights, at the precision `--precision auto` picks, and their speeds."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kseg.training import hardware
    from kseg.training.config import FitConfig

    precision = hardware.choose(FitConfig(arch=opts["arch"])).precision
    fused, x, y = _compiled(opts, precision=precision)
    plain, _, _ = _compiled(opts, precision=precision, fused_norm=False)
    plain.set_weights(fused.get_weights())
    losses = [_step(m, x, y) for m in (fused, plain)]
    moving = [np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in m.weights
                              if "moving_mean" in v.path] or [np.zeros(0)]) for m in (fused, plain)]
    count = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in _all_layers(fused))
    tol = 1e-3 if precision == "float32" else 3e-2  # bfloat16 keeps 8 bits of mantissa
    out = {"precision": precision, "batch_norm_layers": count, "losses": losses,
           # over the largest moving mean: activations of 0-255 inputs reach the hundreds
           "moving_mean_relative_difference": (float(np.abs(moving[0] - moving[1]).max()
                                                     / max(float(np.abs(moving[1]).max()), 1e-6))
                                               if count else None),
           "gpu": bool(tf.config.list_physical_devices("GPU")),
           "cudnn": tf.sysconfig.get_build_info().get("cudnn_version")}
    steps = max(3, opts["steps"])
    fused_step, plain_step = (_train(m, x, y, steps)["step_seconds"] for m in (fused, plain))
    out["speedup_over_keras_batch_norm"] = plain_step / fused_step if fused_step else None
    rel = abs(losses[0] - losses[1]) / max(abs(losses[1]), 1e-12)
    return _verdict(out, [(count > 0, f"{opts['arch']} has no BatchNormalization layer"),
                          (rel < tol, f"the fused step's loss differs from Keras' by {rel:.2g} (> {tol})"),
                          (count == 0 or out["moving_mean_relative_difference"] < tol,
                           "the moving means differ from Keras'")])


def _compiled(opts, precision, jit=None, fused_norm=True):
    """`(model, x, y)`: ARCH compiled by build_model, a random (B, P, P, 3) batch and labels."""
    import numpy as np

    from kseg.data.dataset_spec import CAMVID
    from kseg.training.config import FitConfig
    from kseg.training.loop import build_model

    cfg = FitConfig(arch=opts["arch"], precision=precision, jit=jit, patch=opts["patch"],
                    batch_size=opts["batch"]).validate()
    model = build_model(cfg, CAMVID, fused_norm=fused_norm)
    rng = np.random.default_rng(0)
    shape = (opts["batch"], opts["patch"], opts["patch"])
    x = rng.uniform(0, 255, (*shape, 3)).astype("float32")
    y = rng.integers(0, CAMVID.num_classes + 1, shape).astype("uint8")  # the last value is void
    return model, x, y


def _train(model, x, y, steps):
    """`steps` train steps on one batch: losses, the first step's seconds (compilation
    included) and the median of the others."""
    losses, seconds = [], []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(_step(model, x, y))
        seconds.append(time.perf_counter() - start)
    rest = seconds[1:] or seconds
    return {"losses": losses, "finite": all(math.isfinite(v) for v in losses),
            "first_step_seconds": seconds[0], "step_seconds": statistics.median(rest),
            "patches_per_second": x.shape[0] / statistics.median(rest)}


def _step(model, x, y):
    """One train step's loss as a Python float, so the device has finished it."""
    return float(model.train_on_batch(x, y, return_dict=True)["loss"])


def _all_layers(layer):
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _all_layers(child)


def _verdict(out, checks):
    failed = [reason for ok, reason in checks if not ok]
    return {"status": "fail" if failed else "pass", "reason": "; ".join(failed) or None, **out}


CHECKS = {"environment": environment, "mixed_float16": mixed_float16, "xla": xla,
          "fused_batch_norm": fused_batch_norm}


def main(argv):
    name, opts = argv[0], {"arch": "unet", "patch": 64, "batch": 8, "steps": 3, "plugins": []}
    opts.update(json.loads(argv[1]) if len(argv) > 1 else {})
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for module in opts["plugins"]:
        importlib.import_module(module)
    try:
        result = CHECKS[name](opts)
    except Exception as exc:  # recorded as the check's failure; the traceback goes to the log
        traceback.print_exc()
        result = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
