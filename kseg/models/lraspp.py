"""LR-ASPP, the Lite Reduced Atrous Spatial Pyramid Pooling head (Howard et al. 2019,
"Searching for MobileNetV3", section 6.4), on keras.applications' MobileNetV3.

    high: MobileNetV3's last features (B, H/32, W/32, 960 | 576)
      -> 1x1 conv-BN-ReLU (128)  *  sigmoid(1x1 conv(global average pool))   (a gate per channel)
      -> bilinear x4 to stride 8 -> 1x1 conv `segmentation_output` (K logits)
    low: the stride-8 block output (B, H/8, W/8, 40 | 24) -> 1x1 conv (K logits)
    summed -> bilinear x8 to the input size (`segmentation_upsample`)

The paper pools with a 49x49 window at stride (16, 20), sized for 1024x2048 Cityscapes
frames; the global pool (torchvision's choice) fits any input size. The paper keeps the
last stage at stride 16 with atrous convs; keras.applications' MobileNetV3 has no atrous
variant, so the head reads stride 32 (one more x2 upsampling, a quarter of the cost).
"""

from kseg.errors import KsegError
from kseg.models.encoder import build_encoder, preprocess
from kseg.models.layers import check_args, conv_bn_relu
from kseg.models.lazy import keras, layers
from kseg.registry import register_model

HEAD_FILTERS = 128  # the paper's and torchvision's inter_channels


def lraspp_head(low, high, num_classes, filters=HEAD_FILTERS, name="lraspp"):
    """(B, H/8, W/8, C8) and (B, H/32, W/32, C32) -> (B, H/8, W/8, num_classes) float32 logits."""
    x = conv_bn_relu(high, filters, 1, f"{name}_high")  # (B, H/32, W/32, 128)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(high)  # (B, 1, 1, C32)
    gate = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_gate_conv")(gate)
    gate = layers.Activation("sigmoid", name=f"{name}_gate")(gate)  # (B, 1, 1, 128)
    x = layers.Multiply(name=f"{name}_gated")([x, gate])  # broadcast over (h, w)
    x = layers.UpSampling2D(4, interpolation="bilinear", name=f"{name}_upsample")(x)  # (B, H/8, W/8, 128)
    x = layers.Conv2D(num_classes, 1, name="segmentation_output", dtype="float32")(x)
    low = layers.Conv2D(num_classes, 1, name="segmentation_output_low", dtype="float32")(low)
    return layers.Add(name=f"{name}_logits", dtype="float32")([x, low])


def lraspp(backbone, num_classes, input_shape, activation, encoder_weights, kwargs):
    """The LR-ASPP network over `backbone` (mobilenetv3large or mobilenetv3small)."""
    name = f"lraspp-{backbone}"
    filters = kwargs.pop("head_filters", HEAD_FILTERS)
    if kwargs:
        raise KsegError(f"{name}: unexpected arguments {sorted(kwargs)}; it takes head_filters.")
    check_args(name, num_classes, input_shape, 32, activation, head_filters=(filters, "int"))
    image = keras.Input(shape=tuple(input_shape), name="image")  # (B, H, W, C) in [0, 255]
    encoder, strides = build_encoder(backbone, input_shape[-1], encoder_weights)
    features = dict(zip(strides, encoder(preprocess(image, backbone)), strict=True))
    x = lraspp_head(features[8], features[32], num_classes, filters)  # (B, H/8, W/8, K)
    x = layers.UpSampling2D(8, interpolation="bilinear", name="segmentation_upsample", dtype="float32")(x)
    if activation is not None:
        x = layers.Activation(activation, name="probabilities", dtype="float32")(x)
    return keras.Model(image, x, name=name)  # (B, H, W, K)


@register_model("lraspp-mobilenetv3large", stride=32)
def lraspp_mobilenetv3large(num_classes=12, input_shape=(None, None, 3), activation=None,
                            encoder_weights=None, **kwargs):
    """LR-ASPP, MobileNetV3-Large encoder: real time on a CPU.

    encoder_weights: None, 'imagenet' (Keras' cache) or a MobileNetV3Large weights file.
    """
    return lraspp("mobilenetv3large", num_classes, input_shape, activation, encoder_weights, kwargs)


@register_model("lraspp-mobilenetv3small", stride=32)
def lraspp_mobilenetv3small(num_classes=12, input_shape=(None, None, 3), activation=None,
                            encoder_weights=None, **kwargs):
    """LR-ASPP, MobileNetV3-Small encoder: the lightest, real time on a CPU.

    encoder_weights: None, 'imagenet' (Keras' cache) or a MobileNetV3Small weights file.
    """
    return lraspp("mobilenetv3small", num_classes, input_shape, activation, encoder_weights, kwargs)
