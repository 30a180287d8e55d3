"""Multi-label masks: classes that overlap, one 0/nonzero mask file per class.

    masks/<class>/<name>.png     (or masks/<split>/<class>/<name>.png), one per image
    masks/<name>.tif             a TIFF of one 0/1 (or 0/255) band per class

A pixel may be both "road" and "wet". kseg carries a multi-label mask through the same
uint8 (H, W) arrays as class indices, as bits: bit c is set where class c is present
(value = sum of 2**c), so crops, warps and flips (nearest neighbour, void filled) need
no change. Hence at most MAX_CLASSES = 7 classes: 2**7 - 1 = 127 is the largest label
and void stays a value no label takes (255).

`read_bits(path, spec, read_raw)`: `path` is the image's file in the first class folder;
its siblings in the other class folders (same stem, any mask suffix) must exist.
"""

from pathlib import Path

import numpy as np

from kseg.errors import DataError

MAX_CLASSES = 7
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def class_files(path, classes):
    """The mask file of each class for the image whose first-class mask is `path`."""
    path = Path(path)
    folders = path.parent.parent
    out = []
    for name in classes:
        candidates = [folders / name / (path.stem + suffix) for suffix in MASK_SUFFIXES]
        hits = [f for f in candidates if f.is_file()]
        if not hits:
            raise DataError(f"{folders / name / path.stem}.png: missing (every class folder of "
                            f"{folders} needs a mask for '{path.stem}', empty where the class is absent)")
        out.append(hits[0])
    return out


def read_bits(path, spec, read_raw):
    """uint8 (H, W): bit c set where class c's mask (or band) is nonzero.
    `read_raw(path) -> (kind, pixels)` (kseg.data.io.read_raw_mask)."""
    kind, pixels = read_raw(path)
    if kind == "bands":
        if pixels.shape[-1] != spec.num_classes:
            raise DataError(f"{path}: {pixels.shape[-1]} bands for {spec.num_classes} classes; "
                            f"a multi-band mask holds one band per class")
        return ((pixels > 0).astype(np.uint8) << np.arange(spec.num_classes, dtype=np.uint8)).sum(
            -1, dtype=np.uint8)
    bits = None
    for c, file in enumerate(class_files(path, spec.classes)):
        kind, pixels = read_raw(file)
        if kind == "rgb":
            raise DataError(f"{file}: a colour mask; a class folder holds 0/nonzero grayscale masks")
        if bits is None:
            bits = np.zeros(pixels.shape, np.uint8)
        elif pixels.shape != bits.shape:
            raise DataError(f"{file}: size {pixels.shape[0]}x{pixels.shape[1]} != the other classes' "
                            f"{bits.shape[0]}x{bits.shape[1]}")
        bits |= (pixels > 0).astype(np.uint8) << c
    return bits


def class_counts(counts, spec):
    """(pixels where each class is present (K,), labelled pixels) from a (256,) histogram of
    labels: for a multi-label spec the bits, else the class indices."""
    counts = np.asarray(counts)
    k = spec.num_classes
    if not spec.multilabel:
        return counts[:k], int(counts[:k].sum())
    values = np.arange(256)
    labelled = values < 2 ** k  # any label but void
    present = [int(counts[labelled & ((values >> c) & 1).astype(bool)].sum()) for c in range(k)]
    return np.array(present, np.int64), int(counts[labelled].sum())


def label_limit(spec):
    """Labels below this are valid (void aside): K classes, or 2**K bit patterns."""
    return 2 ** spec.num_classes if spec.multilabel else spec.num_classes
