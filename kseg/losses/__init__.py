"""Segmentation losses from logits, void ignored; `keras.ops` only, so any backend works.

    LOSS_NAMES                     ("ce", "dice", "lovasz", "focal", "tversky")
    parse_loss(spec)               "ce:1,lovasz:0.5" -> (("ce", 1.0), ("lovasz", 0.5))
    build_loss(spec="ce", num_classes, ignore_index=None, class_weights=None, **options)
                                   -> SegmentationLoss, a registered keras.losses.Loss

Terms (kseg.losses.terms, kseg.losses.lovasz), over the non-void pixels of a batch:

    ce       mean of -log p[true]
    focal    mean of -(1 - p_t)^gamma log p_t (Lin et al. 2017), gamma = 2
    dice     per class 1 - (2 I + s) / (P + G + s), s = 1
    tversky  per class 1 - (I + s/2) / (I + alpha FP + beta FN + s/2); 0.5/0.5 is dice
    lovasz   Lovász-softmax (Berman et al. 2018), present classes

Binary mode (num_classes=1: one sigmoid logit z, labels 0/1): ce is binary cross-entropy,
focal binary focal, dice and tversky score the foreground alone, lovasz is the Lovász
hinge (kseg.losses.lovasz.lovasz_hinge); z is read as the two-class logits [0, z].

Void (label == ignore_index, and any label outside [0, K)) is dropped from every sum.
Absent classes: the per-class terms average the classes present in the batch's labels.
Class weights (K floats): ce/focal weigh each pixel by its true class's weight and divide
by the sum of those weights over the non-void pixels (PyTorch's weighted mean); the
per-class terms average classes with those weights. A batch that is all void gives 0.

`parse_loss` and `LOSS_NAMES` do not import Keras (CLI option checks stay fast and do not
fix the backend); `build_loss` and `SegmentationLoss` import kseg.losses.segmentation_loss on first
use, which registers the class for `keras.saving`. Saving and loading without kseg:
kseg.losses.segmentation_loss.
"""

from kseg.losses.loss_spec import LOSS_NAMES, format_loss, parse_loss

__all__ = ["LOSS_NAMES", "SegmentationLoss", "build_loss", "format_loss", "parse_loss"]


def __getattr__(name):
    # Lazy: importing the loss module imports Keras (PEP 562 module __getattr__).
    if name in ("SegmentationLoss", "build_loss"):
        from kseg.losses import segmentation_loss

        return getattr(segmentation_loss, name)
    raise AttributeError(f"module 'kseg.losses' has no attribute {name!r}")
