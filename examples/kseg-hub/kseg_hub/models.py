"""The networks this plugin registers with kseg: variants as data, one shared builder each.

  hub_segformer_b0 .. hub_segformer_b5   keras_hub.models.SegFormerImageSegmenter on MiT-B0..B5
  hub_deeplabv3_resnet18, _resnet50      keras_hub.models.DeepLabV3ImageSegmenter, ASPP on P5
  hub_deeplabv3plus_resnet18, _resnet50  the same with the low-level P2 decoder (keras-hub's preset)
  hub_unet_resnet18, _34, _50            a keras-hub ResNetBackbone under kseg's U-Net decoder

Every builder takes kseg's arguments (num_classes, input_shape, activation) and
`preset`, a local keras-hub preset directory (kseg never downloads). Importing this
module does not import keras_hub: `kseg models --no-params` and every kseg command that
loads plugins stay fast; the builders import it (kseg_hub.build).
"""

from kseg.registry import register_model

# MiT encoders (Xie et al. 2021, Table 6), as keras-hub's mit_b*_ade20k_512 presets hold them:
# hidden dims and transformer blocks per stage. The block counts are those the presets'
# descriptions give (8, 8, 16, 28, 41, 52), and the parameter counts equal the presets'.
MIT_VARIANTS = {
    "b0": {"hidden_dims": [32, 64, 160, 256], "layerwise_depths": [2, 2, 2, 2]},
    "b1": {"hidden_dims": [64, 128, 320, 512], "layerwise_depths": [2, 2, 2, 2]},
    "b2": {"hidden_dims": [64, 128, 320, 512], "layerwise_depths": [3, 4, 6, 3]},
    "b3": {"hidden_dims": [64, 128, 320, 512], "layerwise_depths": [3, 4, 18, 3]},
    "b4": {"hidden_dims": [64, 128, 320, 512], "layerwise_depths": [3, 8, 27, 3]},
    "b5": {"hidden_dims": [64, 128, 320, 512], "layerwise_depths": [3, 6, 40, 3]},
}
# ResNet v1 encoders, as keras-hub's resnet_18/50_imagenet presets hold them (ResNet-34
# has no keras-hub preset; its config is the paper's).
RESNET_VARIANTS = {
    "resnet18": {"stackwise_num_blocks": [2, 2, 2, 2], "block_type": "basic_block"},
    "resnet34": {"stackwise_num_blocks": [3, 4, 6, 3], "block_type": "basic_block"},
    "resnet50": {"stackwise_num_blocks": [3, 4, 6, 3], "block_type": "bottleneck_block"},
}


def _register(name, description, family, variant):
    """Register `name`: kseg's builder signature, then `kseg_hub.build.<family>(name, variant, ...)`."""

    def builder(num_classes=12, input_shape=(None, None, 3), activation=None, preset=None, **kwargs):
        from kseg_hub import build

        return getattr(build, family)(name, variant, num_classes, input_shape, activation, preset, **kwargs)

    builder.__name__ = builder.__qualname__ = name  # kseg tells registrations apart by qualname
    builder.__doc__ = description
    register_model(name, stride=32)(builder)
    return builder


for _v, _mit in MIT_VARIANTS.items():
    _register(f"hub_segformer_{_v}", f"SegFormer-{_v.upper()} (keras-hub): MiT-{_v.upper()} + all-MLP "
              f"decoder; fixed square input (image_size).", "segformer", _mit)
for _depth in (18, 50):
    _resnet = RESNET_VARIANTS[f"resnet{_depth}"]
    _register(f"hub_deeplabv3_resnet{_depth}", f"DeepLabV3 (keras-hub) on ResNet-{_depth}: ASPP at H/32, "
              f"no decoder.", "deeplabv3", {**_resnet, "low_level": False})
    _register(f"hub_deeplabv3plus_resnet{_depth}", f"DeepLabV3+ (keras-hub) on ResNet-{_depth}: ASPP at "
              f"H/32 + P2 decoder at H/4.", "deeplabv3", {**_resnet, "low_level": True})
for _depth in (18, 34, 50):
    _register(f"hub_unet_resnet{_depth}", f"U-Net: keras-hub ResNet-{_depth} encoder, kseg's decoder "
              f"(skips H/2..H/16).", "unet", RESNET_VARIANTS[f"resnet{_depth}"])
