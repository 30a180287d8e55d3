"""The Keras backends besides TensorFlow: PyTorch and JAX train kseg's networks.

Keras fixes its backend when it is first imported, so each backend runs in a fresh
process (the `run_python` fixture) with KERAS_BACKEND set: one process per backend does
all of this file's work on it, since each pays about 10 s of CPU importing Keras and
TensorFlow before it starts. A backend that is not installed skips with the command that
installs it. Sizes are tiny: 64x64 inputs,
narrow decoders (the encoders are the real ResNet-34 and Xception), 2 images.
"""

import importlib.util
import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from networks import registry_names

BACKENDS = ("torch", "jax")
INSTALL = {
    "torch": "`make torch`, or `pip install torch==2.13.0` where its CPU wheel is on disk",
    "jax": "`pip install -e '.[jax]'` (`make install` does)",
}
# JAX on the CPU only; XLA's cheapest optimisation level: these steps run once each,
# so compile time, not run time, is what costs (as in tests/test_models.py).
ENV = {
    "torch": {},
    "jax": {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_backend_optimization_level=0"},
}

# The networks each backend trains one step. The encoders are the real ResNet-34 and
# Xception; decoders are narrow. JAX compiles every train step (7-14 s of CPU each), so it
# leaves out deeplabv3plus (deeplabv3's backbone and ASPP plus a decoder of plain convs).
# K = 3 classes; "ce+dice" with class weights, "ce+lovasz" with and without.
UNET = ("unet", "ce+lovasz", None, {"decoder_filters": (16, 8, 8, 8, 8)})
DEEPLABV3 = ("deeplabv3", "ce+dice", [1.0, 2.0, 0.5], {"aspp_filters": 16})
DEEPLABV3PLUS = ("deeplabv3plus", "ce+lovasz", [1.0, 2.0, 0.5],
                 {"aspp_filters": 16, "low_level_filters": 8, "decoder_filters": 16})
# Every other registered network gets one jitted forward pass, at its default width.
CASES = {"torch": [UNET, DEEPLABV3, DEEPLABV3PLUS], "jax": [UNET, DEEPLABV3]}
# The loss of the step against the loss function called eagerly on the same forward pass:
# on torch only, where eager is cheap; eager JAX compiles every op (8 s for U-Net), and
# tests/test_losses.py checks the losses' values and gradients on JAX.
EAGER_LOSS_CHECK = {"torch": True, "jax": False}

# Each network compiled by kseg.training.loop.build_model as `kseg fit` compiles it (loss,
# class weights, the three training metrics, the precision and jit that hardware.choose
# picks on this machine), a jitted forward pass, then one train step. Label K is void.
STEP = """
import json
import numpy as np, keras
from kseg.data.dataset_spec import DatasetSpec
from kseg.losses import build_loss
from kseg.training import hardware
from kseg.training.config import FitConfig
from kseg.training.loop import build_model

K, S = 3, 64
spec = DatasetSpec("tiny", ("road", "car", "sky"), (), void=K)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (2, S, S, 3)).astype("float32")
y = rng.integers(0, K + 1, (2, S, S)).astype("uint8")  # about a quarter void
numpy = keras.ops.convert_to_numpy
out = {"backend": keras.backend.backend()}
for i, (arch, loss, weights, kwargs) in enumerate(CASES):
    cfg = FitConfig(arch=arch, loss=loss, model_kwargs=kwargs)
    model = build_model(cfg, spec, class_weights=weights, hardware=hardware.choose(cfg))
    logits = model.predict(x, verbose=0)  # (2, S, S, K)
    expected = None
    if CHECK_LOSS and i == 0:  # on the training-mode forward pass of the step, before it updates
        expected = float(numpy(build_loss(loss, K, K, weights)(y, model(x, training=True))))
    before = [numpy(v).copy() for v in model.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    still = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(numpy(v), b)]
    out[arch] = {"shape": list(logits.shape), "dtype": str(logits.dtype),
                 "finite": bool(np.isfinite(logits).all()),
                 "logs": {k: float(v) for k, v in logs.items()}, "expected": expected, "still": still}
import kseg

out["forward"] = {}
trained = [arch for arch, *_ in CASES]
# The installed networks (entry points) that tests/networks.py picks (one pair per backbone family).
for name in [n for n in kseg.list_models() if n in FORWARD and n not in trained]:
    logits = kseg.create_model(name, num_classes=K).predict(np.full((1, S, S, 3), 128, "float32"), verbose=0)
    out["forward"][name] = {"shape": list(logits.shape), "dtype": str(logits.dtype),
                            "finite": bool(np.isfinite(logits).all()), "std": float(logits.std())}
"""

# `kseg fit` through the CLI on the tiny test network, then best.keras loaded back on the
# same backend; its predictions go to a file for TensorFlow to compare.
FIT = """
import numpy as np, keras
import kseg_tiny
from kseg.cli.main import main

args = ["fit", kseg_tiny.NAME, "--data", {data!r}, "--runs", {runs!r}, "--patch", "32",
        "--grid", "2x2", "--batch-size", "2", "--epochs", "1", "--loss", "ce+lovasz",
        "--class-weights", "--precision", "float32"]
main.main(args, prog_name="kseg", standalone_mode=False)
model = keras.saving.load_model({best!r}, compile=False)
x = np.load({x!r})
np.save({y!r}, keras.ops.convert_to_numpy(model.predict(x, verbose=0)))
print(json.dumps(out))
"""


def _require(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here; install it with {INSTALL[backend]}")


@pytest.fixture(scope="module", params=BACKENDS)
def on_backend(request, data_dir, tmp_path_factory, run_python):
    """STEP, then FIT, in one process on the backend: a namespace of the backend, STEP's
    output, FIT's RunDir, the input x FIT's best.keras predicted on and the file of its logits."""
    from kseg.runs import RunDir

    backend = request.param
    _require(backend)
    tmp = tmp_path_factory.mktemp(backend)
    got = SimpleNamespace(backend=backend, run=RunDir(tmp / "runs" / "tiny_test"), y_path=tmp / "y.npy",
                          x=np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32"))
    np.save(tmp / "x.npy", got.x)
    fit = FIT.format(data=str(data_dir), runs=str(tmp / "runs"), best=str(got.run.best_path),
                     x=str(tmp / "x.npy"), y=str(got.y_path))
    code = (f"CASES = {CASES[backend]!r}\nCHECK_LOSS = {EAGER_LOSS_CHECK[backend]}\n"
            f"FORWARD = {registry_names()!r}\n{STEP}\n{fit}")
    stdout = run_python(code, backend=backend, env=ENV[backend], timeout=600)
    got.out = json.loads(stdout.strip().splitlines()[-1])
    return got


@pytest.mark.slow
def test_networks_forward_and_train_step(on_backend):
    backend, out = on_backend.backend, on_backend.out
    assert out["backend"] == backend
    for arch, *_ in CASES[backend]:
        got = out[arch]
        assert got["shape"] == [2, 64, 64, 3] and got["dtype"] == "float32" and got["finite"], arch
        logs = got["logs"]
        assert set(logs) == {"loss", "accuracy", "miou", "soft_dice"}, arch
        assert math.isfinite(logs["loss"]) and logs["loss"] > 0, arch
        assert all(0 <= logs[m] <= 1 for m in ("accuracy", "miou", "soft_dice")), arch
        # Adam moved every trainable variable but the off-centre taps of ASPP's atrous convs,
        # which see only padding on the 4x4 grid of a 64x64 input (rates 6, 12, 18), on
        # TensorFlow too: their gradient is exactly 0.
        assert all(re.fullmatch(r"aspp_atrous\d_tap(?!11)\d\d_conv/kernel", p) for p in got["still"]), arch
    if EAGER_LOSS_CHECK[backend]:
        # The step minimised kseg's loss, not a backend default: the same value as the
        # loss function on the same forward pass.
        first = out[CASES[backend][0][0]]
        assert first["logs"]["loss"] == pytest.approx(first["expected"], rel=1e-5)


@pytest.mark.slow
def test_every_registered_network_runs_forward(on_backend):
    """The networks not trained above, at their default width: float32 logits that vary.
    The process sees the installed networks (entry points), not ones this process registered."""
    backend, out = on_backend.backend, on_backend.out
    trained = {arch for arch, *_ in CASES[backend]}
    assert trained | set(out["forward"]) >= {"unet", "deeplabv3", "deeplabv3plus"}
    for name, got in out["forward"].items():
        assert got["shape"] == [1, 64, 64, 3] and got["dtype"] == "float32", name
        assert got["finite"] and got["std"] > 0, name


@pytest.mark.slow
def test_cli_fit_and_keras_file_work_across_backends(on_backend):
    import keras

    backend, run, x = on_backend.backend, on_backend.run, on_backend.x
    env = json.loads(run.env_path.read_text())
    assert env["backend"] == backend and env["chosen"]["precision"] == "float32"
    rows = run.history_path.read_text().splitlines()
    assert len(rows) == 2  # header + epoch 1
    assert all(math.isfinite(float(v)) for v in rows[1].split(",")[1:])
    # The .keras file written on `backend` predicts the same on TensorFlow (this process).
    model = keras.saving.load_model(run.best_path, compile=False)
    expected = np.load(on_backend.y_path)
    assert expected.shape == (1, 32, 32, 11)  # logits of the synthetic scenes' 11 CamVid classes
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), expected, rtol=1e-4, atol=1e-4)
