"""The built-in networks: shapes, dtypes, parameter counts, saving, Xception weights.

Their forward passes and train steps on JAX and PyTorch are in tests/test_backends.py.
"""

import keras
import numpy as np
import pytest
from networks import registry_names, train_step_names

import kseg
from kseg.errors import KsegError
from kseg.models.unet import resnet34_encoder
from kseg.models.xception import backbone_layers, load_xception_weights, xception

NUM_CLASSES = 5
SIDE = 64  # smallest comfortable multiple of 32: deepest features are 2x2


@pytest.fixture(scope="module")
def built():
    """One logits model per registered name, built lazily and shared by the tests."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = kseg.create_model(name, num_classes=NUM_CLASSES)
        return cache[name]

    return get


def image_batch(seed=0, height=SIDE, width=SIDE):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype("float32")


@pytest.mark.parametrize("name", registry_names())
def test_forward_shape_dtype_and_names(built, name):
    model = built(name)
    logits = np.asarray(model(image_batch(), training=False))
    assert logits.shape == (1, SIDE, SIDE, NUM_CLASSES)
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    assert model.name == name
    assert model.get_layer("preprocess").__class__.__name__ == "Rescaling"
    assert model.get_layer("segmentation_output").filters == NUM_CLASSES


@pytest.mark.parametrize("name", registry_names())
def test_softmax_and_mixed_precision_keep_float32_outputs(name):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = kseg.create_model(name, num_classes=NUM_CLASSES, activation="softmax")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.layers[-1].name == "probabilities"
    assert model.get_layer("segmentation_output").compute_dtype == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers)  # the policy applied
    probs = np.asarray(model(image_batch(), training=False))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def bare_process_logits(built, tmp_path_factory, run_python):
    """Every registered network saved, then loaded and run in one fresh process that knows
    nothing of kseg (only builtin layers, safe_mode on): {name: (its logits, the model's)}.
    One process for all of them: each fresh TensorFlow costs seconds to start."""
    folder = tmp_path_factory.mktemp("bare")
    names = registry_names()
    x = image_batch(seed=1, width=2 * SIDE)  # H != W: a swapped axis would show (64: DDRNet's stride)
    np.save(folder / "x.npy", x)
    for name in names:
        built(name).save(folder / f"{name}.keras")
    run_python(f"""
        import sys, numpy as np, keras
        x = np.load({str(folder / "x.npy")!r})
        for name in {names!r}:
            model = keras.saving.load_model({str(folder)!r} + f"/{{name}}.keras", safe_mode=True)
            assert "kseg" not in sys.modules and model.name == name, (name, model.name)
            np.save({str(folder)!r} + f"/{{name}}.y.npy", np.asarray(model(x)))
    """)
    return {name: (np.load(folder / f"{name}.y.npy"), np.asarray(built(name)(x, training=False)))
            for name in names}


@pytest.mark.parametrize("name", train_step_names())
def test_one_train_step_moves_the_weights(name):
    """A fresh model (the shared ones stay untrained for the round trip), 32x32 inputs;
    ddrnet23slim's stride is 64."""
    side = kseg.registry.get_entry(name).stride
    model = kseg.create_model(name, num_classes=NUM_CLASSES, input_shape=(side, side, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Two different images: on identical ones a 1x1 stride-32 map has no batch variance.
    x = np.concatenate([image_batch(seed, height=side, width=side) for seed in (0, 1)])
    y = np.random.default_rng(1).integers(0, NUM_CLASSES, (2, side, side))
    head = model.get_layer("segmentation_output").kernel
    before = np.asarray(head).copy()
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss) and not np.array_equal(np.asarray(head), before)


@pytest.mark.parametrize("name", registry_names())
def test_keras_round_trip_in_bare_process(bare_process_logits, name):
    got, expected = bare_process_logits[name]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_unknown_model_lists_known_names():
    with pytest.raises(KsegError, match="Known models: .*deeplabv3.*unet"):
        kseg.create_model("segformer")


@pytest.mark.parametrize(
    "kwargs", [{"input_shape": (100, 96, 3)}, {"input_shape": (64, 64, 0)}, {"activation": "tanh"}]
)
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(KsegError, match="Received"):
        kseg.create_model("unet", **kwargs)


# ---------------------------------------------------------------- U-Net / ResNet-34


def test_resnet34_encoder_has_resnet34_trainable_parameter_count():
    # By hand: conv k x k (no bias) = k*k*cin*cout, BN = gamma + beta trainable.
    def block(cin, c):
        projection = cin * c + 2 * c if cin != c else 0
        return 9 * cin * c + 2 * c + 9 * c * c + 2 * c + projection

    expected = 7 * 7 * 3 * 64 + 2 * 64  # stem
    for cin, c, n in ((64, 64, 3), (64, 128, 4), (128, 256, 6), (256, 512, 3)):
        expected += block(cin, c) + (n - 1) * block(c, c)
    # = torchvision's ResNet-34 (21,797,672) minus its 512x1000 + 1000 classifier.
    assert expected == 21_284_672
    inputs = keras.Input((None, None, 3))
    taps = resnet34_encoder(inputs)
    encoder = keras.Model(inputs, taps["conv5_block3_out"])
    assert sum(int(np.prod(w.shape)) for w in encoder.trainable_weights) == expected
    strides = {
        name: SIDE // keras.Model(inputs, t)(np.zeros((1, SIDE, SIDE, 3))).shape[1]
        for name, t in taps.items()
    }
    assert strides == {
        "conv1_relu": 2,
        "conv2_block3_out": 4,
        "conv3_block4_out": 8,
        "conv4_block6_out": 16,
        "conv5_block3_out": 32,
    }


# ---------------------------------------------------------------- Xception / DeepLabV3


@pytest.fixture(scope="module")
def keras_xception():
    """keras.applications' Xception with random, non-trivial BN statistics."""
    model = keras.applications.Xception(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(0)
    for w in model.weights:
        if w.path.endswith(("gamma", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif w.path.endswith(("beta", "moving_mean")):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    return model


def shapes(model):
    return [tuple(w.shape) for w in model.weights]


def test_xception_backbone_matches_keras_applications_weight_shapes(keras_xception):
    ours = {os: xception(output_stride=os) for os in (32, 16, 8)}
    assert shapes(ours[32]) == shapes(keras_xception)
    assert ours[32].count_params() == keras_xception.count_params() == 20_861_480
    assert shapes(ours[16]) == shapes(ours[8]) == shapes(ours[32])
    # Named layers agree one to one; keras leaves the 4 shortcut convs/BNs unnamed.
    names = [
        (a.name, b.name)
        for a, b in zip(keras_xception.layers, ours[32].layers, strict=True)
        if a.weights and a.name != b.name
    ]
    assert len(names) == 8 and all(b.startswith("block") and "_residual_" in b for _, b in names)

    def dilations(model):  # block -> dilation of its separable convs
        return {
            layer.name.split("_")[0]: layer.dilation_rate[0]
            for layer in model.layers
            if isinstance(layer, keras.layers.SeparableConv2D)
        }

    assert set(dilations(ours[32]).values()) == {1}
    assert dilations(ours[16]) == {f"block{n}": 2 if n == 14 else 1 for n in range(2, 15)}
    assert dilations(ours[8]) == {f"block{n}": (1 if n < 5 else 2 if n < 14 else 4) for n in range(2, 15)}
    for os, model in ours.items():
        assert model(np.zeros((1, SIDE, SIDE, 3))).shape == (1, SIDE // os, SIDE // os, 2048)


def test_weight_loader_from_instance_gives_keras_features(keras_xception):
    ours = load_xception_weights(xception(output_stride=32), keras_xception)
    for a, b in zip(keras_xception.weights, ours.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Compare features where the padding choice does not matter.
    # 1) Stem. A 3x3/2 "same" conv on an even side pads one zero row/column at the
    # bottom/right, i.e. equals keras' "valid" conv on that padded input. Keras' second
    # 3x3 conv is "valid" too: its output j covers rows j..j+2, ours (same) j-1..j+1.
    x = np.random.default_rng(2).normal(size=(1, SIDE, SIDE, 3)).astype("float32")
    stem = [keras.Model(m.input, m.get_layer("block1_conv2_act").output) for m in (keras_xception, ours)]
    theirs = np.asarray(stem[0](np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))))  # (1, 30, 30, 64)
    np.testing.assert_allclose(np.asarray(stem[1](x))[:, 1:-1, 1:-1], theirs, rtol=1e-4, atol=1e-4)
    # 2) Everything after the stem is "same" in both: identical functions.
    body = [keras.Model(m.get_layer("block1_conv2_act").output, m.output) for m in (keras_xception, ours)]
    h = np.random.default_rng(3).normal(size=(1, 32, 32, 64)).astype("float32")
    expected = np.asarray(body[0](h))
    assert np.abs(expected).mean() > 1e-2  # non-trivial features
    np.testing.assert_allclose(np.asarray(body[1](h)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("via", ["create_model", "kseg fit --encoder-weights"])
def test_deeplabv3_loads_xception_weights_file(keras_xception, tmp_path, via):
    from kseg.data.dataset_spec import CAMVID
    from kseg.training import checkpoints
    from kseg.training.recipes import resolve

    path = tmp_path / "xception_notop.weights.h5"
    keras_xception.save_weights(path)
    if via == "create_model":
        model = kseg.create_model("deeplabv3", num_classes=NUM_CLASSES, weights=str(path))  # OS16
    else:  # the FitConfig a `kseg fit deeplabv3 --encoder-weights FILE` resolves to
        cfg, _ = resolve("deeplabv3", encoder_weights=str(path))
        model = checkpoints.create(cfg, CAMVID)
    ours = [w for layer in backbone_layers(model) for w in layer.weights]
    assert len(ours) == len(keras_xception.weights)
    for a, b in zip(keras_xception.weights, ours, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_xception_imagenet_weights_come_from_keras_cache(keras_xception, keras_cache):
    from test_applications import write_keras_h5  # tests/ is on sys.path

    with pytest.raises(KsegError, match=r"xception: Keras could not get its ImageNet weights .*~/\.keras"):
        kseg.create_model("deeplabv3", num_classes=NUM_CLASSES, weights="imagenet")  # not in the cache
    file = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"  # keras.applications' name
    write_keras_h5(keras_xception, keras_cache.models / file)
    model = kseg.create_model("deeplabv3", num_classes=NUM_CLASSES, weights="imagenet")
    ours = [w for layer in backbone_layers(model) for w in layer.weights]
    for a, b in zip(keras_xception.weights, ours, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weight_loader_errors(built, tmp_path):
    with pytest.raises(KsegError, match="not found"):
        load_xception_weights(built("deeplabv3"), tmp_path / "missing.weights.h5")
    with pytest.raises(KsegError, match="Xception weights"):
        load_xception_weights(built("deeplabv3"), built("unet"))


def test_deeplabv3_parameter_count_by_hand():
    c = 2048  # backbone channels; ASPP and projection width 256, BN holds 4 x 256
    aspp = (c * 256 + 1024) + 3 * (9 * c * 256 + 1024) + (c * 256 + 1024)  # 1x1, atrous, image
    # The paper's projection, 1x1 conv over 5 x 256 channels, is what the two bias-free
    # convs hold together: 4*256*256 + 256*256 = 1280*256.
    projection = 1280 * 256 + 1024
    head = 256 * 12 + 12
    assert kseg.model_info("deeplabv3")["params"] == 20_861_480 + aspp + projection + head
    model = kseg.create_model("deeplabv3", output_stride=8, num_classes=NUM_CLASSES)
    rates = [model.get_layer(f"aspp_atrous{i}_tap00_pad").padding[0][0] for i in (1, 2, 3)]
    assert rates == [12, 24, 36]
    # The top-right tap reads x shifted by (-r, +r): crop 0 rows above, 2r below, 2r left.
    assert model.get_layer("aspp_atrous3_tap02").cropping == ((0, 72), (72, 0))
    assert model.layers[-1].name == "segmentation_upsample" and model.layers[-1].size == (8, 8)


@pytest.mark.parametrize("rate,size", [(2, (7, 5)), (3, (4, 4)), (18, (8, 8)), (6, (1, 3))])
def test_atrous_taps_equal_a_dilated_conv2d(rate, size):
    # rate >= size: every off-centre tap reads padding only, as in ASPP on small patches.
    from kseg.models.layers import atrous_conv_bn_relu

    x = np.random.default_rng(rate).standard_normal((2, *size, 5)).astype("float32")
    inputs = keras.Input((None, None, 5))
    taps = keras.Model(inputs, atrous_conv_bn_relu(inputs, 4, rate, "a"))
    kernel = np.random.default_rng(0).standard_normal((3, 3, 5, 4)).astype("float32")
    for i in range(3):
        for j in range(3):
            taps.get_layer(f"a_tap{i}{j}_conv").set_weights([kernel[i, j][None, None]])
    dilated = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=rate, use_bias=False)
    dilated.build(x.shape)
    dilated.set_weights([kernel])
    bn_relu = keras.Sequential([keras.layers.BatchNormalization(epsilon=1.001e-5), keras.layers.ReLU()])
    expected = bn_relu(dilated(x), training=False)
    np.testing.assert_allclose(taps.predict_on_batch(x), expected, atol=1e-4)
