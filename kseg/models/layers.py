"""Small blocks shared by the built-in networks: input, conv-BN-ReLU and the logits head.

Only builtin keras layers are used anywhere in kseg's networks, so a saved `.keras`
file loads in a bare `import keras` process with `safe_mode=True` and no custom objects.
"""

from kseg.errors import KsegError
from kseg.models.lazy import keras, layers

ACTIVATIONS = (None, "softmax")
# Keras' default BN momentum (0.99) leaves the moving statistics near their initial
# values for the first few hundred steps, so short runs (the demo, a CPU epoch) score
# like noise at inference. 0.9 is PyTorch's default (its momentum=0.1) and tracks the
# data within ~20 steps. Momentum is not a weight: ImageNet weights load unchanged.
BN_MOMENTUM = 0.9


def check_args(name, num_classes, input_shape, stride, activation, **named):
    """Validate the builder arguments every network shares, and the builder's own ones;
    fail with one line that names the argument, the expected type and the value.

    named: the builder's other arguments as `arg=(value, kind)` or `arg=(value, kind, n)`.
    kind is a key of ARG_KINDS ("int", "ints", "number", "str", "bool"), or a tuple of
    allowed values; n fixes the length of an "ints" list. For example
    `check_args("unet", ..., decoder_filters=(decoder_filters, "ints", 5))`.
    """
    _check_arg(name, "num_classes", num_classes, "int")
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not (_is_int(input_shape[-1]) and input_shape[-1] > 0)):
        raise KsegError(f"{name}: input_shape must be a tuple (H, W, C), C channels (3 for RGB). "
                        f"Received: input_shape={input_shape!r}")
    for side in input_shape[:2]:
        if side is not None and not (_is_int(side) and side > 0):
            raise KsegError(f"{name}: input_shape sides must be positive ints or None. "
                            f"Received: input_shape={tuple(input_shape)!r}")
        if side is not None and side % stride:
            raise KsegError(
                f"{name}: input sides must be multiples of {stride} (or None). "
                f"Received: input_shape={tuple(input_shape)!r}"
            )
    if activation not in ACTIVATIONS:
        raise KsegError(f"{name}: activation must be one of {ACTIVATIONS}. "
                        f"Received: activation={activation!r}")
    for arg, spec in named.items():
        _check_arg(name, arg, *spec)


