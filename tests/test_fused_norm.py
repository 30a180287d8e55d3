"""kseg.training.fused_norm: TensorFlow's fused batch norm gives Keras' numbers, and saves as Keras'."""

import json
import zipfile

import keras
import numpy as np
import pytest

from kseg.training.fused_norm import fuse_batch_norms

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the fused kernel is TensorFlow's; other backends keep Keras' ops")


def conv_bn(seed=0, **bn):
    """(2, 3, 5, 4) -> conv -> BatchNormalization(**bn), with weights fixed by `seed`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3, 5, 4))
    x = keras.layers.Conv2D(6, 3, padding="same")(inputs)
    outputs = keras.layers.BatchNormalization(momentum=0.9, **bn)(x)
    model = keras.Model(inputs, outputs)
    bn_layer = model.layers[-1]
    rng = np.random.default_rng(seed)
    channels = bn_layer.gamma.shape[0]  # 6, or 3 with axis=1
    bn_layer.gamma.assign(rng.uniform(0.5, 2, channels))
    bn_layer.beta.assign(rng.normal(size=channels))
    return model


def step(model, x):
    """Training-mode output, gradients of a weighted sum and the moving statistics after."""
    import tensorflow as tf

    # A weight per output value: with one per channel, every gradient but beta's would be
    # ~0 (a normalised channel's sum does not depend on its input).
    weights = tf.constant(np.random.default_rng(1).normal(size=(*x.shape[:3], 6)), tf.float32)
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
    grads = tape.gradient(loss, model.trainable_weights)
    bn = model.layers[-1]
    return [y.numpy(), *[g.numpy() for g in grads], bn.moving_mean.numpy(), bn.moving_variance.numpy()]


def test_fused_training_step_matches_keras_outputs_gradients_and_moving_stats():
    x = np.random.default_rng(2).normal(3, 2, (2, 3, 5, 4)).astype("float32")
    keras_model, fused_model = conv_bn(), conv_bn()
    assert fuse_batch_norms(fused_model) == 1
    # 30 values a channel: a moving variance without Bessel's correction undone is 3 % off.
    for want, got in zip(step(keras_model, x), step(fused_model, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    inference = fused_model(x, training=False).numpy()
    np.testing.assert_allclose(inference, keras_model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_fused_training_step_in_mixed_bfloat16_stays_close():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        x = np.random.default_rng(3).normal(size=(2, 3, 5, 4)).astype("float32")
        keras_model, fused_model = conv_bn(), conv_bn()
        fuse_batch_norms(fused_model)
        want, got = step(keras_model, x), step(fused_model, x)
    finally:
        keras.config.set_dtype_policy("float32")
    assert got[0].dtype == want[0].dtype  # bfloat16, as the layer's compute dtype
    np.testing.assert_allclose(got[0].astype("float32"), want[0].astype("float32"), atol=0.05)
    # Gradients of the conv kernel, gamma and beta (the conv bias's is ~0 through the norm).
    for i in (1, 3, 4):
        assert np.linalg.norm(got[i] - want[i]) < 0.02 * np.linalg.norm(want[i]), i


RENORM = "renorm" in keras.layers.BatchNormalization.__init__.__code__.co_varnames  # Keras 3.14+
NO_RENORM = pytest.mark.skipif(not RENORM, reason="no renorm before Keras 3.14")


@pytest.mark.parametrize("bn", [pytest.param({"renorm": True}, marks=NO_RENORM), {"synchronized": True}])
def test_layers_the_kernel_cannot_serve_keep_keras_call(bn):
    model = conv_bn(**bn)
    assert fuse_batch_norms(model) == 0


def test_fusing_twice_wraps_once_and_channels_first_falls_back():
    model = conv_bn(axis=1)
    assert fuse_batch_norms(model) == 1 and fuse_batch_norms(model) == 0
    x = np.random.default_rng(4).normal(size=(2, 3, 5, 4)).astype("float32")
    np.testing.assert_allclose(step(model, x)[0], step(conv_bn(axis=1), x)[0], rtol=1e-5, atol=1e-5)


def test_a_fused_model_saves_as_plain_keras_and_loads_without_custom_objects(tmp_path):
    model = conv_bn()
    fuse_batch_norms(model)
    x = np.random.default_rng(5).normal(size=(2, 3, 5, 4)).astype("float32")
    step(model, x)  # moving statistics updated by the fused path
    path = tmp_path / "fused.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    bn = config["config"]["layers"][-1]
    assert (bn["module"], bn["class_name"]) == ("keras.layers", "BatchNormalization")
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert not hasattr(loaded.layers[-1].call, "func")  # a fresh load runs Keras' own call
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-6)


def test_build_model_trains_batch_norm_fused_unless_told_not_to():
    from kseg.data.dataset_spec import DatasetSpec
    from kseg.training import hardware
    from kseg.training.config import FitConfig
    from kseg.training.fused_norm import _layers
    from kseg.training.loop import build_model

    spec = DatasetSpec("tiny", ("road", "car", "sky"), (), void=3)
    cfg = FitConfig(arch="unet", patch=32)
    chosen = hardware.choose(cfg)

    def batch_norms(model):
        return [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]

    fused = batch_norms(build_model(cfg, spec, hardware=chosen))
    plain = batch_norms(build_model(cfg, spec, fused_norm=False, hardware=chosen))
    assert len(fused) == len(plain) > 30  # ResNet-34 encoder and decoder
    assert all(hasattr(layer.call, "func") for layer in fused)
    assert not any(hasattr(layer.call, "func") for layer in plain)


@pytest.mark.parametrize("fused_norm", [True, False])
def test_bench_times_the_step_fit_trains(monkeypatch, fused_norm):
    """`kseg bench`'s network task fuses batch norm as `kseg fit` does, unless told not to."""
    import kseg_tiny

    from kseg.bench import worker
    from kseg.training import fused_norm as module

    seen = []
    monkeypatch.setattr(module, "fuse_batch_norms", lambda model: seen.append(model.name))
    result = worker.network(kseg_tiny.NAME, patch=16, batch_size=2, steps=1, frames=False,
                            fused_norm=fused_norm, ceiling_shape=(1, 8, 8, 8))
    assert seen == ([kseg_tiny.NAME] if fused_norm else [])
    assert result["train_patches_per_s"] > 0
