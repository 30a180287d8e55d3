"""Local keras-hub preset directories: checked, loaded offline, matched to a variant.

A preset directory is what `backbone.save_to_preset(DIR)` writes (config.json,
model.weights.h5, maybe image_converter.json), or an unpacked Kaggle/Hugging Face
download of one. Hub handles ("mit_b0_ade20k_512", "kaggle://...", "hf://...") are
refused: kseg never downloads.
"""

import copy
import os
from pathlib import Path

from kseg.errors import KsegError

# ImageNet mean/std of [0, 1] RGB, the input normalisation of keras-hub's ResNet and
# MiT presets; used where a preset brings no image_converter.json (and for random init).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def local_dir(name, preset):
    """`preset` as an absolute path to a local preset directory, or a one-line KsegError."""
    if not isinstance(preset, str | os.PathLike):
        raise KsegError(f"{name}: preset must be the path of a local keras-hub preset directory. "
                        f"Received: preset={preset!r}")
    path = Path(preset).expanduser()
    if not (path / "config.json").is_file():
        raise KsegError(
            f"{name}: preset {str(preset)!r} is not a local keras-hub preset directory (no config.json "
            f"there). kseg never downloads: write one with `backbone.save_to_preset(DIR)` (or unpack a "
            f"downloaded preset) and pass --model-arg preset=DIR."
        )
    return str(path.resolve())


def load_backbone(name, path):
    """The keras-hub Backbone saved at `path`, weights included (offline: a local path)."""
    import keras_hub

    try:
        return keras_hub.models.Backbone.from_preset(path)
    except Exception as exc:  # a foreign or truncated preset raises many types
        raise KsegError(f"{name}: cannot load the keras-hub preset at {path} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).") from None


def check_variant(name, encoder, variant):
    """Fail unless the preset's encoder has the variant's defining config (`variant`'s keys)."""
    config = encoder.get_config()
    for key, want in variant.items():
        got = config.get(key)
        if (list(got) if isinstance(got, list | tuple) else got) != want:
            raise KsegError(f"{name}: the preset's {type(encoder).__name__} has {key}={got!r}, "
                            f"{name} needs {want!r}; choose the kseg model that matches the preset.")


def with_image_shape(model, image_shape):
    """A copy of the keras-hub `model` built for `image_shape`, with the same weights.

    Every `image_shape` in its (nested) config is replaced: keras-hub's MiT only runs at
    the size it was built for, and no weight depends on the size.
    """
    import keras

    config = copy.deepcopy(keras.saving.serialize_keras_object(model))
    _replace_key(config, "image_shape", list(image_shape))
    rebuilt = keras.saving.deserialize_keras_object(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _replace_key(tree, key, value):
    if isinstance(tree, dict):
        for k in tree:
            tree[k] = value if k == key else _replace_key(tree[k], key, value)
    elif isinstance(tree, list):
        return [_replace_key(v, key, value) for v in tree]
    return tree


def normalisation(path=None):
    """`(scale, offset)` that map [0, 255] pixels to the network's input: x * scale + offset.

    From the preset's image_converter.json where it has one, else ImageNet mean/std
    ((x/255 - mean)/std = x * 1/(255 std) - mean/std), what keras-hub's ResNet and MiT
    presets use. Lists serialise as JSON in a `Rescaling` layer.
    """
    if path is not None and (Path(path) / "image_converter.json").is_file():
        import keras_hub

        converter = keras_hub.layers.ImageConverter.from_preset(path)
        scale = 1.0 if converter.scale is None else converter.scale
        offset = 0.0 if converter.offset is None else converter.offset
        return _plain(scale), _plain(offset)
    scale = [1 / (255 * s) for s in IMAGENET_STD]
    offset = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    return scale, offset


def _plain(value):
    """A float or a list of floats (converters may hold numpy arrays or tuples)."""
    try:
        return [float(v) for v in value]
    except TypeError:
        return float(value)
