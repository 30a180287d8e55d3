"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution") on an Xception backbone.

Backbone features at 1/output_stride -> ASPP -> 1x1 classifier `segmentation_output`
-> bilinear upsampling of the logits (the model's last layer, `segmentation_upsample`)
to the input size. Upsampling K logit channels instead of 256 feature channels is the
paper's choice and much cheaper; bilinear interpolation commutes with the 1x1 conv, so
the result is the same.
"""

from kseg.errors import KsegError
from kseg.models.layers import (
    atrous_conv_bn_relu,
    batch_norm,
    check_args,
    conv_bn_relu,
    image_input,
    segmentation_head,
)
from kseg.models.lazy import keras, layers
from kseg.models.xception import OUTPUT_STRIDES, load_xception_weights, xception_backbone
from kseg.registry import register_model

ASPP_RATES_OS16 = (6, 12, 18)  # doubled at output_stride 8, halved at 32


def aspp(x, rates, filters=256, name="aspp"):
    """Atrous spatial pyramid pooling: (B, h, w, C) -> (B, h, w, filters).

    The paper concatenates five branches (1x1, three 3x3 atrous, image pooling upsampled
    to h x w) and projects them with a 1x1 conv (no bias) + BN + ReLU. The pooled branch
    is (B, 1, 1, filters), constant over the grid once upsampled, and the projection is
    linear in the concatenation, so `W @ concat(b1..b4, pool) = W[:4f] @ concat(b1..b4)
    + W[4f:] @ pool`: two bias-free 1x1 convs whose sum broadcasts (B, 1, 1, f) over the
    grid. Same function and same parameter count as the paper, for any input size, with
    builtin layers only (no resize op needed).
    """
    branches = [conv_bn_relu(x, filters, 1, f"{name}_1x1")]  # (B, h, w, f)
    for i, rate in enumerate(rates, 1):
        branches.append(atrous_conv_bn_relu(x, filters, rate, f"{name}_atrous{i}"))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_image_pool")(x)
    pooled = conv_bn_relu(pooled, filters, 1, f"{name}_image")  # (B, 1, 1, f)
    x = layers.Concatenate(name=f"{name}_concat")(branches)  # (B, h, w, 4f)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project_conv")(x)
    pooled = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project_image_conv")(pooled)
    x = layers.Add(name=f"{name}_project_add")([x, pooled])  # broadcast over (h, w)
    x = batch_norm(f"{name}_project_bn")(x)
    return layers.Activation("relu", name=f"{name}_project_relu")(x)  # (B, h, w, f)


@register_model("deeplabv3", stride=32)
def deeplabv3(
    num_classes=12,
    input_shape=(None, None, 3),
    output_stride=16,
    activation=None,
    weights=None,
    **kwargs,
):
    """DeepLabV3, Xception backbone + ASPP, logits upsampled bilinearly to input size.

    Args:
        num_classes: output channels of `segmentation_output`.
        input_shape: (H, W, C) (C channels, 3 for RGB), sides multiples of 32 or None.
        output_stride: 16 (default) or 8 (atrous exit flow and more memory), or 32
            (no dilation: the backbone is exactly keras.applications' Xception).
        activation: None for logits, or "softmax" to add a `probabilities` layer.
        weights: None, "imagenet" (keras.applications' Xception weights, from Keras' cache
            or downloaded once where online), or a local Xception(include_top=False)
            weights file or model to initialise the backbone (see `load_xception_weights`).
        **kwargs: `aspp_filters` (default 256).
    """
    aspp_filters = kwargs.pop("aspp_filters", 256)
    if kwargs:
        raise KsegError(f"deeplabv3: unexpected arguments {sorted(kwargs)}; it takes aspp_filters.")
    if output_stride not in OUTPUT_STRIDES:
        raise KsegError(
            f"deeplabv3: output_stride must be one of {OUTPUT_STRIDES}. "
            f"Received: output_stride={output_stride!r}"
        )
    check_args("deeplabv3", num_classes, input_shape, 32, activation, aspp_filters=(aspp_filters, "int"))
    image, x = image_input(input_shape)
    x = xception_backbone(x, output_stride)  # (B, H/os, W/os, 2048)
    rates = tuple(r * 16 // output_stride for r in ASPP_RATES_OS16)
    x = aspp(x, rates, aspp_filters)  # (B, H/os, W/os, 256)
    outputs = segmentation_head(x, num_classes, activation, upsample=output_stride)
    model = keras.Model(image, outputs, name="deeplabv3")  # (B, H, W, num_classes)
    if weights is not None:
        load_xception_weights(model, weights)
    return model
