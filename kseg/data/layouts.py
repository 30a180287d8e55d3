"""The named dataset layouts, detected from their folders before the generic ones.

Each layout module has NAME, SPEC (classes, colours, void, and the label map from raw
mask values to classes that `kseg.data.io.read_mask` applies), `detect(root) -> bool`
(a half-present layout is a one-line DataError) and `splits(root) -> {split: [Pair]}`.
"""

from kseg.data import ade20k, cityscapes, voc

LAYOUTS = {m.NAME: m for m in (cityscapes, voc, ade20k)}
FOLDERS = {
    "cityscapes": "leftImg8bit/ + gtFine/ (Cityscapes)",
    "voc": "JPEGImages/ + SegmentationClass/ (Pascal VOC)",
    "ade20k": "images/ + annotations/ (ADE20K)",
}


def detect(root):
    """The name of the named layout at `root`, or None."""
    for name, module in LAYOUTS.items():
        if module.detect(root):
            return name
    return None


def describe():
    """The named layouts' folders, for the 'no layout found' error."""
    return ", ".join(FOLDERS[name] for name in LAYOUTS)
