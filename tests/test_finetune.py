"""--freeze-encoder-epochs and --encoder-lr-mult (kseg.training.finetune): the encoder's
weights stay as loaded while frozen, then step at a fraction of the decoder's rate."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.training import finetune
from kseg.training.config import FitConfig


def tiny_network(seed=0):
    """A nested `encoder` model (as kseg.models.encoder builds) and a 1x1 head."""
    keras.utils.set_random_seed(seed)
    inner = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="enc_conv")(inner)
    encoder = keras.Model(inner, features, name="encoder")
    image = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="dec_conv")(encoder(image))
    return keras.Model(image, keras.layers.Conv2D(3, 1, name="segmentation_output")(x))


def compiled(cfg, seed=0):
    model = tiny_network(seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    finetune.scale_encoder_steps(model, cfg)
    return model


def settings(freeze=0, mult=1.0):
    return SimpleNamespace(freeze_encoder_epochs=freeze, encoder_lr_mult=mult, distribute=False)


DATA = (np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32"),
        np.random.default_rng(1).integers(0, 3, (4, 8, 8)))


def kernels(model):
    return {name: np.asarray(model.get_layer(name).kernel).copy() if name != "enc_conv"
            else np.asarray(model.get_layer("encoder").get_layer(name).kernel).copy()
            for name in ("enc_conv", "dec_conv")}


def test_frozen_epochs_keep_the_encoder_then_it_trains():
    cfg = settings(freeze=1, mult=1.0)
    model = compiled(cfg)
    start = kernels(model)
    marks = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(kernels(model))

    model.fit(*DATA, batch_size=2, epochs=2, verbose=0, shuffle=False,
              callbacks=[*finetune.callbacks(model, cfg), Snapshot()])
    after_frozen, after_thaw = marks
    np.testing.assert_array_equal(after_frozen["enc_conv"], start["enc_conv"])  # 2 steps, not a bit moved
    assert not np.array_equal(after_frozen["dec_conv"], start["dec_conv"])
    assert not np.array_equal(after_thaw["enc_conv"], start["enc_conv"])


def test_the_encoder_steps_at_the_multiplier_times_the_rate():
    """Adam's first step is lr * sign-like g / (|g| + eps): one step at 0.1 moves the encoder
    a tenth as far as at 1, the decoder as far."""
    steps = {}
    for mult in (1.0, 0.1):
        cfg = settings(mult=mult)
        model = compiled(cfg)
        before = kernels(model)
        model.train_on_batch(*DATA)
        steps[mult] = {k: kernels(model)[k] - before[k] for k in before}
    np.testing.assert_allclose(steps[0.1]["enc_conv"], 0.1 * steps[1.0]["enc_conv"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(steps[0.1]["dec_conv"], steps[1.0]["dec_conv"], rtol=1e-5, atol=1e-7)
    assert np.abs(steps[1.0]["enc_conv"]).max() > 1e-3


def test_a_network_without_encoder_and_bad_values_are_one_line_errors():
    image = keras.Input((None, None, 3))
    flat = keras.Model(image, keras.layers.Conv2D(3, 1, name="segmentation_output")(image), name="flat")
    flat.compile(optimizer="adam", loss="mse")
    with pytest.raises(KsegError, match="flat has no pretrained-style encoder"):
        finetune.scale_encoder_steps(flat, settings(freeze=2))
    for kwargs, message in (({"freeze_encoder_epochs": -1}, r"--freeze-encoder-epochs must be in \[0, "),
                            ({"encoder_lr_mult": 0.0}, r"--encoder-lr-mult must be in \(0, inf\]")):
        with pytest.raises(KsegError, match=message):
            FitConfig(arch="unet", **kwargs).validate()
    cfg = FitConfig(arch="unet-resnet50", encoder_weights="imagenet").validate()  # not a file: no check
    assert cfg.encoder_weights == "imagenet"


def test_build_model_wires_the_controls_into_a_keras_applications_network():
    from kseg.data.dataset_spec import CAMVID
    from kseg.training.loop import build_model

    cfg = FitConfig(arch="fpn-mobilenetv3small", freeze_encoder_epochs=2, encoder_lr_mult=0.1,
                    precision="float32").validate()
    model = build_model(cfg, CAMVID, fused_norm=False)
    (rate,) = finetune.callbacks(model, cfg)
    assert float(rate.rate.numpy()) == 0.0
    rate.on_epoch_begin(2)
    assert float(rate.rate.numpy()) == pytest.approx(0.1)
    plain = build_model(FitConfig(arch="fpn-mobilenetv3small", precision="float32").validate(), CAMVID,
                        fused_norm=False)
    assert finetune.callbacks(plain, cfg) == []
