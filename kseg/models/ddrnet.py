"""DDRNet-23-slim (Hong et al. 2021, "Deep Dual-resolution Networks for Real-time and
Accurate Semantic Segmentation of Road Scenes"), built from scratch like kseg's others.

Two branches after a shared stride-8 trunk, exchanging features twice (bilateral fusion):

    stem: 3x3/2 conv-BN-ReLU x2 (32)                          (B, H/4, W/4, 32)
    layer1, layer2: basic blocks (32; 64 at stride 8)           (B, H/8, W/8, 64)
    low branch:  layer3 (128, /16), layer4 (256, /32), layer5 bottleneck (512, /64) -> DAPPM
    high branch: layer3_, layer4_ (64, stays at /8), layer5_ bottleneck (128)
    fusion after layer3 and layer4: low += strided 3x3 convs of high;
                                    high += x2^k upsampled 1x1 conv of low
    head: high + x8 upsampled DAPPM -> BN-ReLU-3x3 conv (64) -> BN-ReLU-1x1 `segmentation_output`
          -> bilinear x8 (`segmentation_upsample`)

The last block of each layer has no ReLU (the paper's no_relu); a branch feeding the
other passes a ReLU first. DAPPM (the deep aggregation pyramid pooling module) runs at
stride 64; there its average pools (5, 9, 17 and global) keep stride 1 ("same" padding)
instead of pooling by 2, 4, 8 and upsampling back: the paper resizes to the map's size,
which Keras' builtin layers cannot do for sides unknown when the graph is built, and at
1/64 (6x8 for a 384x512 frame) the extra cost is nil. Input sides: multiples of 64.
"""

from kseg.errors import KsegError
from kseg.models.layers import batch_norm, check_args, conv_bn_relu, image_input, segmentation_head
from kseg.models.lazy import keras, layers
from kseg.registry import register_model

PLANES, SPP_PLANES, HEAD_PLANES = 32, 128, 64  # the -slim widths (DDRNet-23 doubles them)


def relu(x, name):
    return layers.Activation("relu", name=name)(x)


def basic_block(x, filters, name, stride=1, last_relu=True):
    """ResNet basic block (two 3x3 conv-BN, projected shortcut where the shape changes)."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn_relu(x, filters, 1, f"{name}_0", strides=stride, relu=False)
    y = conv_bn_relu(x, filters, 3, f"{name}_1", strides=stride)
    y = conv_bn_relu(y, filters, 3, f"{name}_2", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return relu(y, f"{name}_out") if last_relu else y


def bottleneck(x, filters, name, stride=1):
    """Bottleneck with expansion 2 (1x1, 3x3/stride, 1x1 to 2*filters), no final ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != 2 * filters:
        shortcut = conv_bn_relu(x, 2 * filters, 1, f"{name}_0", strides=stride, relu=False)
    y = conv_bn_relu(x, filters, 1, f"{name}_1")
    y = conv_bn_relu(y, filters, 3, f"{name}_2", strides=stride)
    y = conv_bn_relu(y, 2 * filters, 1, f"{name}_3", relu=False)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def stage(x, filters, blocks, name, stride=1):
    """`blocks` basic blocks, the first strided, the last without ReLU."""
    for i in range(1, blocks + 1):
        x = basic_block(x, filters, f"{name}_block{i}", stride if i == 1 else 1, last_relu=i < blocks)
    return x


def bn_relu_conv(x, filters, kernel_size, name):
    """Pre-activation unit of DAPPM and the head: BN-ReLU-conv (no bias)."""
    x = relu(batch_norm(f"{name}_bn")(x), f"{name}_relu")
    return layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)


