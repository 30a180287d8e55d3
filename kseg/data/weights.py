"""Class pixel statistics and SegNet's median frequency balancing.

Eigen & Fergus (2015), used by SegNet: freq(c) = pixels of class c / total pixels of
the images in which c is present; weight(c) = median(freq) / freq(c). Rare classes
(Pole, SignSymbol, Bicyclist) get weights > 1, common ones (Road, Sky) < 1.
"""

import numpy as np

from kseg.data import io


def class_pixel_counts(pairs, spec):
    """Per-class pixel statistics of the masks of `pairs`.

    Returns a dict: "pixels" int64 (K,) pixels per class, "image_pixels" int64 (K,)
    total pixels of the images where the class is present, "void" int (void pixels),
    "total" int (all pixels).
    """
    k = spec.num_classes
    pixels, image_pixels = np.zeros(k, np.int64), np.zeros(k, np.int64)
    void = total = 0
    for pair in pairs:
        mask = io.read_mask(pair.mask, spec)
        counts = np.bincount(mask.ravel(), minlength=256)
        pixels += counts[:k]
        image_pixels += np.where(counts[:k] > 0, mask.size, 0)
        void += int(counts[spec.void]) if spec.void is not None else 0
        total += mask.size
    return {"pixels": pixels, "image_pixels": image_pixels, "void": void, "total": total}


def median_frequency_weights(pairs, spec, counts=None):
    """float32 (num_classes,) weights median(freq) / freq(c); 1.0 for absent classes.

    Args:
        pairs: the training pairs (readers.Pair).
        spec: DatasetSpec.
        counts: a `class_pixel_counts` result, to avoid reading the masks again.
    """
    counts = counts or class_pixel_counts(pairs, spec)
    return weights_from_counts(counts["pixels"], counts["image_pixels"])


def weights_from_counts(pixels, image_pixels):
    """Median frequency weights from per-class counts (absent classes get 1.0)."""
    pixels, image_pixels = np.asarray(pixels, np.float64), np.asarray(image_pixels, np.float64)
    present = pixels > 0
    weights = np.ones(len(pixels), np.float64)
    if present.any():
        freq = pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)
