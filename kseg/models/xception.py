"""Xception (Chollet 2017) as a segmentation backbone, and a loader for Keras' weights.

Layers, names and weight order match `keras.applications.Xception(include_top=False)`
one to one, so its ImageNet weights load directly; only the four unnamed 1x1 shortcut
convs of keras get names here (`block{n}_residual_conv/_bn`). Differences, none of
which changes a weight shape:
- padding="same" everywhere (keras uses "valid" in block1), so features are exactly
  input/stride;
- `output_stride` 16 or 8 (DeepLab's atrous Xception): the last one or two strided
  blocks keep stride 1 (their max-pool and shortcut stop striding) and every later
  separable conv is dilated by the stride it gave up.
"""

import os

from kseg.errors import KsegError
from kseg.models.adapt import adapt_kernel
from kseg.models.layers import batch_norm
from kseg.models.lazy import keras, layers

# (block, filters of its separable convs, shortcut). Entry-flow blocks 2-4 and exit
# block 13 end in a strided max-pool with a 1x1 conv shortcut; middle-flow blocks 5-12
# keep the shape and add the identity; block 14 has no shortcut.
ENTRY_FLOW = ((2, (128, 128), "conv"), (3, (256, 256), "conv"), (4, (728, 728), "conv"))
MIDDLE_FLOW = tuple((n, (728, 728, 728), "identity") for n in range(5, 13))
EXIT_FLOW = ((13, (728, 1024), "conv"), (14, (1536, 2048), None))
OUTPUT_STRIDES = (8, 16, 32)


def xception_block(x, filters, name, shortcut, stride=1, dilation=1, first_relu=True):
    """ReLU-SepConv-BN per entry of `filters`, then max-pool (conv shortcut) and add.

    shortcut: "conv" (1x1 conv + BN, and a 3x3 max-pool of `stride` on the main path),
    "identity", or None (block 14, whose ReLUs come after each BN instead of before).
    first_relu=False for block 2, whose input is already ReLU'd.
    """
    residual = x
    if shortcut == "conv":
        conv = layers.Conv2D(
            filters[-1], 1, strides=stride, padding="same", use_bias=False, name=f"{name}_residual_conv"
        )
        residual = conv(x)  # (B, h/stride, w/stride, filters[-1])
        residual = batch_norm(f"{name}_residual_bn")(residual)
    for i, f in enumerate(filters, 1):
        prefix = f"{name}_sepconv{i}"
        if shortcut is not None and (i > 1 or first_relu):
            x = layers.Activation("relu", name=f"{prefix}_act")(x)
        sepconv = layers.SeparableConv2D(
            f, 3, padding="same", dilation_rate=dilation, use_bias=False, name=prefix
        )
        x = sepconv(x)
        x = batch_norm(f"{prefix}_bn")(x)
        if shortcut is None:
            x = layers.Activation("relu", name=f"{prefix}_act")(x)
    if shortcut == "conv":
        x = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"{name}_pool")(x)
    return x if shortcut is None else layers.Add(name=f"{name}_add")([x, residual])


def xception_backbone(x, output_stride=16):
    """Xception features of a [-1, 1] image (B, H, W, C): (B, H/os, W/os, 2048)."""
    if output_stride not in OUTPUT_STRIDES:
        raise KsegError(f"output_stride must be one of {OUTPUT_STRIDES}. Received: {output_stride!r}")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="block1_conv1")(x)
    x = batch_norm("block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)  # (B, H/2, W/2, 32)
    x = layers.Conv2D(64, 3, padding="same", use_bias=False, name="block1_conv2")(x)
    x = batch_norm("block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)  # (B, H/2, W/2, 64)
    current, dilation = 2, 1  # stride reached so far; dilation of the next convs
    for n, filters, shortcut in ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW:
        # Strided blocks (2, 3, 4, 13) halve the grid until output_stride is reached;
        # past it they keep stride 1 and every later conv is dilated x2 instead.
        stride = 2 if shortcut == "conv" and current < output_stride else 1
        x = xception_block(x, filters, f"block{n}", shortcut, stride, dilation, n != 2)
        if shortcut == "conv" and stride == 1:
            dilation *= 2
        current *= stride
    return x  # (B, H/os, W/os, 2048)


def xception(input_shape=(None, None, 3), output_stride=32):
    """The bare backbone as a keras.Model (input in [-1, 1]), e.g. for weight loading tests."""
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, xception_backbone(inputs, output_stride), name="xception")


def backbone_layers(model):
    """The weight-bearing Xception layers of `model`, in model order."""
    return [layer for layer in model.layers if layer.name.startswith("block") and layer.weights]


def _source_layers(weights):
    """Weight-bearing layers of a keras.applications Xception given as instance or file."""
    if isinstance(weights, keras.Model):
        model = weights
    else:
        path = os.fspath(weights)
        if path == "imagenet":  # Keras' own: its cache ~/.keras/models, a download where online
            from kseg.models.encoder import keras_imagenet

            model = keras_imagenet("xception", lambda: keras.applications.Xception(include_top=False))
            return [layer for layer in model.layers if layer.weights]
        if not os.path.isfile(path):
            raise KsegError(f"Xception weights file {path!r} not found; pass a local .h5 file.")
        # Keras' own Xception reads both its native .weights.h5 and the legacy ImageNet .h5.
        model = keras.applications.Xception(include_top=False, weights=None)
        try:
            model.load_weights(path)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KsegError(f"{path}: not Xception(include_top=False) weights ({reason}).") from exc
    return [layer for layer in model.layers if layer.weights and layer.name != "predictions"]


def load_xception_weights(model_or_backbone, weights):
    """Copy keras.applications Xception weights into the backbone of `model_or_backbone`.

    Args:
        model_or_backbone: a kseg DeepLabV3 or bare `xception()` model (any output_stride).
        weights: "imagenet" (keras.applications' own weights, through Keras' cache), the
            path of a `Xception(include_top=False)` weights file (.weights.h5, or the
            legacy ImageNet .h5), or a keras.applications Xception instance.

    Layers are paired in order; keras' named layers must agree by name, its unnamed
    shortcut convs by class, and every weight by shape. Raises KsegError on mismatch.
    A backbone built for inputs of other than 3 channels gets the RGB kernel of
    `block1_conv1` adapted (kseg.models.adapt; the [-1, 1] input scaling is the same
    for every channel, so one grey channel gives exactly the RGB network on grey).
    """
    source, target = _source_layers(weights), backbone_layers(model_or_backbone)
    if len(source) != len(target):
        raise KsegError(
            f"Xception weights have {len(source)} layers with weights, the backbone "
            f"{len(target)}; pass keras.applications.Xception(include_top=False) weights."
        )
    for src, dst in zip(source, target, strict=True):
        values = src.get_weights()
        if dst.name == "block1_conv1":  # (3, 3, 3, 32) -> (3, 3, C, 32)
            values = [adapt_kernel(values[0], dst.kernel.shape[2])[0]]
        shapes = [tuple(w.shape) for w in values], [tuple(w.shape) for w in dst.weights]
        named = src.name.startswith("block")
        if (named and src.name != dst.name) or type(src) is not type(dst) or shapes[0] != shapes[1]:
            raise KsegError(
                f"Xception weights: layer {src.name!r} {shapes[0]} does not fit {dst.name!r} {shapes[1]}."
            )
        dst.set_weights(values)
    return model_or_backbone
