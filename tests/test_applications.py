"""keras.applications backbones under kseg's decoders: ImageNet weights through Keras' own
cache with no network, local weights files, --channels, the tap table, the names.

Each backbone is built with weights=None and random batch-norm statistics, its weights
written as the file Keras caches (the legacy .h5 layout keras.applications downloads, by
its own file name), found by keras.utils.get_file in a temporary cache, and kseg's
encoder features compared with keras.applications' own model on its own preprocessing.
"""

import json

import h5py
import keras
import numpy as np
import pytest

import kseg
from kseg import registry
from kseg.errors import KsegError
from kseg.models.applications import DECODERS
from kseg.models.backbones import BACKBONES, STRIDES

# The files keras.applications asks keras.utils.get_file for (include_top=False).
KERAS_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet101": "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet101v2": "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnetv2b0": "efficientnetv2-b0_notop.h5",
    "efficientnetv2b1": "efficientnetv2-b1_notop.h5",
    "efficientnetv2b2": "efficientnetv2-b2_notop.h5",
    "efficientnetv2b3": "efficientnetv2-b3_notop.h5",
    "efficientnetv2s": "efficientnetv2-s_notop.h5",
    "mobilenetv3small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "mobilenetv3large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "convnext_tiny": "convnext_tiny_notop.h5",
    "convnext_small": "convnext_small_notop.h5",
}
# keras.applications' preprocess_input for the families without include_preprocessing;
# the others' reference models keep their own preprocessing layers.
KERAS_PREPROCESS = {
    "resnet50": keras.applications.resnet.preprocess_input,  # caffe: RGB -> BGR, minus the mean
    "resnet101": keras.applications.resnet.preprocess_input,
    "resnet50v2": keras.applications.resnet_v2.preprocess_input,
    "resnet101v2": keras.applications.resnet_v2.preprocess_input,
}
BIG = ("resnet101", "resnet101v2", "efficientnetv2b3", "efficientnetv2s", "convnext_small")
SIDE = 64


def keras_reference(backbone, channels=3, seed=0):
    """keras.applications' backbone with its own preprocessing, random non-trivial weights."""
    build = getattr(keras.applications, BACKBONES[backbone].constructor)
    model = build(include_top=False, weights=None, input_shape=(None, None, channels))
    rng = np.random.default_rng(seed)
    for w in model.weights:  # scales below 1: deep random networks stay far from overflow
        if w.path.endswith("gamma"):
            w.assign(rng.uniform(0.3, 0.8, w.shape).astype("float32"))
        elif w.path.endswith("moving_variance"):
            w.assign(rng.uniform(1.0, 2.0, w.shape).astype("float32"))
        elif w.path.endswith(("beta", "moving_mean", "bias")):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    return model


def write_keras_h5(model, path):
    """`model`'s weights in the legacy .h5 layout of keras.applications' downloads: a
    group per layer with weights, in model order, read back by order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", keras.__version__.encode()
        for layer in layers:
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/w{i}".encode() for i in range(len(weights))]
            group = f.create_group(layer.name)
            group.attrs["weight_names"] = names
            for name, w in zip(names, weights, strict=True):
                group.create_dataset(name.decode(), data=np.asarray(w))  # at group/layer/wi
    return path


def encoder_features(model, x):
    """The `encoder` model's features of a kseg network on [0, 255] images x."""
    return [np.asarray(f) for f in model.get_layer("encoder")(model.get_layer("preprocess")(x))]


def reference_features(reference, backbone, x):
    from kseg.models.encoder import tap_outputs

    taps = keras.Model(reference.input, tap_outputs(reference, backbone))
    return [np.asarray(f) for f in taps(KERAS_PREPROCESS.get(backbone, lambda v: v)(x.copy()))]


def pixels(channels=3, seed=1, side=SIDE):
    return np.random.default_rng(seed).uniform(0, 255, (1, side, side, channels)).astype("float32")


@pytest.mark.parametrize("backbone", [pytest.param(b, marks=pytest.mark.slow) if b in BIG else b
                                      for b in BACKBONES])
def test_imagenet_weights_come_from_keras_cache_and_give_keras_features(keras_cache, backbone):
    reference = keras_reference(backbone)
    write_keras_h5(reference, keras_cache.models / KERAS_FILES[backbone])
    decoder = list(DECODERS)[list(BACKBONES).index(backbone) % len(DECODERS)]
    model = kseg.create_model(f"{decoder}-{backbone}", num_classes=3, encoder_weights="imagenet")
    assert keras_cache.asked == [(KERAS_FILES[backbone], "models")]  # Keras' lookup, by its name
    x = pixels()
    got, want = encoder_features(model, x), reference_features(reference, backbone, x)
    taps = [s for s, t in zip(STRIDES, BACKBONES[backbone].taps, strict=True) if t is not None]
    assert [SIDE // g.shape[1] for g in got] == taps  # the table's strides
    for g, w in zip(got, want, strict=True):
        assert np.abs(w).mean() > 1e-3
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * np.abs(w).max())


def test_imagenet_offline_without_the_cached_file_is_one_line(keras_cache):
    with pytest.raises(KsegError, match=r"mobilenetv3small: Keras could not get its ImageNet weights .*"
                                        r"~/\.keras/models") as info:
        kseg.create_model("unet-mobilenetv3small", encoder_weights="imagenet")
    assert "\n" not in str(info.value)
    assert keras_cache.asked == [(KERAS_FILES["mobilenetv3small"], "models")]


@pytest.mark.parametrize("backbone, channels",
                         [("resnet50", 1), ("efficientnetv2b0", 1), ("mobilenetv3small", 6)])
