"""Which registered networks the registry-parametrized tests build (tests/ is on sys.path).

Every network but the 39 decoder-backbone pairs of kseg.models.applications, of which one
per backbone family (ResNet v1, v2, EfficientNetV2, MobileNetV3, ConvNeXt), under the
three decoders in turn. Building, saving and training every pair takes many minutes on 2
cores; tests/test_applications.py builds every backbone and compares its features, and a
pair adds nothing its decoder and its backbone do not test apart. KSEG_ALL_NETWORKS=1
parametrizes over every pair.
"""

import os

import kseg
from kseg.models.applications import DECODERS
from kseg.models.backbones import BACKBONES

ALL = os.environ.get("KSEG_ALL_NETWORKS") == "1"
PAIRS = {f"{d}-{b}" for d in DECODERS for b in BACKBONES}
ONE_PER_FAMILY = {"unet-resnet50", "fpn-resnet50v2", "deeplabv3plus-efficientnetv2b0", "fpn-mobilenetv3small",
                  "unet-convnext_tiny"}
# The train step: the new hand-built networks and the pair of the new decoder (FPN) on the
# cheapest backbone; kseg's first three train in tests/test_backends.py, and the decoders
# of the other pairs are theirs (kseg.models.unet, kseg.models.deeplabv3plus).
TRAINED = {"fpn-mobilenetv3small", "lraspp-mobilenetv3small", "ddrnet23slim"}


def registry_names():
    """The registered names the tests build, sorted."""
    return [n for n in kseg.list_models() if ALL or n not in PAIRS or n in ONE_PER_FAMILY]


def train_step_names():
    """The networks the train-step test trains: TRAINED, or with KSEG_ALL_NETWORKS=1 every
    network but kseg's first three."""
    first = ("unet", "deeplabv3", "deeplabv3plus")
    return [n for n in registry_names() if (n not in first if ALL else n in TRAINED)]
