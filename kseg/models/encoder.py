"""A keras.applications backbone (a row of kseg.models.backbones) as the nested model
`encoder`, with its weights obtained the Keras way.

The encoder is a keras.Model named `encoder` inside the segmentation network, from the
normalised image to the features at strides 2..32 that the backbone has. Nesting keeps
keras.applications' layer names (the taps, the weight files) and marks the encoder's
layers for the fine-tuning controls (`encoder_layers`: frozen epochs, a lower LR).

Weights (`encoder_weights`):
- None: random initialisation;
- "imagenet": keras.applications' own `weights="imagenet"`, i.e. `keras.utils.get_file`
  with the file's hash, from Keras' cache (~/.keras/models, or $KERAS_HOME/models), and a
  download only where the file is not there and the machine is online;
- a path: a weights file of that keras.applications model (include_top=False), as
  keras.applications reads it (`weights=path`);
- a keras.Model: the keras.applications model itself.
The weights are read into an RGB instance of the backbone and copied in order, the first
conv adapted on the way: flipped from BGR to RGB for the Caffe ResNets, and adapted to
the input's channel count (kseg.models.adapt) for --channels other than 3.
"""

import os
import warnings

import numpy as np

from kseg.errors import KsegError
from kseg.models.adapt import adapt_kernel
from kseg.models.backbones import BACKBONES, STRIDES
from kseg.models.lazy import keras

ENCODER = "encoder"  # the nested model's name


def backbone_row(backbone):
    if backbone not in BACKBONES:
        raise KsegError(f"Unknown backbone {backbone!r}. Known backbones: {', '.join(BACKBONES)}.")
    return BACKBONES[backbone]


def input_statistics(backbone, channels):
    """(mean, std) per input channel in pixel units: the row's RGB values for 3 channels;
    their averages for 1 (grey); RGB channel i % 3's for other counts, as the adapted
    first-conv kernel repeats R, G, B (kseg.models.adapt)."""
    mean, std = backbone_row(backbone).normalisation
    if channels == 1:
        return (sum(mean) / 3,), (sum(std) / 3,)
    return tuple(mean[i % 3] for i in range(channels)), tuple(std[i % 3] for i in range(channels))


def preprocess(image, backbone):
    """The builtin `Rescaling` named `preprocess`: [0, 255] pixels -> (x - mean) / std."""
    mean, std = input_statistics(backbone, image.shape[-1])
    scale = [1 / s for s in std]
    offset = [-m / s for m, s in zip(mean, std, strict=True)]
    return keras.layers.Rescaling(scale, offset=offset, name="preprocess")(image)


def application(backbone, channels, weights=None):
    """keras.applications' model of `backbone`, include_top=False, for (None, None, channels)."""
    row = backbone_row(backbone)
    kwargs = {"include_preprocessing": False} if row.has_preprocessing_arg else {}
    with warnings.catch_warnings():  # MobileNetV3's "input_shape is undefined or non-square"
        warnings.simplefilter("ignore", UserWarning)
        return getattr(keras.applications, row.constructor)(
            include_top=False, weights=weights, input_shape=(None, None, channels), **kwargs)


def _tap(model, tap):
    if tap == "output":
        return model.output
    if tap.startswith("in:"):
        return model.get_layer(tap[3:]).input
    return model.get_layer(tap).output


def tap_outputs(model, backbone):
    """The tensors of `model` (keras.applications' `backbone`) that the row's taps name,
    shallow to deep, the absent ones left out."""
    return [_tap(model, tap) for tap in backbone_row(backbone).taps if tap is not None]


def build_encoder(backbone, channels=3, weights=None):
    """`(encoder, strides)`: the keras.Model `encoder` from a normalised (B, H, W, channels)
    image to its features at `strides` (those of 2, 4, 8, 16, 32 the backbone has),
    shallow to deep, with `weights` (see the module docstring) copied in."""
    row = backbone_row(backbone)
    base = application(backbone, channels)
    if weights is not None:
        copy_weights(base, reference_model(backbone, weights), backbone)
    _shorten_batch_norm_memory(base)
    strides = tuple(stride for stride, tap in zip(STRIDES, row.taps, strict=True) if tap is not None)
    return keras.Model(base.input, tap_outputs(base, backbone), name=ENCODER), strides


