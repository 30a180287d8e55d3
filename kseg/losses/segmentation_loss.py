"""`SegmentationLoss`: a weighted sum of kseg's loss terms as one serialisable Keras loss.

Called as `loss(y_true, logits, sample_weight=None)` (what `model.compile(loss=...)`
does): y_true (B, H, W) class indices (uint8; void = ignore_index, may be >= K),
logits (B, H, W, K) of any float dtype (mixed precision: cast to float32 here). Terms
and their handling of void, absent classes and class weights: kseg.losses.terms and
kseg.losses.lovasz. The sum is reduced like Keras' own losses (a (1,) value through
`Loss.__call__`), so under tf.distribute it is divided by the replica count as Keras'
trainer expects.

Saving: the class is registered as "kseg>SegmentationLoss", so `keras.saving` round-trips
it wherever kseg is imported. kseg's run checkpoints carry no compile config at all
(kseg.training.checkpoints.save_checkpoint), so they load in a bare `import keras`
process, which could not rebuild this class or kseg's metrics.
"""

import math

import keras
import numpy as np

from kseg.errors import KsegError
from kseg.losses import multilabel_terms as ML
from kseg.losses import terms as T
from kseg.losses.loss_spec import as_terms, format_loss
from kseg.losses.lovasz import lovasz_hinge, lovasz_softmax


def _term_functions(loss):
    """name -> function(batch) -> float32 scalar, with this loss's options bound."""
    cw = loss.class_weights
    return {
        "ce": lambda b: T.cross_entropy(b, cw),
        "focal": lambda b: T.focal(b, cw, loss.focal_gamma),
        "dice": lambda b: T.dice(b, cw, loss.smooth),
        "tversky": lambda b: T.tversky(b, cw, loss.tversky_alpha, loss.tversky_beta, loss.smooth),
        "lovasz": lambda b: lovasz_softmax(b, cw),
    }


# Binary mode (num_classes=1, one sigmoid logit): the region terms score the foreground
# alone (class weights (0, 1) over [background, foreground], as binary Dice does), and
# Lovász is the binary hinge.
FOREGROUND = (0.0, 1.0)


def _binary_term_functions(loss):
    """The multiclass terms over [background, foreground], with the region terms on the
    foreground and the binary Lovász hinge."""
    return {
        **_term_functions(loss),
        "dice": lambda b: T.dice(b, FOREGROUND, loss.smooth),
        "tversky": lambda b: T.tversky(b, FOREGROUND, loss.tversky_alpha, loss.tversky_beta, loss.smooth),
        "lovasz": lovasz_hinge,
    }


