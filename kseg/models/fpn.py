"""The FPN decoder (Kirillov et al. 2019, "Panoptic Feature Pyramid Networks"), as
segmentation_models.pytorch builds its FPN.

    C2..C5 (strides 4..32) -> 1x1 lateral convs to `pyramid_filters`
    P5 = lateral(C5); P_s = nearest-upsampled P_(s+1) + lateral(C_s)      (top-down)
    each P_s -> 3x3 conv-BN-ReLU (`segmentation_filters`), x2 bilinear, repeated until
        stride 4 (one conv and no upsampling for P2)
    the four summed -> (B, H/4, W/4, segmentation_filters), spatial dropout

The paper's group norm is batch norm here, as in every kseg network. Levels are named by
keras-hub's keys (`P2` .. `P5`), never by position.
"""

from kseg.models.layers import conv_bn_relu
from kseg.models.lazy import layers

LEVELS = {2: 4, 3: 8, 4: 16, 5: 32}  # P-level -> stride


def fpn_decoder(features, pyramid_filters=256, segmentation_filters=128, dropout=0.2, name="fpn"):
    """`{stride: (B, H/s, W/s, C_s)}` (strides 4..32) -> (B, H/4, W/4, segmentation_filters)."""
    p = None
    pyramid = {}
    for level in (5, 4, 3, 2):  # top-down
        lateral = layers.Conv2D(pyramid_filters, 1, name=f"{name}_P{level}_lateral")(features[LEVELS[level]])
        if p is not None:
            p = layers.UpSampling2D(2, name=f"{name}_P{level}_upsample")(p)
            lateral = layers.Add(name=f"{name}_P{level}_add")([p, lateral])
        p = pyramid[level] = lateral  # (B, H/s, W/s, pyramid_filters)
    heads = []
    for level, y in pyramid.items():
        for i in range(max(level - 2, 1)):  # P5: 3 conv + x2 steps to stride 4; P2: one conv
            y = conv_bn_relu(y, segmentation_filters, 3, f"{name}_P{level}_seg{i + 1}")
            if level > 2:
                y = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_P{level}_seg{i + 1}_up")(y)
        heads.append(y)  # (B, H/4, W/4, segmentation_filters)
    x = layers.Add(name=f"{name}_merge")(heads)
    return layers.SpatialDropout2D(dropout, name=f"{name}_dropout")(x) if dropout else x
