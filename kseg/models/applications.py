"""U-Net, FPN and DeepLabV3+ over keras.applications backbones, one registry name per pair:
`unet-resnet50`, `fpn-efficientnetv2b0`, `deeplabv3plus-convnext_tiny` ... (`kseg models`).

A decoder reads the encoder's features by stride, `{2: ..., 32: ...}`, and never asks
which backbone made them (kseg.models.backbones holds one row per backbone):
- `unet`: kseg's U-Net decoder (kseg.models.unet): five x2 stages concatenating the
  features at strides 16, 8, 4, 2 (a backbone without a stride-2 feature, ConvNeXt,
  skips nothing there), logits at full resolution;
- `fpn`: kseg.models.fpn, logits at stride 4 upsampled x4;
- `deeplabv3plus`: kseg's ASPP (kseg.models.deeplabv3) on the stride-32 features with
  the OS16 rates halved (keras.applications backbones have no atrous variant; the same
  choice as kseg's deeplabv3 at output_stride 32), then kseg's DeepLabV3+ decoder with
  the stride-4 features, logits upsampled x4.
Every network takes [0, 255] pixels (`preprocess` does the backbone's normalisation) and
holds its backbone as the nested model `encoder` (kseg.models.encoder).
"""

from kseg.errors import KsegError
from kseg.models.backbones import BACKBONES
from kseg.models.deeplabv3 import ASPP_RATES_OS16, aspp
from kseg.models.deeplabv3plus import decoder as deeplab_decoder
from kseg.models.encoder import build_encoder, preprocess
from kseg.models.fpn import fpn_decoder
from kseg.models.layers import check_args, segmentation_head
from kseg.models.lazy import keras
from kseg.models.unet import DECODER_FILTERS, decoder_stage
from kseg.registry import register_model

# decoder -> {builder argument: (default, check_args kind...)}
DECODER_ARGS = {
    "unet": {"decoder_filters": (DECODER_FILTERS, "ints", 5)},
    "fpn": {"pyramid_filters": (256, "int"), "segmentation_filters": (128, "int"),
            "dropout": (0.2, "number")},
    "deeplabv3plus": {"aspp_filters": (256, "int"), "low_level_filters": (48, "int"),
                      "decoder_filters": (256, "int")},
}
TITLES = {"unet": "U-Net", "fpn": "FPN", "deeplabv3plus": "DeepLabV3+"}
# 39 variants: named one by one, not trained by `kseg fit --all` nor measured by a bare `kseg bench`.
FAMILY = "keras.applications"


def unet_decoder(features, decoder_filters):
    """Features by stride -> ((B, H, W, decoder_filters[-1]), 1)."""
    x = features[32]
    for i, (stride, filters) in enumerate(zip((16, 8, 4, 2, None), decoder_filters, strict=True), 1):
        x = decoder_stage(x, features.get(stride), filters, f"decoder_stage{i}")  # (B, H/2^(5-i), ., f)
    return x, 1


def fpn(features, **kwargs):
    """Features by stride -> ((B, H/4, W/4, segmentation_filters), 4)."""
    return fpn_decoder(features, **kwargs), 4


def deeplabv3plus_decoder(features, aspp_filters, low_level_filters, decoder_filters):
    """Features by stride -> ((B, H/4, W/4, decoder_filters), 4)."""
    rates = tuple(r // 2 for r in ASPP_RATES_OS16)  # (3, 6, 9) at stride 32
    x = aspp(features[32], rates, aspp_filters)  # (B, H/32, W/32, aspp_filters)
    return deeplab_decoder(x, features[4], 8, low_level_filters, decoder_filters), 4


DECODERS = {"unet": unet_decoder, "fpn": fpn, "deeplabv3plus": deeplabv3plus_decoder}


def build(decoder, backbone, num_classes, input_shape, activation, encoder_weights, kwargs):
    """The `{decoder}-{backbone}` network (see `register`)."""
    name = f"{decoder}-{backbone}"
    allowed = DECODER_ARGS[decoder]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise KsegError(f"{name}: unexpected arguments {unknown}; it takes {', '.join(allowed)}.")
    args = {key: kwargs.get(key, default) for key, (default, *_) in allowed.items()}
    check_args(name, num_classes, input_shape, 32, activation,
               **{key: (args[key], *kind) for key, (_, *kind) in allowed.items()})
    image = keras.Input(shape=tuple(input_shape), name="image")  # (B, H, W, C) in [0, 255]
    encoder, strides = build_encoder(backbone, input_shape[-1], encoder_weights)
    features = dict(zip(strides, encoder(preprocess(image, backbone)), strict=True))
    x, upsample = DECODERS[decoder](features, **args)
    outputs = segmentation_head(x, num_classes, activation, upsample=upsample)
    return keras.Model(image, outputs, name=name)  # (B, H, W, num_classes)


def register(decoder, backbone):
    """Register `{decoder}-{backbone}`: a three-line builder, its arguments as data."""

    def builder(num_classes=12, input_shape=(None, None, 3), activation=None, encoder_weights=None, **kwargs):
        return build(decoder, backbone, num_classes, input_shape, activation, encoder_weights, kwargs)

    builder.__name__ = builder.__qualname__ = f"{decoder}_{backbone}"
    builder.__doc__ = (f"{TITLES[decoder]} over keras.applications.{BACKBONES[backbone].constructor} "
                       f"(encoder_weights: None, 'imagenet' or a weights file; **kwargs: "
                       f"{', '.join(DECODER_ARGS[decoder])}).")
    description = f"{TITLES[decoder]}, keras.applications {BACKBONES[backbone].constructor} encoder"
    register_model(f"{decoder}-{backbone}", stride=32, description=description, family=FAMILY)(builder)


for _decoder in DECODERS:
    for _backbone in BACKBONES:
        register(_decoder, _backbone)
