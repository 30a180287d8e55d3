"""DeepLabV3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution").

DeepLabV3's encoder (Xception backbone at 1/output_stride + the ASPP of
`kseg.models.deeplabv3`) and a small decoder that recovers boundaries from stride-4
features of the backbone:

    low-level features (B, H/4, W/4, 256), read by layer name
      -> 1x1 conv-BN-ReLU to 48 channels (few, so they do not outweigh the ASPP's 256)
    ASPP output (B, H/os, W/os, 256) -> bilinear x(os/4) -> concatenated: 304 channels
      -> two 3x3 conv-BN-ReLU (256) -> 1x1 `segmentation_output` (logits)
      -> bilinear x4 to the input size (`segmentation_upsample`, float32)

The paper's decoder uses separable 3x3 convs with Xception; like kseg's ASPP it uses
regular ones here (same function class, more parameters, faster on a CPU).
"""

from kseg.errors import KsegError
from kseg.models.deeplabv3 import ASPP_RATES_OS16, aspp
from kseg.models.layers import check_args, conv_bn_relu, image_input, segmentation_head
from kseg.models.lazy import keras, layers
from kseg.models.xception import OUTPUT_STRIDES, load_xception_weights, xception_backbone
from kseg.registry import register_model

# Stride 4, 256 channels: the second separable conv of the 256-filter entry block,
# before its strided max-pool, as the official DeepLab's Xception-65
# (entry_flow/block2/unit_1/.../separable_conv2_pointwise).
LOW_LEVEL_FEATURES = "block3_sepconv2_bn"
LOW_LEVEL_STRIDE = 4


def decoder(x, low_level, upsample, low_level_filters=48, filters=256, name="decoder"):
    """DeepLabV3+ decoder: (B, h, w, C) ASPP output + (B, h*up, w*up, C') -> (B, h*up, w*up, filters)."""
    low_level = conv_bn_relu(low_level, low_level_filters, 1, f"{name}_low_level")  # (B, H/4, W/4, 48)
    if upsample > 1:
        x = layers.UpSampling2D(upsample, interpolation="bilinear", name=f"{name}_aspp_upsample")(x)
    x = layers.Concatenate(name=f"{name}_concat")([x, low_level])  # (B, H/4, W/4, 256 + 48)
    x = conv_bn_relu(x, filters, 3, f"{name}_conv1")
    return conv_bn_relu(x, filters, 3, f"{name}_conv2")  # (B, H/4, W/4, filters)


@register_model("deeplabv3plus", stride=16)
def deeplabv3plus(
    num_classes=12,
    input_shape=(None, None, 3),
    output_stride=16,
    activation=None,
    weights=None,
    **kwargs,
):
    """DeepLabV3+, Xception + ASPP + a stride-4 decoder, logits upsampled bilinearly.

    Args:
        num_classes: output channels of `segmentation_output`.
        input_shape: (H, W, C) (C channels, 3 for RGB), sides multiples of `output_stride`
            (16 by default) or None.
        output_stride: 16 (default), 8 or 32; the ASPP output is upsampled by
            output_stride / 4 to meet the stride-4 features.
        activation: None for logits, or "softmax" to add a `probabilities` layer.
        weights: None, "imagenet" (keras.applications' Xception weights, from Keras' cache
            or downloaded once where online), or a local Xception(include_top=False)
            weights file or model to initialise the backbone (see `load_xception_weights`).
        **kwargs: `aspp_filters` (256), `low_level_filters` (48), `decoder_filters` (256).
    """
    aspp_filters = kwargs.pop("aspp_filters", 256)
    low_level_filters = kwargs.pop("low_level_filters", 48)
    decoder_filters = kwargs.pop("decoder_filters", 256)
    if kwargs:
        raise KsegError(f"deeplabv3plus: unexpected arguments {sorted(kwargs)}; it takes aspp_filters, "
                        f"low_level_filters and decoder_filters.")
    if output_stride not in OUTPUT_STRIDES:
        raise KsegError(
            f"deeplabv3plus: output_stride must be one of {OUTPUT_STRIDES}. "
            f"Received: output_stride={output_stride!r}"
        )
    # Sides must be multiples of output_stride so that the upsampled ASPP output and
    # the stride-4 features have the same size.
    check_args("deeplabv3plus", num_classes, input_shape, output_stride, activation,
               aspp_filters=(aspp_filters, "int"), low_level_filters=(low_level_filters, "int"),
               decoder_filters=(decoder_filters, "int"))
    image, x = image_input(input_shape)
    features = xception_backbone(x, output_stride)  # (B, H/os, W/os, 2048)
    # Read the skip by name, as keras-hub's decoders do, never by position.
    low_level = keras.Model(image, features).get_layer(LOW_LEVEL_FEATURES).output  # (B, H/4, W/4, 256)
    rates = tuple(r * 16 // output_stride for r in ASPP_RATES_OS16)
    x = aspp(features, rates, aspp_filters)  # (B, H/os, W/os, 256)
    x = decoder(x, low_level, output_stride // LOW_LEVEL_STRIDE, low_level_filters, decoder_filters)
    outputs = segmentation_head(x, num_classes, activation, upsample=LOW_LEVEL_STRIDE)
    model = keras.Model(image, outputs, name="deeplabv3plus")  # (B, H, W, num_classes)
    if weights is not None:
        load_xception_weights(model, weights)
    return model
