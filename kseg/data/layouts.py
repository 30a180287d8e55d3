"""The named dataset layouts, detected from their folders before the generic ones.

Each layout module has NAME, SPEC (classes, colours, void, and the label map from raw
mask values to classes that `kseg.data.io.read_mask` applies; None where the dataset's
own files name the classes, read by `spec(root)`: COCO), `detect(root) -> bool`
(a half-present layout is a one-line DataError) and `splits(root) -> {split: [Pair]}`.
"""

from kseg.data import ade20k, cityscapes, coco, voc

# COCO before ADE20K: both may have images/ + annotations/, COCO's holding JSON files.
LAYOUTS = {m.NAME: m for m in (cityscapes, voc, coco, ade20k)}
FOLDERS = {
    "cityscapes": "leftImg8bit/ + gtFine/ (Cityscapes)",
    "voc": "JPEGImages/ + SegmentationClass/ (Pascal VOC)",
    "coco": "annotations/*.json or <split>/_annotations.coco.json (COCO)",
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
