"""DeepLabV3+: parameter count by hand, stride-4 features by name, any size.

Its .keras file loads in a bare process in tests/test_models.py, with the other networks.
"""

import keras
import numpy as np
import pytest

import kseg
import kseg.models.deeplabv3plus  # noqa: F401  registers it where the entry point is not installed
from kseg.errors import KsegError
from kseg.models.deeplabv3plus import LOW_LEVEL_FEATURES

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def model():
    return kseg.create_model("deeplabv3plus", num_classes=NUM_CLASSES)


def test_parameter_count_by_hand():
    # Conv k x k without bias = k*k*cin*cout; BN holds 4 x channels (gamma, beta and the
    # two moving statistics, which count_params includes).
    backbone = 20_861_480  # keras.applications' Xception(include_top=False), as in test_models
    c = 2048
    aspp = (c * 256 + 1024) + 3 * (9 * c * 256 + 1024) + (c * 256 + 1024)  # 1x1, 3 atrous, image
    projection = 1280 * 256 + 1024  # 1x1 conv over 5 x 256 channels + BN
    low_level = 256 * 48 + 4 * 48  # 1x1 conv 256 -> 48 + BN
    conv1 = 9 * (256 + 48) * 256 + 1024  # 3x3 conv over the concatenation + BN
    conv2 = 9 * 256 * 256 + 1024
    head = 256 * 12 + 12  # 1x1 classifier with bias, 12 classes
    expected = backbone + aspp + projection + low_level + conv1 + conv2 + head
    assert expected == 37_707_508
    assert kseg.model_info("deeplabv3plus")["params"] == expected
    # DeepLabV3 is the same minus the decoder; its own test derives 36,402,740.
    assert expected - (low_level + conv1 + conv2) == kseg.model_info("deeplabv3")["params"]


def test_low_level_features_are_read_by_name_at_stride_4(model):
    tap = model.get_layer(LOW_LEVEL_FEATURES)
    assert LOW_LEVEL_FEATURES == "block3_sepconv2_bn"
    # The decoder's 1x1 reduction consumes exactly that layer's output.
    reduce = model.get_layer("decoder_low_level_conv")
    assert reduce.input is tap.output and reduce.filters == 48
    probe = keras.Model(model.input, [tap.output, model.get_layer("aspp_project_relu").output])
    low, high = probe(np.zeros((1, 64, 96, 3), "float32"))
    assert low.shape == (1, 16, 24, 256) and high.shape == (1, 4, 6, 256)  # strides 4 and 16
    assert model.get_layer("decoder_concat").output.shape[-1] == 256 + 48
    assert model.get_layer("decoder_aspp_upsample").interpolation == "bilinear"
    out = model.get_layer("segmentation_output")
    assert out.kernel_size == (1, 1) and out.activation.__name__ == "linear"


@pytest.mark.parametrize("side", [(48, 80), (16, 16), (96, 32)])
def test_any_input_divisible_by_the_stride(model, side):
    assert kseg.model_info("deeplabv3plus", count_params=False)["stride"] == 16
    x = np.random.default_rng(0).uniform(0, 255, (1, *side, 3)).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape == (1, *side, NUM_CLASSES) and y.dtype == np.float32 and np.isfinite(y).all()


def test_output_strides_and_bad_arguments():
    m8 = kseg.create_model("deeplabv3plus", num_classes=3, output_stride=8, input_shape=(40, 56, 3))
    assert m8.get_layer("decoder_aspp_upsample").size == (2, 2)
    assert m8.get_layer("aspp_atrous1_tap00_pad").padding[0][0] == 12  # rates doubled at OS8
    assert m8.output.shape == (None, 40, 56, 3)
    with pytest.raises(KsegError, match="multiples of 16"):
        kseg.create_model("deeplabv3plus", input_shape=(40, 64, 3))
    with pytest.raises(KsegError, match="output_stride"):
        kseg.create_model("deeplabv3plus", output_stride=4)
    with pytest.raises(KsegError, match="unexpected"):
        kseg.create_model("deeplabv3plus", decoder="x")
