"""COCO annotations (polygons, RLE) painted into semantic class-index masks.

pycocotools (`pip install 'kseg[coco]'`) rasterises each annotation exactly as COCO's
own evaluation does: polygons through its polygon-to-RLE code, uncompressed RLE
(`"counts": [...]`, CVAT's and Label Studio's masks) through `frPyObjects`,
compressed RLE (`"counts": "..."`) as it is.

A pixel takes the class of the smallest annotation covering it: annotations are painted
largest first, so an object on top of another (a cup on a table) stays visible.
Crowd annotations (`iscrowd: 1`) are painted like the others: for semantic
segmentation a crowd of people is people. Pixels no annotation covers are class 0,
background.
"""

import numpy as np

from kseg.errors import DataError


def _mask_utils(source):
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise DataError(f"{source}: reading COCO annotations needs pycocotools: "
                        f"pip install 'kseg[coco]'") from None
    return mask_utils


def annotation_mask(segmentation, height, width, source="annotation"):
    """uint8 (H, W) 0/1 of one annotation's `segmentation` (polygons or RLE); None when empty."""
    mask_utils = _mask_utils(source)
    try:
        if isinstance(segmentation, list):  # polygons: [[x0, y0, x1, y1, ...], ...]
            polygons = [p for p in segmentation if len(p) >= 6]
            if not polygons:
                return None
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed RLE
        elif isinstance(segmentation, dict) and "counts" in segmentation:
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            return None
        mask = mask_utils.decode(rle)
    except Exception as exc:  # pycocotools raises many types on malformed input
        raise DataError(f"{source}: unreadable segmentation ({type(exc).__name__}: {exc})") from None
    if mask.shape[:2] != (height, width):
        raise DataError(f"{source}: RLE size {mask.shape[0]}x{mask.shape[1]} != the image's "
                        f"{height}x{width}")
    return mask


def paint(annotations, height, width, class_of, source="annotations"):
    """uint8 (H, W) class indices of one image's annotations, largest painted first.

    `class_of`: category id -> class index (1..K-1; 0 is background).
    """
    out = np.zeros((height, width), np.uint8)
    masks = []
    for ann in annotations:
        m = annotation_mask(ann.get("segmentation"), height, width, f"{source}: annotation {ann.get('id')}")
        if m is not None and ann.get("category_id") in class_of:
            masks.append((int(m.sum()), class_of[ann["category_id"]], m))
    for _, cls, m in sorted(masks, key=lambda t: -t[0]):
        out[m.astype(bool)] = cls
    return out