# kind -> (test, what the message calls it)
ARG_KINDS = {
    "int": (lambda v: _is_int(v) and v > 0, "a positive int"),
    "ints": (lambda v: isinstance(v, (list, tuple)) and all(_is_int(i) and i > 0 for i in v),
             "a list of positive ints"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}


def _check_arg(builder, arg, value, kind, length=None):
    if isinstance(kind, tuple):
        ok, expected = value in kind, f"one of {kind}"
    else:
        test, expected = ARG_KINDS[kind]
        ok = test(value) and (length is None or len(value) == length)
        expected = expected.replace("a list of", f"a list of {length}") if length else expected
    if not ok:
        raise KsegError(f"{builder}: {arg} must be {expected}. "
                        f"Received: {arg}={value!r} ({type(value).__name__})")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# ImageNet statistics of [0, 1] RGB, as torchvision and timm normalise for their ResNets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSING_MODES = ("tf", "torch")


def imagenet_stats(channels):
    """(mean, std) per input channel: RGB's for 3; their averages for 1 (a grey image);
    for other counts channel i takes RGB channel i % 3's, as its first-conv kernel does
    (kseg.models.adapt)."""
    if channels == 1:
        return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    return (tuple(IMAGENET_MEAN[i % 3] for i in range(channels)),
            tuple(IMAGENET_STD[i % 3] for i in range(channels)))


def image_input(input_shape, mode="tf"):
    """`(image, x)`: the float32 [0, 255] image input and its normalised tensor.

    mode: "tf" (default) rescales to [-1, 1], x/127.5 - 1, the Xception convention;
    "torch" applies torchvision's ImageNet normalisation, (x/255 - mean)/std per channel,
    for encoders with PyTorch weights (keras.applications' preprocess modes), with the
    statistics of `imagenet_stats` for inputs of other than 3 channels.
    Either way a builtin `Rescaling` named `preprocess`, so the models take raw pixels.
    """
    image = keras.Input(shape=tuple(input_shape), name="image")  # (B, H, W, C) in [0, 255]
    if mode == "tf":
        x = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(image)
    elif mode == "torch":
        # (x/255 - mean)/std = x * 1/(255 std) - mean/std; lists serialise as JSON.
        mean, std = imagenet_stats(input_shape[-1])
        scale = [1 / (255 * s) for s in std]
        offset = [-m / s for m, s in zip(mean, std, strict=True)]
        x = layers.Rescaling(scale, offset=offset, name="preprocess")(image)
    else:
        raise KsegError(f"preprocessing mode must be one of {PREPROCESSING_MODES}. Received: {mode!r}")
    return image, x


def batch_norm(name, epsilon=1e-3):
    """BatchNormalization with kseg's momentum (see BN_MOMENTUM)."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=epsilon, name=name)


def conv_bn_relu(
    x,
    filters,
    kernel_size,
    name,
    strides=1,
    dilation_rate=1,
    relu=True,
    epsilon=1.001e-5,
    symmetric_padding=False,
):
    """Conv (no bias: BN's beta replaces it) + BN [+ ReLU], named `{name}_conv/_bn/_relu`.

    epsilon: BN epsilon; 1.001e-5 is keras.applications' ResNet value, PyTorch's is 1e-5.
    symmetric_padding: for a strided conv, pad d*(k//2) on every side (`{name}_pad`) and
        convolve "valid", as PyTorch does. "same" pads the odd pixel only at the bottom
        and right, which samples a grid shifted by one pixel from PyTorch's on even
        inputs. Output shapes are equal either way; stride-1 "same" is already symmetric.
    """
    padding = "same"
    if symmetric_padding and strides != 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(dilation_rate * (kernel_size // 2), name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding=padding,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = batch_norm(f"{name}_bn", epsilon=epsilon)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def atrous_conv_bn_relu(x, filters, rate, name):
    """3x3 conv with dilation `rate` ("same" padding) + BN + ReLU, as nine 1x1 convs.

    TensorFlow runs a dilated Conv2D on the CPU through SpaceToBatchND and, when the
    rate nears the map size (ASPP: rates 6-18 on the 8x8 map of a 128 px patch), works
    mostly on padding: 0.4-2 GFLOP/s measured on 2 cores, with or without XLA. A shift
    commutes with a 1x1 conv, so tap (i, j) of the dilated kernel is applied first, as
    a 1x1 conv C -> F, and its F-channel result is shifted by ((i - 1) r, (j - 1) r)
    (zero padding + crop); the nine are summed. Shifting F = 256 channels instead of
    the C = 2048 input channels makes the pad/crop gradients 8x smaller (they were a
    third of a DeepLabV3 train step). Builtin layers only; `{name}_tap{i}{j}_conv`
    holds kernel[i, j] of the (3, 3, C, F) dilated kernel, so the function and the
    parameter count are those of the dilated conv.
    """
    shifted = []
    for i in range(3):
        for j in range(3):
            z = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_tap{i}{j}_conv")(x)  # (B, h, w, F)
            if (i, j) != (1, 1):
                z = layers.ZeroPadding2D(rate, name=f"{name}_tap{i}{j}_pad")(z)  # (B, h + 2r, w + 2r, F)
                crop = ((i * rate, (2 - i) * rate), (j * rate, (2 - j) * rate))
                z = layers.Cropping2D(crop, name=f"{name}_tap{i}{j}")(z)  # z shifted by ((i-1) r, (j-1) r)
            shifted.append(z)
    x = layers.Add(name=f"{name}_sum")(shifted)  # (B, h, w, F)
    x = batch_norm(f"{name}_bn", epsilon=1.001e-5)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def segmentation_head(x, num_classes, activation=None, upsample=1):
    """1x1 conv `segmentation_output` -> logits; optional bilinear upsample and softmax.

    Every layer from here on is float32 so logits stay float32 under mixed precision.
    """
    x = layers.Conv2D(num_classes, 1, name="segmentation_output", dtype="float32")(x)
    if upsample > 1:
        # Upsampling K-channel logits is far cheaper than upsampling 256-channel features.
        x = layers.UpSampling2D(
            upsample, interpolation="bilinear", name="segmentation_upsample", dtype="float32"
        )(x)
    if activation is not None:
        x = layers.Activation(activation, name="probabilities", dtype="float32")(x)
    return x
