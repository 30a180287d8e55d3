"""PyTorch ResNet-34 weights (torchvision or timm) for kseg's U-Net encoder, from local files.

A checkpoint is read into `{torch name: numpy array}` from `.pth`/`.pt` (torch.load with
weights_only=True, so PyTorch must be installed) or `.safetensors` (parsed here with
numpy: an 8-byte little-endian header length, a JSON header of dtype, shape and
data_offsets per tensor, then the raw little-endian data). torchvision's and timm's
resnet34 share their parameter names, which map onto kseg's by name:

    conv1.weight                     -> conv1_conv          (OIHW -> HWIO)
    bn1.{weight,bias,running_mean,running_var}
                                     -> conv1_bn            (gamma, beta, moving mean/var)
    layer{s}.{b}.conv{p}.weight      -> conv{s+1}_block{b+1}_{p}_conv,  p = 1, 2
    layer{s}.{b}.bn{p}.*             -> conv{s+1}_block{b+1}_{p}_bn
    layer{s}.0.downsample.0.weight   -> conv{s+1}_block1_0_conv (projection shortcut)
    layer{s}.0.downsample.1.*        -> conv{s+1}_block1_0_bn

`fc.*` (the classifier) and `*.num_batches_tracked` are ignored; any other unused
tensor, any missing one and any shape mismatch is a KsegError. An encoder built for
inputs of other than 3 channels gets `conv1.weight` adapted (kseg.models.adapt).
"""

import json
import os
import re
from collections.abc import Mapping

import numpy as np

from kseg.errors import KsegError
from kseg.models.adapt import adapt_kernel
from kseg.models.layers import IMAGENET_MEAN, IMAGENET_STD

EXTENSIONS = (".pth", ".pt", ".safetensors")
# safetensors dtype -> little-endian numpy dtype; BF16 (no numpy dtype) is widened by hand.
SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
WRAPPER_KEYS = ("state_dict", "model")  # training checkpoints nest the weights under these
IGNORED = re.compile(r"^fc\.|\.num_batches_tracked$")
ENCODER_LAYER = re.compile(r"^conv1_(conv|bn)$|^conv([2-5])_block(\d+)_([012])_(conv|bn)$")
BN_PARAMS = (
    ("gamma", "weight"),
    ("beta", "bias"),
    ("moving_mean", "running_mean"),
    ("moving_variance", "running_var"),
)