def test_a_local_file_and_other_channel_counts(tmp_path, backbone, channels):
    """Grey: the RGB network on the grey image repeated, away from the zero-padded border
    (the normalisation's offset folded into the stem's bias or batch norm, kseg.models.adapt).
    Six channels R, G, B, R, G, B: kernels halved, so [x, x] is the RGB network on x."""
    path = write_keras_h5(keras_reference(backbone), tmp_path / "my_weights.h5")
    name = f"fpn-{backbone}"
    rgb = kseg.create_model(name, num_classes=3, encoder_weights=str(path))
    other = kseg.create_model(name, num_classes=3, encoder_weights=str(path),
                              input_shape=(None, None, channels))
    x = pixels(channels=1 if channels == 1 else 3)
    rgb_x, other_x = (np.repeat(x, 3, -1), x) if channels == 1 else (x, np.concatenate([x, x], -1))
    want, got = encoder_features(rgb, rgb_x), encoder_features(other, other_x)
    assert np.abs(want[0]).mean() > 1e-3
    if channels == 1:  # the stride-2 feature, 2 px in from the border
        np.testing.assert_allclose(got[0][:, 2:-2, 2:-2], want[0][:, 2:-2, 2:-2], rtol=1e-3,
                                   atol=1e-3 * np.abs(want[0]).max())
    else:
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * np.abs(w).max())


def test_bad_weights_are_one_line_errors(tmp_path):
    with pytest.raises(KsegError, match=r"mobilenetv3small weights file .*missing\.h5' not found"):
        kseg.create_model("fpn-mobilenetv3small", encoder_weights=str(tmp_path / "missing.h5"))
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w"):
        pass
    with pytest.raises(KsegError, match=r"empty\.h5: not keras\.applications\.MobileNetV3Small"
                                        r"\(include_top=False\) weights"):
        kseg.create_model("fpn-mobilenetv3small", encoder_weights=str(empty))
    with pytest.raises(KsegError, match=r"fpn-mobilenetv3small: unexpected arguments \['filters'\]; "
                                        r"it takes pyramid_filters"):
        kseg.create_model("fpn-mobilenetv3small", filters=3)


def test_kseg_lists_every_pair_and_the_real_time_networks():
    builtin = [n for n in kseg.list_models() if registry.get_entry(n).source == "builtin"]
    pairs = {f"{d}-{b}" for d in ("unet", "fpn", "deeplabv3plus") for b in BACKBONES}
    assert pairs <= set(builtin) and len(pairs) == 39
    assert {"lraspp-mobilenetv3large", "lraspp-mobilenetv3small", "ddrnet23slim"} <= set(builtin)
    assert registry.get_entry("unet-convnext_tiny").description == \
        "U-Net, keras.applications ConvNeXtTiny encoder"
    assert registry.get_entry("ddrnet23slim").stride == 64
    # `kseg fit --all` and a bare `kseg bench` take the networks outside the family.
    core = registry.core_models()
    assert not pairs & set(core) and {"unet", "deeplabv3plus", "ddrnet23slim"} <= set(core)


def test_kseg_models_lists_the_pairs_and_counts_them_when_named():
    from click.testing import CliRunner

    from kseg.cli import main

    listed = json.loads(CliRunner().invoke(main, ["models", "--json", "--no-params"]).output)["models"]
    assert {m["name"] for m in listed} >= {f"fpn-{b}" for b in BACKBONES}
    named = json.loads(CliRunner().invoke(main, ["models", "fpn-mobilenetv3*", "--json"]).output)["models"]
    assert [(m["name"], m["params"] > 1e6) for m in named] == [("fpn-mobilenetv3large", True),
                                                               ("fpn-mobilenetv3small", True)]


def test_kseg_fit_settings_take_imagenet_weights_through_the_cache(keras_cache):
    """The FitConfig that `kseg fit fpn-mobilenetv3small --encoder-weights imagenet --channels 1`
    resolves to builds the network with Keras' weights, the stem adapted to grey."""
    from kseg.data.dataset_spec import CAMVID
    from kseg.training import checkpoints
    from kseg.training.recipes import resolve

    reference = keras_reference("mobilenetv3small")
    write_keras_h5(reference, keras_cache.models / KERAS_FILES["mobilenetv3small"])
    cfg, _ = resolve("fpn-mobilenetv3small", encoder_weights="imagenet", channels=1)
    model = checkpoints.create(cfg, CAMVID)
    encoder = model.get_layer("encoder")
    assert model.input_shape == (None, None, None, 1) and encoder.get_layer("conv").kernel.shape[2] == 1
    stem = reference.get_layer("conv").kernel  # (3, 3, 3, 16); x/127.5 - 1 for every channel: summed
    grey = np.asarray(stem).sum(2, keepdims=True)
    np.testing.assert_allclose(np.asarray(encoder.get_layer("conv").kernel), grey, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(encoder.get_layer("conv_bn").moving_mean),
                                  np.asarray(reference.get_layer("conv_bn").moving_mean))


def test_encoder_batch_norm_settles_within_a_few_hundred_steps():
    # keras.applications' MobileNetV3 keeps moving statistics with momentum 0.999: from
    # scratch, validation would read almost the initial (0, 1) for epochs.
    from kseg.models.encoder import BN_MOMENTUM, build_encoder

    encoder, _ = build_encoder("mobilenetv3small")
    norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum <= BN_MOMENTUM for layer in norms)
    assert all(layer.get_config()["momentum"] <= BN_MOMENTUM for layer in norms)  # saved so