BN_MOMENTUM = 0.99  # Keras' default: moving statistics settle within a few hundred steps


def _shorten_batch_norm_memory(model):
    """Some keras.applications backbones (MobileNetV3, EfficientNetV2) keep batch norm's
    moving statistics with momentum 0.999, set for ImageNet's 5,000 steps an epoch: on a
    segmentation set of a few hundred steps an epoch they still hold most of their
    initial (0, 1) after two epochs, and a network trained from scratch predicts one
    class at validation. The momentum is a config value, saved with the model."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, BN_MOMENTUM)


def reference_model(backbone, weights):
    """The RGB keras.applications model of `backbone` holding `weights`."""
    row = backbone_row(backbone)
    if isinstance(weights, keras.Model):
        return weights
    where = "imagenet" if weights == "imagenet" else os.fspath(weights)
    if where != "imagenet" and not os.path.isfile(where):
        raise KsegError(f"{backbone} weights file {where!r} not found; pass a local "
                        f"keras.applications.{row.constructor}(include_top=False) weights file, "
                        f"'imagenet' or none.")
    if where == "imagenet":
        return keras_imagenet(backbone, lambda: application(backbone, 3, "imagenet"))
    try:
        return application(backbone, 3, where)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise KsegError(f"{where}: not keras.applications.{row.constructor}(include_top=False) weights "
                        f"({reason}).") from exc


def keras_imagenet(backbone, build):
    """`build()`, a keras.applications model with weights="imagenet"; Keras' failure to get
    the file (offline, not in its cache) as one line saying where the file goes."""
    try:
        return build()
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise KsegError(f"{backbone}: Keras could not get its ImageNet weights ({reason}). Keras reads "
                        f"them from ~/.keras/models (downloaded once where online): copy the file "
                        f"there, or pass a local weights file.") from exc


def copy_weights(target, reference, backbone):
    """Copy `reference`'s weights (RGB) into `target` (the same backbone for any channels),
    in order; the first conv flipped to RGB (Caffe ResNets) and adapted to the channels."""
    row = backbone_row(backbone)
    values = [np.asarray(w) for w in reference.weights]
    if len(values) != len(target.weights):
        raise KsegError(f"{backbone}: the weights hold {len(values)} arrays, the backbone "
                        f"{len(target.weights)}; pass {row.constructor}(include_top=False) weights.")
    first = next(i for i, v in enumerate(values) if v.ndim == 4)  # the stem conv (kh, kw, 3, F)
    kernel = values[first][:, :, ::-1] if row.bgr else values[first]  # BGR -> RGB input order
    mean, std = row.normalisation
    values[first], delta = adapt_kernel(kernel, target.weights[first].shape[2], mean, std)
    if np.any(delta):  # one channel: fold the grey image's offset into the stem (adapt.py)
        paths = [w.path for w in target.weights]
        if paths[first + 1].endswith("bias"):
            values[first + 1] = values[first + 1] + delta
        else:  # no bias: the stem's batch norm, its moving mean shifted the other way
            mean_at = next(i for i in range(first, len(paths)) if paths[i].endswith("moving_mean"))
            values[mean_at] = values[mean_at] - delta
    for variable, value in zip(target.weights, values, strict=True):
        if tuple(variable.shape) != value.shape:
            raise KsegError(f"{backbone}: weight {variable.path} needs shape {tuple(variable.shape)}, "
                            f"the file has {value.shape}.")
        variable.assign(value)
    return target


def encoder_layers(model):
    """The nested `encoder` model of a kseg network, in a list; empty when it has none."""
    return [layer for layer in model.layers if layer.name == ENCODER and isinstance(layer, keras.Model)]