@keras.saving.register_keras_serializable(package="kseg", name="SegmentationLoss")
class SegmentationLoss(keras.losses.Loss):
    """sum_k weight_k * term_k(y_true, logits) over the terms of a spec (kseg.losses.loss_spec).

    Args:
        terms: spec string ("ce+lovasz", "ce:1,dice:0.5") or (name, weight) pairs.
        num_classes: K, the logits' last axis; 1 is the binary mode: one sigmoid logit,
            labels 0 (background) and 1 (foreground), binary cross-entropy, focal, Dice,
            Tversky of the foreground, and the Lovász hinge.
        ignore_index: the void label (any int, may be >= K), or None.
        class_weights: None or K floats >= 0 (2 in binary mode; not all 0): pixel weights by true class
            for ce/focal, class weights of the average for dice/tversky/lovasz.
        focal_gamma: focal exponent, >= 0 (Lin et al.'s default 2).
        tversky_alpha, tversky_beta: weights of false positives / negatives, >= 0,
            not both 0; 0.5/0.5 is Dice.
        smooth: additive smoothing of dice and tversky, >= 0.
        multilabel: labels hold one bit per class, one sigmoid logit per class
            (kseg.losses.multilabel_terms); no class weights.
    """

    def __init__(self, terms="ce", num_classes=None, ignore_index=None, class_weights=None,
                 focal_gamma=2.0, tversky_alpha=0.5, tversky_beta=0.5, smooth=1.0,
                 name="segmentation_loss", reduction="sum_over_batch_size", multilabel=False):
        if reduction not in ("sum_over_batch_size", "mean"):
            raise KsegError(f"SegmentationLoss reduces a batch to one value; reduction={reduction!r} is not "
                            "supported. Use 'sum_over_batch_size' (the default).")
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.terms = as_terms(terms)
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.class_weights = _check_class_weights(class_weights, max(2, self.num_classes))
        self.focal_gamma = _check_number("focal_gamma", focal_gamma)
        self.tversky_alpha = _check_number("tversky_alpha", tversky_alpha)
        self.tversky_beta = _check_number("tversky_beta", tversky_beta)
        self.smooth = _check_number("smooth", smooth)
        if self.tversky_alpha + self.tversky_beta == 0:
            raise KsegError("tversky_alpha and tversky_beta cannot both be 0. Received: 0 and 0.")
        self.multilabel = bool(multilabel)
        if self.multilabel and self.class_weights is not None:
            raise KsegError("class_weights do not apply to a multi-label loss (each class is its own "
                            "sigmoid); drop them.")

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras' Loss.__call__ would multiply the batch's single value by per-pixel sample
        # weights; they go to the terms instead, packed with the labels.
        packed = (y_true,) if sample_weight is None else (y_true, sample_weight)
        return super().__call__(packed, y_pred)

    def call(self, y_true, y_pred):
        """(labels,) or (labels, sample_weight), logits -> (1,) float32 loss."""
        sample_weight = y_true[1] if len(y_true) > 1 else None
        if self.multilabel:
            batch = ML.prepare(y_true[0], y_pred, self.num_classes, self.ignore_index, sample_weight)
            fns = ML.term_functions(self)
            return keras.ops.reshape(sum(w * fns[name](batch) for name, w in self.terms), (1,))
        binary = self.num_classes == 1
        logits = T.two_class_logits(y_pred) if binary else y_pred
        batch = T.prepare(y_true[0], logits, 2 if binary else self.num_classes, self.ignore_index,
                          sample_weight)
        fns = _binary_term_functions(self) if binary else _term_functions(self)
        total = sum(weight * fns[name](batch) for name, weight in self.terms)
        return keras.ops.reshape(total, (1,))

    def get_config(self):
        return {
            **super().get_config(),
            "terms": [[name, weight] for name, weight in self.terms],
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "focal_gamma": self.focal_gamma,
            "tversky_alpha": self.tversky_alpha,
            "tversky_beta": self.tversky_beta,
            "smooth": self.smooth,
            "multilabel": self.multilabel,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None)  # always float32
        return cls(**config)

    def __repr__(self):
        return (f"SegmentationLoss({format_loss(self.terms)!r}, num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index})")


def build_loss(spec="ce", num_classes=None, ignore_index=None, class_weights=None, **options):
    """The training loss of a spec: a SegmentationLoss (options: focal_gamma, tversky_alpha,
    tversky_beta, smooth, name)."""
    return SegmentationLoss(spec, num_classes, ignore_index, class_weights, **options)


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise KsegError(f"num_classes must be an integer >= 1 (the logits' last axis). "
                        f"Received: {num_classes!r}")
    return int(num_classes)


def _check_ignore_index(ignore_index):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise KsegError(f"ignore_index must be an integer label or None. Received: {ignore_index!r}")
    return int(ignore_index)


def _check_class_weights(class_weights, num_classes):
    if class_weights is None:
        return None
    try:
        w = np.asarray(class_weights, dtype=np.float64)
    except (TypeError, ValueError):
        w = np.full(0, np.nan)
    if w.shape != (num_classes,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise KsegError(f"class_weights must be {num_classes} finite numbers >= 0, not all 0 "
                        f"(one per class). Received: {class_weights!r}")
    return tuple(float(x) for x in w)


def _check_number(name, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise KsegError(f"{name} must be a finite number >= 0. Received: {value!r}")
    return number
