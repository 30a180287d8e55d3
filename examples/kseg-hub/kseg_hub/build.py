"""The keras-hub networks as kseg models: raw [0, 255] pixels in, logits (B, H, W, K) out.

Each network is a keras-hub model (random weights, or a local preset: kseg_hub.presets)
inside a functional keras.Model with kseg's conventions: a `Rescaling` named
`preprocess` (keras-hub's segmenters leave normalisation to a separate preprocessor),
float32 logits at the input resolution, and `probabilities` with activation="softmax".

Saving: keras-hub's classes are registered serialisable and Keras imports keras_hub
itself when it loads them, so a run's .keras loads in a process that never imported
kseg_hub. The Task classes (SegFormerImageSegmenter, DeepLabV3ImageSegmenter) are
unwrapped into plain functional graphs: a nested Task would be compiled again on load
and warn about optimizer variables it does not have.
"""

import keras
from keras import layers

from kseg.errors import KsegError
from kseg.models.layers import check_args, segmentation_head
from kseg.models.unet import DECODER_FILTERS, decoder_stage
from kseg_hub import presets

# What every MiT variant shares (keras-hub's mit_b* presets; SegFormer paper, Table 6).
MIT_COMMON = {
    "num_layers": 4,
    "layerwise_num_heads": [1, 2, 5, 8],
    "layerwise_sr_ratios": [8, 4, 2, 1],
    "layerwise_patch_sizes": [7, 3, 3, 3],
    "layerwise_strides": [4, 2, 2, 2],
    "max_drop_path_rate": 0.1,
}
# keras-hub's segformer_b* presets use a 256-wide decoder for every size (their parameter
# counts match; the paper widens B2-B5 to 768).
SEGFORMER_PROJECTION = 256
# kseg's default --patch: the size a SegFormer is built for when nothing says otherwise.
DEFAULT_IMAGE_SIZE = 128
MIN_IMAGE_SIZE = 64
RESNET_COMMON = {
    "input_conv_filters": [64],
    "input_conv_kernel_sizes": [7],
    "stackwise_num_filters": [64, 128, 256, 512],
    "stackwise_num_strides": [1, 2, 2, 2],
}
# keras-hub's deeplab_v3_plus_resnet50_pascalvoc: ASPP on P5 (H/32), upsampled x8 to
# H/4 (where the P2 decoder joins in DeepLabV3+), head conv, then x4 to the input.
DEEPLAB = {"spatial_pyramid_pooling_key": "P5", "upsampling_size": 8, "dilation_rates": [6, 12, 18]}
DEEPLAB_LOW_LEVEL = {"low_level_feature_key": "P2", "projection_filters": 48}


def segformer(name, variant, num_classes, input_shape, activation, preset, image_size=None, **kwargs):
    """SegFormer (keras_hub.models.SegFormerImageSegmenter on a MiTBackbone), logits (B, S, S, K).

    keras-hub's MiT reshapes its tokens to sqrt(N) x sqrt(N) maps with sizes fixed when
    it is built, so the network takes one square size S: `image_size`, else the sides of
    `input_shape`, else 128 (kseg's default --patch). Train with --patch S; evaluate with
    --window S (whole frames of another size do not fit).
    """
    _no_more(name, kwargs, "preset, image_size")
    check_args(name, num_classes, input_shape, 32, activation)
    side = _square_side(name, input_shape, image_size)
    keras_hub = _keras_hub(name)
    path = _checked_preset(name, preset)
    if path is None:
        encoder = keras_hub.models.MiTBackbone(image_shape=(side, side, 3), **MIT_COMMON, **variant)
        backbone = keras_hub.models.SegFormerBackbone(image_encoder=encoder,
                                                      projection_filters=SEGFORMER_PROJECTION)
    else:  # a SegFormer preset (encoder + decoder) or a MiT preset (encoder only)
        loaded = presets.load_backbone(name, path)
        presets.check_variant(name, getattr(loaded, "image_encoder", loaded), variant)
        backbone = presets.with_image_shape(loaded, (side, side, 3))
        if not isinstance(backbone, keras_hub.models.SegFormerBackbone):
            backbone = keras_hub.models.SegFormerBackbone(image_encoder=backbone,
                                                          projection_filters=SEGFORMER_PROJECTION)
    # (B, S, S, K): the segmenter resizes its H/4 logits to the input size itself.
    task = keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=num_classes, compile=False)
    return _wrap(name, task, (side, side, 3), presets.normalisation(path), activation)


def deeplabv3(name, variant, num_classes, input_shape, activation, preset, **kwargs):
    """DeepLabV3(+) (keras_hub.models.DeepLabV3ImageSegmenter) on a keras-hub ResNet v1.

    keras-hub's ResNet has no atrous stages, so ASPP runs at H/32 (rates 6, 12, 18 as in
    its preset); any input whose sides are multiples of 32 works.
    """
    _no_more(name, kwargs, "preset")
    check_args(name, num_classes, input_shape, 32, activation)
    keras_hub = _keras_hub(name)
    resnet = {k: v for k, v in variant.items() if k != "low_level"}
    head = {**DEEPLAB, **(DEEPLAB_LOW_LEVEL if variant["low_level"] else {})}
    path = _checked_preset(name, preset)
    loaded = None if path is None else presets.load_backbone(name, path)
    if isinstance(loaded, keras_hub.models.DeepLabV3Backbone):  # encoder + ASPP (+ decoder)
        presets.check_variant(name, loaded.image_encoder, resnet)
        presets.check_variant(name, loaded, {"low_level_feature_key": head.get("low_level_feature_key")})
        backbone = loaded
    else:  # random weights, or a ResNet preset for the encoder
        encoder = _resnet(name, resnet, loaded)
        backbone = keras_hub.models.DeepLabV3Backbone(image_encoder=encoder, **head)
    task = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes, compile=False)
    return _wrap(name, task, input_shape, presets.normalisation(path), activation)


