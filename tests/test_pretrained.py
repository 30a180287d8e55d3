"""ResNet-34 weights from PyTorch checkpoints: safetensors parsing, mapping by name, errors,
saving, and PyTorch's features reproduced (torchvision's resnet34 where it is installed, the
same network in plain torch where only torch is)."""

import json
import sys

import keras
import numpy as np
import pytest

import kseg
from kseg.errors import KsegError
from kseg.models.pretrained import load_resnet34_weights, read_safetensors, read_state_dict
from kseg.models.unet import resnet34_encoder

SIDE = 64
NUM_CLASSES = 3
TAPS = {  # kseg layer -> torchvision module whose output it equals
    "conv1_relu": "relu",
    "conv2_block3_out": "layer1",
    "conv3_block4_out": "layer2",
    "conv4_block6_out": "layer3",
    "conv5_block3_out": "layer4",
}
NO_TORCHVISION = "torchvision not installed: pip install torch torchvision (CUDA wheels, several GB)"


def write_safetensors(path, tensors):
    """A minimal safetensors writer, independent of the reader: `{name: (dtype, array)}`."""
    codes = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, array) in tensors.items():
        if dtype == "BF16":  # the upper 16 bits of each float32
            data = (np.asarray(array, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = np.ascontiguousarray(array, codes[dtype]).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(np.shape(array)),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the spec pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(chunks))


def resnet34_shapes():
    """torchvision's resnet34 state-dict shapes, written out from the paper's 3-4-6-3 table."""

    def bn(prefix, c):
        return {f"{prefix}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()
        }

    shapes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    cin = 64
    for stage, (c, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            shapes[f"{p}.conv1.weight"] = (c, cin if b == 0 else c, 3, 3)
            shapes |= bn(f"{p}.bn1", c)
            shapes[f"{p}.conv2.weight"] = (c, c, 3, 3)
            shapes |= bn(f"{p}.bn2", c)
            if b == 0 and cin != c:
                shapes[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                shapes |= bn(f"{p}.downsample.1", c)
        cin = c
    return shapes | {"fc.weight": (1000, 512), "fc.bias": (1000,)}


def random_state(seed=0):
    """`{name: array}` of resnet34's shapes; BN variances positive, counters int64."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in resnet34_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(7, dtype=np.int64)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            state[name] = rng.normal(0, 0.1, shape).astype(np.float32)
    return state


def as_safetensors(state):
    return {k: ("I64" if v.dtype == np.int64 else "F32", v) for k, v in state.items()}


def image_batch(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, SIDE, SIDE, 3)).astype("float32")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(state dict, its .safetensors path, a U-Net built from that file)."""
    state = random_state()
    path = tmp_path_factory.mktemp("weights") / "resnet34.safetensors"
    write_safetensors(path, as_safetensors(state))
    model = kseg.create_model("unet", num_classes=NUM_CLASSES, encoder_weights=str(path))
    return state, path, model


# ---------------------------------------------------------------- safetensors


def test_safetensors_dtypes_parse(tmp_path):
    rng = np.random.default_rng(1)
    f32 = rng.normal(size=(2, 3)).astype(np.float32)
    bf16 = (f32.view(np.uint32) & 0xFFFF0000).view(np.float32)  # exactly representable
    tensors = {
        "f32": ("F32", f32),
        "f16": ("F16", np.array([[0.5, -2.0, 65504.0]], np.float16)),
        "bf16": ("BF16", bf16),
        "i64": ("I64", np.array([-3, 2**40], np.int64)),
        "scalar": ("I64", np.array(5, np.int64)),
    }
    write_safetensors(tmp_path / "t.safetensors", tensors)
    read = read_safetensors(tmp_path / "t.safetensors")
    assert sorted(read) == sorted(tensors)  # __metadata__ is not a tensor
    for name, (_, array) in tensors.items():
        assert read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)
    assert read["bf16"].dtype == np.float32 and read["f16"].dtype == np.float16
    assert read["i64"].dtype == np.int64 and read["i64"][1] == 2**40
    # bfloat16 1.0 is 0x3F80; -2.0 is 0xC000.
    write_safetensors(tmp_path / "b.safetensors", {"x": ("BF16", np.array([1.0, -2.0], np.float32))})
    raw = (tmp_path / "b.safetensors").read_bytes()
    assert raw[-4:] == bytes([0x80, 0x3F, 0x00, 0xC0])
    np.testing.assert_array_equal(read_safetensors(tmp_path / "b.safetensors")["x"], [1.0, -2.0])


def test_safetensors_bad_offsets_and_header_are_user_errors(tmp_path):
    write_safetensors(tmp_path / "t.safetensors", {"w": ("F32", np.zeros(4, np.float32))})
    raw = bytearray((tmp_path / "t.safetensors").read_bytes())
    (tmp_path / "cut.safetensors").write_bytes(raw[:-4])  # data shorter than the header says
    with pytest.raises(KsegError, match="'w'.*data_offsets"):
        read_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(KsegError, match="header length"):
        read_safetensors(tmp_path / "junk.safetensors")


# ---------------------------------------------------------------- mapping onto the encoder


def test_synthetic_state_dict_maps_by_name(synthetic):
    state, _, model = synthetic
    kernel = model.get_layer("conv1_conv").kernel
    np.testing.assert_array_equal(kernel, state["conv1.weight"].transpose(2, 3, 1, 0))
    shortcut = model.get_layer("conv3_block1_0_conv").kernel  # (1, 1, 64, 128)
    np.testing.assert_array_equal(shortcut, state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    bn = model.get_layer("conv4_block6_2_bn")
    for ours, theirs in (
        ("gamma", "weight"),
        ("beta", "bias"),
        ("moving_mean", "running_mean"),
        ("moving_variance", "running_var"),
    ):
        np.testing.assert_array_equal(getattr(bn, ours), state[f"layer3.5.bn2.{theirs}"])
    np.testing.assert_array_equal(
        model.get_layer("conv5_block1_0_bn").moving_variance, state["layer4.0.downsample.1.running_var"]
    )
    # Every encoder weight came from the checkpoint: count them against its tensors.
    encoder = [
        w
        for layer in model.layers
        if layer.name.startswith(("conv1_", "conv2_", "conv3_", "conv4_", "conv5_"))
        for w in layer.weights
    ]
    loadable = [k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert len(encoder) == len(loadable) == 36 + 36 * 4  # 33 + 3 shortcut convs, their BNs
    assert sum(int(np.prod(w.shape)) for w in encoder) == sum(int(np.prod(state[k].shape)) for k in loadable)


def test_pretrained_unet_is_torch_compatible_and_default_unchanged(synthetic):
    _, _, pretrained = synthetic
    default = kseg.create_model("unet")
    assert default.count_params() == 24_455_436
    assert not [layer.name for layer in default.layers if layer.name.endswith("_pad")]
    assert default.get_layer("conv1_bn").epsilon == pytest.approx(1.001e-5)
    assert default.get_layer("preprocess").get_config()["scale"] == pytest.approx(1 / 127.5)
    # Same weights by name and shape; PyTorch's padding, epsilon and normalisation.
    ours = {w.path: tuple(w.shape) for w in kseg.create_model("unet", num_classes=NUM_CLASSES).weights}
    assert {w.path: tuple(w.shape) for w in pretrained.weights} == ours
    pads = sorted(layer.name for layer in pretrained.layers if layer.name.endswith("_pad"))
    assert pads == [
        "conv1_pad",
        "conv3_block1_1_pad",
        "conv4_block1_1_pad",
        "conv5_block1_1_pad",
        "pool1_pad",
    ]
    assert pretrained.get_layer("conv2_block1_1_bn").epsilon == 1e-5
    assert pretrained.get_layer("decoder_stage1_1_bn").epsilon == pytest.approx(1.001e-5)
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    y = keras.Model(pretrained.input, pretrained.get_layer("preprocess").output)(x)
    np.testing.assert_allclose(np.asarray(y)[0, 0, 0], (x[0, 0, 0] / 255 - mean) / std, rtol=1e-6)


def test_wrapper_dict_and_module_prefix_are_accepted(synthetic):
    state, _, model = synthetic
    wrapped = {"epoch": 3, "model": {f"module.{k}": v * 2 for k, v in state.items()}}
    load_resnet34_weights(model, wrapped)
    np.testing.assert_array_equal(
        model.get_layer("conv1_conv").kernel, 2 * state["conv1.weight"].transpose(2, 3, 1, 0)
    )
    load_resnet34_weights(model, {"state_dict": state})
    np.testing.assert_array_equal(
        model.get_layer("conv1_conv").kernel, state["conv1.weight"].transpose(2, 3, 1, 0)
    )


def test_errors_name_the_key_and_shapes(synthetic, tmp_path, monkeypatch):
    state, _, model = synthetic
    before = np.asarray(model.get_layer("conv1_conv").kernel).copy()
    missing = {k: v for k, v in state.items() if k != "layer3.2.bn1.running_var"}
    with pytest.raises(
        KsegError, match=r"missing layer3\.2\.bn1\.running_var \(shape \(256,\)\).*conv4_block3_1_bn"
    ):
        load_resnet34_weights(model, missing)
    wrong = state | {"conv1.weight": np.zeros((64, 3, 3, 3), np.float32)}
    with pytest.raises(
        KsegError, match=r"conv1\.weight has shape \(64, 3, 3, 3\).*conv1_conv needs \(64, 3, 7, 7\)"
    ):
        load_resnet34_weights(model, wrong)
    extra = state | {"layer1.0.conv3.weight": np.zeros((256, 64, 1, 1), np.float32)}
    with pytest.raises(KsegError, match=r"1 unused tensors \(layer1\.0\.conv3\.weight\)"):
        load_resnet34_weights(model, extra)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel, before)  # nothing half-loaded
    (tmp_path / "r34.npz").write_bytes(b"")
    with pytest.raises(KsegError, match=r"r34\.npz: unknown weights format '\.npz'"):
        read_state_dict(tmp_path / "r34.npz")
    with pytest.raises(KsegError, match="not found"):
        kseg.create_model("unet", encoder_weights=str(tmp_path / "absent.pth"))
    with pytest.raises(KsegError, match="never downloads"):
        kseg.create_model("unet", encoder_weights="imagenet")
    (tmp_path / "r34.pth").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(KsegError, match=r"r34\.pth: reading \.pth/\.pt needs PyTorch.*\.safetensors"):
        read_state_dict(tmp_path / "r34.pth")


def test_loading_into_a_keras_padded_encoder_is_refused(synthetic):
    state, _, _ = synthetic
    inputs = keras.Input((SIDE, SIDE, 3))
    plain = keras.Model(inputs, resnet34_encoder(inputs)["conv5_block3_out"])
    with pytest.raises(KsegError, match="not built for PyTorch weights"):
        load_resnet34_weights(plain, state)


def test_pretrained_unet_round_trips_in_bare_keras(synthetic, tmp_path, run_python):
    _, _, model = synthetic
    x = image_batch(seed=3)
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    run_python(f"""
        import sys, numpy as np, keras
        model = keras.saving.load_model({str(tmp_path / "model.keras")!r}, safe_mode=True)
        assert "kseg" not in sys.modules
        np.save({str(tmp_path / "y.npy")!r}, np.asarray(model(np.load({str(tmp_path / "x.npy")!r}))))
    """)
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------- against PyTorch


def plain_torch_resnet34():
    """ResNet-34 in plain torch, its modules named and shaped as torchvision's resnet34.

    The reference where torchvision is absent (PyPI's torchvision needs a torch build of
    several GB; the CPU torch that `make torch` installs has none): PyTorch's own conv,
    padding, pooling and batch norm are what the Keras encoder must reproduce.
    """
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)  # torchvision strides here
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or cin != c:
                self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):
            shortcut = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(y)) + shortcut)

    net = nn.Module()
    net.conv1, net.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    net.relu, net.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    cin = 64
    for stage, (c, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        stride = 1 if stage == 1 else 2
        layers = [BasicBlock(cin if b == 0 else c, c, stride if b == 0 else 1) for b in range(blocks)]
        setattr(net, f"layer{stage}", nn.Sequential(*layers))
        cin = c
    net.fc = nn.Linear(512, 1000)
    return net


@pytest.fixture(scope="module", params=["torchvision", "plain torch"])
def torch_resnet34(request):
    """A randomly initialised resnet34 (torchvision's, or plain_torch_resnet34) with
    non-identity BN statistics, in eval mode."""
    torch = pytest.importorskip("torch", reason="torch not installed: make torch")
    torch.manual_seed(0)
    if request.param == "torchvision":
        torchvision = pytest.importorskip("torchvision", reason=NO_TORCHVISION)
        net = torchvision.models.resnet34(weights=None)
    else:
        net = plain_torch_resnet34()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def torch_taps(net, x_nhwc):
    """torchvision's stem and stage outputs on a [0, 255] NHWC batch, as NHWC arrays."""
    import torch

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((x_nhwc / 255 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    out = {}
    with torch.no_grad():
        x = out["relu"] = net.relu(net.bn1(net.conv1(x)))
        x = net.maxpool(x)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = out[name] = getattr(net, name)(x)
    return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in out.items()}


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_encoder_features_equal_pytorch_resnet34(torch_resnet34, fmt, tmp_path):
    import torch

    state = torch_resnet34.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == resnet34_shapes()
    path = tmp_path / f"resnet34.{fmt}"
    if fmt == "pth":  # a training checkpoint from DataParallel
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        arrays = {k: v.numpy() for k, v in state.items()}
        write_safetensors(path, as_safetensors(arrays))
    model = kseg.create_model("unet", num_classes=NUM_CLASSES, encoder_weights=path)
    x = image_batch(seed=4)
    ours = keras.Model(model.input, [model.get_layer(name).output for name in TAPS])(x, training=False)
    theirs = torch_taps(torch_resnet34, x)
    for (name, module), got in zip(TAPS.items(), ours, strict=True):
        want = theirs[module]
        assert got.shape == want.shape, name
        scale = np.abs(want).max()
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_fit_setting_encoder_weights_reaches_the_builder(synthetic):
    """`kseg fit --encoder-weights FILE` builds the run's U-Net from the file."""
    from kseg.data.dataset_spec import CAMVID
    from kseg.training import checkpoints
    from kseg.training.recipes import resolve

    state, path, _ = synthetic
    cfg, _ = resolve("unet", encoder_weights=str(path))
    model = checkpoints.create(cfg, CAMVID)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel,
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    assert model.output_shape[-1] == CAMVID.num_classes