def _size(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_safetensors(path):
    """`{name: numpy array}` of a .safetensors file (F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL)."""
    with open(path, "rb") as f:
        data = f.read()
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 <= size <= len(data) - 8:
        raise KsegError(f"{path}: not a .safetensors file (bad header length).")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError as exc:
        raise KsegError(f"{path}: not a .safetensors file (header is not JSON: {exc}).") from exc
    if not isinstance(header, dict):
        raise KsegError(f"{path}: not a .safetensors file (its header is a JSON {type(header).__name__}, "
                        f"not an object of tensors).")
    body = memoryview(data)[8 + size :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            if not isinstance(dtype, str) or not all(_size(n) for n in (*shape, begin, end)):
                raise ValueError("a dtype name, and sizes and offsets >= 0")  # not [-2, -2], 1.5, "a"
        except (KeyError, TypeError, ValueError) as exc:
            raise KsegError(f"{path}: tensor {name!r} has a malformed header entry: {info!r:.200}.") from exc
        if dtype not in SAFETENSORS_DTYPES:
            raise KsegError(
                f"{path}: tensor {name!r} has dtype {dtype}; supported: {', '.join(SAFETENSORS_DTYPES)}."
            )
        np_dtype = np.dtype(SAFETENSORS_DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(body) or end - begin != count * np_dtype.itemsize:
            raise KsegError(
                f"{path}: tensor {name!r} ({dtype}, shape {shape}) has data_offsets "
                f"[{begin}, {end}] that do not fit its size or the file."
            )
        array = np.frombuffer(body, np_dtype, count, offset=begin).reshape(shape)
        if dtype == "BF16":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    return tensors


def _read_torch(path):
    """`{name: numpy array}` of a torch.save'd state dict (tensors only)."""
    try:
        import torch
    except ImportError as exc:
        raise KsegError(
            f"{path}: reading .pth/.pt needs PyTorch (pip install torch); or convert it to .safetensors."
        ) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KsegError(f"{path}: torch.load(weights_only=True) failed ({reason}).") from exc
    state = _unwrap(obj, path)
    # numpy has no bfloat16: widen floats to float32 (exact for bf16 and f16).
    return {
        k: (v.float() if v.is_floating_point() else v).numpy()
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
    }


def _unwrap(obj, path):
    """The state dict inside a `{"state_dict": ...}` / `{"model": ...}` checkpoint, keys
    without DataParallel's `module.` prefix."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise KsegError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_state_dict(path):
    """`{torch parameter name: numpy array}` from a local .pth, .pt or .safetensors file.

    A `state_dict`/`model` wrapper and a `module.` prefix are removed. Never downloads.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if path == "imagenet":
        raise KsegError(
            "encoder_weights='imagenet': kseg never downloads. Pass a local torchvision or "
            "timm resnet34 checkpoint (.pth, .pt or .safetensors)."
        )
    if ext not in EXTENSIONS:
        raise KsegError(
            f"{path}: unknown weights format {ext or '(no extension)'!r}; use {', '.join(EXTENSIONS)}."
        )
    if not os.path.isfile(path):
        raise KsegError(f"ResNet-34 weights file {path!r} not found; pass a local file.")
    if ext == ".safetensors":
        return _unwrap(read_safetensors(path), path)
    return _read_torch(path)


def resnet34_state_dict(weights):
    """`weights` (a path, or a mapping of names to arrays) as `{torch name: numpy array}`."""
    if isinstance(weights, Mapping):
        return {k: np.asarray(v) for k, v in _unwrap(weights, "state dict").items()}
    return read_state_dict(weights)


def torch_key(layer_name):
    """The torch parameter prefix of a kseg encoder layer: `conv3_block1_0_bn` -> `layer2.0.downsample.1`."""
    match = ENCODER_LAYER.match(layer_name)
    if match is None:
        return None
    if match[1]:  # the stem
        return "conv1" if match[1] == "conv" else "bn1"
    stage, block, part, kind = int(match[2]), int(match[3]), int(match[4]), match[5]
    module = (f"downsample.{0 if kind == 'conv' else 1}") if part == 0 else f"{kind}{part}"
    return f"layer{stage - 1}.{block - 1}.{module}"


def _pairs(layer, prefix, state, where):
    """`[(variable, array, key)]` for one kseg layer, every array checked against its variable."""
    if layer.__class__.__name__ == "Conv2D":
        wanted = [(layer.kernel, f"{prefix}.weight", (3, 2, 0, 1))]  # HWIO as OIHW
    else:
        wanted = [(getattr(layer, ours), f"{prefix}.{theirs}", None) for ours, theirs in BN_PARAMS]
    pairs = []
    for variable, key, to_torch in wanted:
        shape = tuple(variable.shape)
        expected = tuple(shape[i] for i in to_torch) if to_torch else shape
        if key not in state:
            raise KsegError(f"{where}: missing {key} (shape {expected}) for kseg layer {layer.name}.")
        array = state[key]
        if tuple(array.shape) != expected:
            raise KsegError(
                f"{where}: {key} has shape {tuple(array.shape)}, kseg layer {layer.name} needs {expected}."
            )
        if to_torch:
            array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        pairs.append((variable, np.asarray(array, dtype=variable.dtype), key))
    return pairs


def adapt_stem(state, channels):
    """The state dict with `conv1.weight` (64, 3, 7, 7) adapted to `channels` inputs, and
    for one channel `bn1.running_mean` shifted by the adaptation's delta (kseg.models.adapt)."""
    weight = state.get("conv1.weight")
    if channels == 3 or weight is None or np.ndim(weight) != 4 or weight.shape[1] != 3:
        return state  # RGB, or not a ResNet stem: the shape checks report it
    kernel, delta = adapt_kernel(weight.transpose(2, 3, 1, 0), channels, IMAGENET_MEAN, IMAGENET_STD)
    state = {**state, "conv1.weight": kernel.transpose(3, 2, 0, 1)}  # HWIO -> OIHW
    if "bn1.running_mean" in state:
        state["bn1.running_mean"] = state["bn1.running_mean"] - delta
    return state


def load_resnet34_weights(model, weights, source=None):
    """Copy torchvision/timm resnet34 weights into the ResNet-34 encoder of `model`.

    Args:
        model: a kseg U-Net (or a model from `resnet34_encoder`) built torch-compatible,
            as `kseg.create_model("unet", encoder_weights=...)` does; otherwise PyTorch's
            weights would see other padding, epsilon and input normalisation.
        weights: path of a .pth/.pt/.safetensors resnet34 checkpoint, or a state dict.
        source: what error messages call `weights` (default: its path, or "state dict").

    Every encoder layer must receive every weight, with PyTorch's shape; every tensor
    but `fc.*` and `num_batches_tracked` must be used. Raises KsegError otherwise, and
    then changes nothing.
    """
    where = source or (os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else "state dict")
    state = resnet34_state_dict(weights)
    names = [layer.name for layer in model.layers]
    if "conv1_pad" not in names:
        raise KsegError(
            f"{model.name}: encoder not built for PyTorch weights; use "
            "kseg.create_model('unet', encoder_weights=path)."
        )
    state = adapt_stem(state, model.get_layer("conv1_conv").kernel.shape[2])
    pairs = []
    for layer in model.layers:
        prefix = torch_key(layer.name)
        if prefix is not None and layer.weights:
            pairs += _pairs(layer, prefix, state, where)
    used = {key for _, _, key in pairs}
    unused = sorted(k for k in state if k not in used and not IGNORED.search(k))
    if unused:  # e.g. a ResNet-50, or a deep-stem resnet34d
        shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
        raise KsegError(f"{where}: not a ResNet-34 state dict: {len(unused)} unused tensors ({shown}).")
    for variable, array, _ in pairs:
        variable.assign(array)
    return model