def unet(name, variant, num_classes, input_shape, activation, preset, decoder_filters=DECODER_FILTERS,
         **kwargs):
    """kseg's U-Net decoder (kseg.models.unet.decoder_stage) on a keras-hub ResNet v1.

    kseg's `unet` builder has its ResNet-34 built in, so its block functions are reused
    here: the skips are read by key, as kseg reads its own encoder's by layer name,
    `conv1_relu` (H/2) and keras-hub's pyramid outputs P2 (H/4), P3 (H/8), P4 (H/16);
    the decoder starts from P5 (H/32). The same five stages and widths as kseg's unet.
    """
    _no_more(name, kwargs, "preset, decoder_filters")
    check_args(name, num_classes, input_shape, 32, activation, decoder_filters=(decoder_filters, "ints", 5))
    _keras_hub(name)
    path = _checked_preset(name, preset)
    encoder = _resnet(name, variant, None if path is None else presets.load_backbone(name, path))
    try:
        stem = encoder.get_layer("conv1_relu").output  # (B, H/2, W/2, 64)
    except ValueError:
        raise KsegError(f"{name}: the preset's ResNet has no `conv1_relu` layer (the H/2 skip): "
                        f"use a ResNet v1 preset.") from None
    features = keras.Model(encoder.inputs, {"conv1_relu": stem, **encoder.pyramid_outputs}, name="encoder")
    image, x = _image_input(input_shape, presets.normalisation(path))
    taps = features(x)
    x = taps["P5"]  # (B, H/32, W/32, 512 or 2048)
    skips = [taps["P4"], taps["P3"], taps["P2"], taps["conv1_relu"], None]
    for i, (skip, filters) in enumerate(zip(skips, decoder_filters, strict=True), 1):
        x = decoder_stage(x, skip, filters, f"decoder_stage{i}")  # (B, H/2^(5-i), ., filters)
    return keras.Model(image, segmentation_head(x, num_classes, activation), name=name)


def _resnet(name, variant, loaded):
    """A ResNetBackbone of `variant`: random weights, or `loaded` (a preset) once checked."""
    import keras_hub

    if loaded is None:
        return keras_hub.models.ResNetBackbone(**RESNET_COMMON, **variant)
    encoder = getattr(loaded, "image_encoder", loaded)
    if not isinstance(encoder, keras_hub.models.ResNetBackbone):
        raise KsegError(f"{name}: the preset holds a {type(loaded).__name__}, not a ResNet; "
                        f"use a keras-hub ResNet (or DeepLabV3) preset.")
    presets.check_variant(name, encoder, variant)
    return encoder


def _wrap(name, task, input_shape, normalisation, activation):
    """kseg's model around a keras-hub segmenter: [0, 255] image -> float32 (B, H, W, K)."""
    net = keras.Model(task.inputs, task.outputs, name=task.name)  # the Task's graph, without the Task
    image, x = _image_input(input_shape, normalisation)
    x = layers.Activation("linear", dtype="float32", name="logits")(net(x))  # (B, H, W, K)
    if activation is not None:
        x = layers.Activation(activation, dtype="float32", name="probabilities")(x)
    return keras.Model(image, x, name=name)


def _image_input(input_shape, normalisation):
    """`(image, x)`: the [0, 255] image input and its normalised tensor (`preprocess`)."""
    scale, offset = normalisation
    image = keras.Input(shape=tuple(input_shape), name="image")
    return image, layers.Rescaling(scale, offset=offset, name="preprocess")(image)


def _square_side(name, input_shape, image_size):
    """S of a SegFormer: `image_size`, else input_shape's sides (equal), else DEFAULT_IMAGE_SIZE."""
    h, w = tuple(input_shape)[:2]  # check_args has checked the shape's form
    if h != w:
        raise KsegError(f"{name}: keras-hub's SegFormer takes square inputs of one fixed size. "
                        f"Received: input_shape={tuple(input_shape)!r}")
    if image_size is not None and h is not None and h != image_size:
        raise KsegError(f"{name}: image_size={image_size} differs from input_shape={tuple(input_shape)!r}.")
    side = image_size or h or DEFAULT_IMAGE_SIZE
    # keras-hub 0.32's MiT fails to build at 32 px (its H/32 stage would be 1 x 1).
    if not isinstance(side, int) or isinstance(side, bool) or side < MIN_IMAGE_SIZE or side % 32:
        raise KsegError(f"{name}: image_size must be a multiple of 32 (the network's stride), at least "
                        f"{MIN_IMAGE_SIZE}. Received: image_size={side!r}")
    return side


def _keras_hub(name):
    try:
        import keras_hub
    except ImportError as exc:  # the plugin registers its names without it; building needs it
        raise KsegError(f"{name} needs keras-hub ({exc}): pip install 'keras-hub>=0.32'.") from None
    return keras_hub


def _checked_preset(name, preset):
    return None if preset is None else presets.local_dir(name, preset)


def _no_more(name, kwargs, accepted):
    if kwargs:
        raise KsegError(f"{name}: unexpected arguments {sorted(kwargs)}; it takes {accepted}.")
