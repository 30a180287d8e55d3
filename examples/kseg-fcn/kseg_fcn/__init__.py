"""A small FCN-8s-style network, registered with kseg as "fcn".

Five stride-2 conv stages; class scores are read at strides 8, 16 and 32, summed after
upsampling (the FCN-8s skip scheme) and the logits are upsampled x8 to the input size.
Only built-in Keras layers, so a saved model loads without kseg.
"""

import keras
from keras import layers

import kseg

__version__ = "0.1.0"


def conv_stage(x, filters, name):
    """Two 3x3 conv-BN-ReLU, then a 2x2 max-pool: (B, H, W, C) -> (B, H/2, W/2, filters)."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def score(x, num_classes, name):
    return layers.Conv2D(num_classes, 1, name=name)(x)


@kseg.register_model("fcn", stride=32)
def fcn(num_classes=12, input_shape=(None, None, 3), width=32, activation=None, **kwargs):
    """FCN-8s-style network (example plugin): score maps at strides 8, 16, 32."""
    if kwargs:
        raise ValueError(f"fcn takes no arguments {sorted(kwargs)}. Received: {kwargs}")
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    taps = {}
    for i, mult in enumerate((1, 2, 4, 8, 8), start=1):
        x = conv_stage(x, width * mult, name=f"block{i}")
        taps[2**i] = x  # stride -> features
    s32 = score(taps[32], num_classes, "score32")  # (B, H/32, W/32, K)
    s16 = layers.Add(name="fuse16")(
        [
            layers.UpSampling2D(2, interpolation="bilinear", name="up32")(s32),
            score(taps[16], num_classes, "score16"),
        ]
    )
    s8 = layers.Add(name="fuse8")(
        [
            layers.UpSampling2D(2, interpolation="bilinear", name="up16")(s16),
            score(taps[8], num_classes, "score8"),
        ]
    )
    logits = layers.UpSampling2D(8, interpolation="bilinear", dtype="float32", name="segmentation_output")(s8)
    outputs = logits
    if activation:
        outputs = layers.Activation(activation, dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="fcn")