def dappm(x, branch_filters, filters, name="spp"):
    """Deep aggregation pyramid pooling: (B, h, w, C) -> (B, h, w, filters); each scale is
    refined by a 3x3 conv after adding the scale below it (hierarchical residual fusion)."""
    scales = [bn_relu_conv(x, branch_filters, 1, f"{name}_scale0")]
    pooled = [layers.AveragePooling2D(k, strides=1, padding="same", name=f"{name}_pool{i}")(x)
              for i, k in enumerate((5, 9, 17), 1)]
    pooled.append(layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool4")(x))  # (B, 1, 1, C)
    for i, y in enumerate(pooled, 1):
        y = bn_relu_conv(y, branch_filters, 1, f"{name}_scale{i}")
        y = layers.Add(name=f"{name}_fuse{i}")([scales[-1], y])  # the global scale broadcasts
        scales.append(bn_relu_conv(y, branch_filters, 3, f"{name}_process{i}"))
    y = layers.Concatenate(name=f"{name}_concat")(scales)  # (B, h, w, 5 * branch_filters)
    y = bn_relu_conv(y, filters, 1, f"{name}_compression")
    return layers.Add(name=f"{name}_out")([y, bn_relu_conv(x, filters, 1, f"{name}_shortcut")])


def fuse(low, high, stride, name):
    """Bilateral fusion: (low at stride 2^k * high's, high) -> (low + down(high), high + up(low))."""
    down = relu(high, f"{name}_high_relu")
    filters = (low.shape[-1] // 2 ** (stride.bit_length() - 2), low.shape[-1])
    for i in range(stride.bit_length() - 1):  # one 3x3/2 conv per halving; ReLU between them
        last = 2 ** (i + 1) == stride
        down = conv_bn_relu(down, filters[1] if last else filters[0], 3, f"{name}_down{i + 1}", strides=2,
                            relu=not last)
    up = conv_bn_relu(relu(low, f"{name}_low_relu"), high.shape[-1], 1, f"{name}_compression", relu=False)
    up = layers.UpSampling2D(stride, interpolation="bilinear", name=f"{name}_up")(up)
    return layers.Add(name=f"{name}_low")([low, down]), layers.Add(name=f"{name}_high")([high, up])


def ddrnet_trunk(x, planes=PLANES, spp_planes=SPP_PLANES):
    """(B, H, W, C) normalised -> (B, H/8, W/8, 4 * planes) fused features."""
    x = conv_bn_relu(x, planes, 3, "stem1", strides=2)
    x = conv_bn_relu(x, planes, 3, "stem2", strides=2)  # (B, H/4, W/4, 32)
    x = stage(x, planes, 2, "layer1")
    high = stage(relu(x, "layer1_relu"), 2 * planes, 2, "layer2", stride=2)  # (B, H/8, W/8, 64)
    low = stage(relu(high, "layer2_relu"), 4 * planes, 2, "layer3", stride=2)  # (B, H/16, W/16, 128)
    high = stage(relu(high, "layer3_high_relu"), 2 * planes, 2, "layer3_")
    low, high = fuse(low, high, 2, "fuse3")
    low = stage(relu(low, "layer4_relu"), 8 * planes, 2, "layer4", stride=2)  # (B, H/32, W/32, 256)
    high = stage(relu(high, "layer4_high_relu"), 2 * planes, 2, "layer4_")
    low, high = fuse(low, high, 4, "fuse4")
    high = bottleneck(relu(high, "layer5_high_relu"), 2 * planes, "layer5_")  # (B, H/8, W/8, 128)
    low = bottleneck(relu(low, "layer5_relu"), 8 * planes, "layer5", stride=2)  # (B, H/64, W/64, 512)
    low = dappm(low, spp_planes, 4 * planes)  # (B, H/64, W/64, 128)
    low = layers.UpSampling2D(8, interpolation="bilinear", name="spp_up")(low)
    return layers.Add(name="fuse_out")([high, low])  # (B, H/8, W/8, 128)


@register_model("ddrnet23slim", stride=64)
def ddrnet23slim(num_classes=12, input_shape=(None, None, 3), activation=None, **kwargs):
    """DDRNet-23-slim, two-resolution real-time network: logits at 1/8 upsampled x8.

    Args:
        num_classes: output channels of `segmentation_output`.
        input_shape: (H, W, C) (C channels, 3 for RGB), sides multiples of 64 or None.
        activation: None for logits, or "softmax" to add a `probabilities` layer.
        **kwargs: `planes` (32; DDRNet-23 is 64), `spp_planes` (128), `head_planes` (64).
    """
    planes = kwargs.pop("planes", PLANES)
    spp_planes = kwargs.pop("spp_planes", SPP_PLANES)
    head_planes = kwargs.pop("head_planes", HEAD_PLANES)
    if kwargs:
        raise KsegError(f"ddrnet23slim: unexpected arguments {sorted(kwargs)}; it takes planes, spp_planes "
                        f"and head_planes.")
    check_args("ddrnet23slim", num_classes, input_shape, 64, activation, planes=(planes, "int"),
               spp_planes=(spp_planes, "int"), head_planes=(head_planes, "int"))
    image, x = image_input(input_shape)
    x = ddrnet_trunk(x, planes, spp_planes)
    x = bn_relu_conv(x, head_planes, 3, "head")  # (B, H/8, W/8, 64)
    x = relu(batch_norm("head_out_bn")(x), "head_out_relu")
    outputs = segmentation_head(x, num_classes, activation, upsample=8)
    return keras.Model(image, outputs, name="ddrnet23slim")  # (B, H, W, num_classes)
