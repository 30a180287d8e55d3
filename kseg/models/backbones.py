"""keras.applications backbones as data: one row per backbone (segmentation_models.pytorch's
encoder table, keras.applications' layer names).

A row names the keras.applications constructor, the input normalisation its ImageNet
weights were trained with, and the layer whose output is the feature at each stride
2, 4, 8, 16 and 32, shallow to deep. A tap is
- `"layer"`: that layer's output;
- `"in:layer"`: that layer's input, where the feature has no named layer of its own
  (ConvNeXt's stage outputs are sums computed by `+`; MobileNetV3's activations are
  auto-named, `re_lu_15`, a name that depends on what the process built before);
- `"output"`: the backbone's output (include_top=False);
- None: the backbone has no feature at that stride (ConvNeXt's 4x4 stem starts at 4).

Normalisation is (mean, std) per RGB channel in pixel units, x' = (x - mean) / std on
[0, 255] inputs, each family's `preprocess_input`:
- CAFFE (ResNet v1): BGR minus the ImageNet mean, no scaling. kseg feeds RGB, so the
  first conv's kernel is flipped to RGB order when ImageNet weights are copied in.
- TF (ResNet v2, MobileNetV3): x / 127.5 - 1.
- TORCH (EfficientNetV2 B0-B3, ConvNeXt): x / 255 minus ImageNet mean, over its std.
- EFFNETV2_S (EfficientNetV2-S): x / 128 - 1 (Keras' `include_preprocessing` branch).
The backbones are built with `include_preprocessing=False` and kseg's `preprocess`
Rescaling does the row's normalisation, so every network takes raw pixels alike.
"""

import dataclasses

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CAFFE = ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0))  # RGB order of Keras' BGR means
TF = ((127.5,) * 3, (127.5,) * 3)
TORCH = (IMAGENET_MEAN_255, IMAGENET_STD_255)
EFFNETV2_S = ((128.0,) * 3, (128.0,) * 3)
STRIDES = (2, 4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class Backbone:
    constructor: str  # keras.applications attribute: ResNet50, EfficientNetV2B0, ...
    normalisation: tuple  # ((mean R, G, B), (std R, G, B)) in pixel units
    taps: tuple  # feature at strides 2, 4, 8, 16, 32 (see the module docstring)
    bgr: bool = False  # ImageNet weights expect BGR (Caffe ResNets)
    # keras.applications takes include_preprocessing (turned off: `preprocess` does it).
    has_preprocessing_arg: bool = True


def _convnext(size):
    stage_output = tuple(f"in:convnext_{size}_downsampling_block_{i}" for i in range(3))
    return Backbone(f"ConvNeXt{size.title()}", TORCH, (None, *stage_output, "output"))


BACKBONES = {
    "resnet50": Backbone("ResNet50", CAFFE, ("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                                             "conv4_block6_out", "conv5_block3_out"),
                         bgr=True, has_preprocessing_arg=False),
    "resnet101": Backbone("ResNet101", CAFFE, ("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                                               "conv4_block23_out", "conv5_block3_out"),
                          bgr=True, has_preprocessing_arg=False),
    # v2 strides in the last block of a stage, so conv2_block2_out is the last stride-4 sum;
    # the stem conv has no BN/ReLU of its own (pre-activation).
    "resnet50v2": Backbone("ResNet50V2", TF, ("conv1_conv", "conv2_block2_out", "conv3_block3_out",
                                              "conv4_block5_out", "post_relu"), has_preprocessing_arg=False),
    "resnet101v2": Backbone("ResNet101V2", TF, ("conv1_conv", "conv2_block2_out", "conv3_block3_out",
                                                "conv4_block22_out", "post_relu"),
                            has_preprocessing_arg=False),
    "efficientnetv2b0": Backbone("EfficientNetV2B0", TORCH, ("block1a_project_activation", "block2b_add",
                                                             "block3b_add", "block5e_add", "top_activation")),
    "efficientnetv2b1": Backbone("EfficientNetV2B1", TORCH, ("block1b_add", "block2c_add", "block3c_add",
                                                             "block5f_add", "top_activation")),
    "efficientnetv2b2": Backbone("EfficientNetV2B2", TORCH, ("block1b_add", "block2c_add", "block3c_add",
                                                             "block5f_add", "top_activation")),
    "efficientnetv2b3": Backbone("EfficientNetV2B3", TORCH, ("block1b_add", "block2c_add", "block3c_add",
                                                             "block5g_add", "top_activation")),
    "efficientnetv2s": Backbone("EfficientNetV2S", EFFNETV2_S, ("block1b_add", "block2d_add", "block3d_add",
                                                                "block5i_add", "top_activation")),
    # Stride 2 of Small is the stem's hard-swish, the input of the first depthwise pad.
    "mobilenetv3small": Backbone("MobileNetV3Small", TF, ("in:expanded_conv_depthwise_pad",
                                                          "expanded_conv_project_bn", "expanded_conv_2_add",
                                                          "expanded_conv_7_add", "output")),
    "mobilenetv3large": Backbone("MobileNetV3Large", TF, ("expanded_conv_add", "expanded_conv_2_add",
                                                          "expanded_conv_5_add", "expanded_conv_11_add",
                                                          "output")),
    "convnext_tiny": _convnext("tiny"),
    "convnext_small": _convnext("small"),
}
