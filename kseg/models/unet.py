"""U-Net with a ResNet-34 encoder (Ronneberger et al. 2015; He et al. 2016).

The encoder is ResNet-34 without its classifier, built from basic blocks with the
layer names of keras.applications' ResNets (`conv3_block2_1_conv`, `conv4_block6_out`).
The decoder follows segmentation_models' U-Net: five stages, each upsampling x2
(nearest), concatenating the encoder feature of the same resolution (looked up by
layer name), then two 3x3 conv-BN-ReLU. Decoder widths 256, 128, 64, 32, 16 are
segmentation_models' defaults: roughly halving per stage like the encoder, while the
last, full-resolution stages stay cheap.

With `encoder_weights` (a local torchvision/timm resnet34 checkpoint, see
kseg.models.pretrained) the encoder follows PyTorch's conventions so its features equal
torchvision's: ImageNet mean/std input normalisation, symmetric padding of the strided
convs and max-pool, BN epsilon 1e-5. Weight shapes and names do not change.
"""

import os

from kseg.errors import KsegError
from kseg.models.layers import check_args, conv_bn_relu, image_input, segmentation_head
from kseg.models.lazy import keras, layers
from kseg.models.pretrained import load_resnet34_weights, resnet34_state_dict
from kseg.registry import register_model

# (stage name, filters, blocks, stride of its first block): ResNet-34's 3-4-6-3.
RESNET34_STAGES = (
    ("conv2", 64, 3, 1),
    ("conv3", 128, 4, 2),
    ("conv4", 256, 6, 2),
    ("conv5", 512, 3, 2),
)
# Encoder taps used as skips, deepest first, and their strides: H/16, H/8, H/4, H/2.
SKIPS = ("conv4_block6_out", "conv3_block4_out", "conv2_block3_out", "conv1_relu")
DECODER_FILTERS = (256, 128, 64, 32, 16)
# conv_bn_relu arguments that reproduce PyTorch's ResNet numerically (torch_compatible).
TORCH_CONV_ARGS = {"epsilon": 1e-5, "symmetric_padding": True}


def basic_block(x, filters, name, stride=1, conv_args=None):
    """ResNet basic block: two 3x3 conv-BN with a shortcut, projected where shape changes.

    conv_args: extra `conv_bn_relu` arguments for every conv (TORCH_CONV_ARGS or None).
    """
    conv_args = conv_args or {}
    if stride != 1 or x.shape[-1] != filters:
        # Projection shortcut (1x1 conv + BN), the `_0_` layers of keras.applications.
        shortcut = conv_bn_relu(x, filters, 1, f"{name}_0", strides=stride, relu=False, **conv_args)
    else:
        shortcut = x
    x = conv_bn_relu(x, filters, 3, f"{name}_1", strides=stride, **conv_args)
    x = conv_bn_relu(x, filters, 3, f"{name}_2", relu=False, **conv_args)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def resnet34_encoder(x, torch_compatible=False):
    """ResNet-34 trunk on a (B, H, W, C) tensor; returns `{layer name: tensor}` of its taps.

    Taps: `conv1_relu` (H/2, 64), `conv2_block3_out` (H/4, 64), `conv3_block4_out`
    (H/8, 128), `conv4_block6_out` (H/16, 256), `conv5_block3_out` (H/32, 512).
    torch_compatible: compute exactly what torchvision's resnet34 computes with the same
    weights (TORCH_CONV_ARGS, plus `conv1_pad`, `pool1_pad` and `_1_pad` layers); the
    default keeps Keras' "same" padding and keras.applications' epsilon.
    """
    conv_args = TORCH_CONV_ARGS if torch_compatible else {}
    taps = {}
    x = conv_bn_relu(x, 64, 7, "conv1", strides=2, **conv_args)  # (B, H/2, W/2, 64)
    taps["conv1_relu"] = x
    if torch_compatible:
        # PyTorch pads the max-pool with -inf; zeros are equivalent after a ReLU (x >= 0).
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    else:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
    # (B, H/4, W/4, 64)
    for stage, filters, blocks, stride in RESNET34_STAGES:
        for i in range(1, blocks + 1):
            x = basic_block(x, filters, f"{stage}_block{i}", stride if i == 1 else 1, conv_args)
        taps[f"{stage}_block{blocks}_out"] = x
    return taps  # deepest: (B, H/32, W/32, 512)


def decoder_stage(x, skip, filters, name):
    """Upsample x2, concatenate the skip (if any), then two 3x3 conv-BN-ReLU."""
    x = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = conv_bn_relu(x, filters, 3, f"{name}_1")
    return conv_bn_relu(x, filters, 3, f"{name}_2")


@register_model("unet", stride=32)
def unet(num_classes=12, input_shape=(None, None, 3), activation=None, encoder_weights=None, **kwargs):
    """U-Net, ResNet-34 encoder: skips at H/2..H/16, logits at full resolution.

    Args:
        num_classes: output channels of `segmentation_output`.
        input_shape: (H, W, C) (C channels, 3 for RGB), sides multiples of 32 or None.
        activation: None for logits, or "softmax" to add a `probabilities` layer.
        encoder_weights: None (random init), or a local torchvision/timm resnet34
            checkpoint (.pth, .pt or .safetensors) or state dict: the encoder is then
            built torch-compatible, with ImageNet normalisation in `preprocess`, and
            loaded (see `load_resnet34_weights`). No downloads.
        **kwargs: `decoder_filters` (5 ints, default 256, 128, 64, 32, 16).
    """
    decoder_filters = kwargs.pop("decoder_filters", DECODER_FILTERS)
    if kwargs:
        raise KsegError(f"unet: unexpected arguments {sorted(kwargs)}; it takes decoder_filters.")
    check_args("unet", num_classes, input_shape, 32, activation, decoder_filters=(decoder_filters, "ints", 5))
    decoder_filters = tuple(decoder_filters)
    pretrained = encoder_weights is not None
    if pretrained:  # read (and fail on a bad file) before the build
        source = os.fspath(encoder_weights) if isinstance(encoder_weights, str | os.PathLike) else None
        state_dict = resnet34_state_dict(encoder_weights)
    image, x = image_input(input_shape, mode="torch" if pretrained else "tf")
    taps = resnet34_encoder(x, torch_compatible=pretrained)
    x = taps["conv5_block3_out"]  # (B, H/32, W/32, 512)
    skips = [taps[name] for name in SKIPS] + [None]  # the last stage has no skip
    for i, (skip, filters) in enumerate(zip(skips, decoder_filters, strict=True), 1):
        x = decoder_stage(x, skip, filters, f"decoder_stage{i}")  # (B, H/2^(5-i), ., filters)
    model = keras.Model(image, segmentation_head(x, num_classes, activation), name="unet")
    if pretrained:
        load_resnet34_weights(model, state_dict, source=source)
    return model
