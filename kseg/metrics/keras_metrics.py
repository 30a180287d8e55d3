"""Keras metrics for the training logs; `keras.ops` only, so any backend works.

The confusion-matrix metrics keep one (K, K) variable, rows = true, columns = predicted,
and derive their result from it with the same algebra as `kseg.metrics.scores`:

    TP = diag(cm), FP = colsum - TP, FN = rowsum - TP
    row_sum + col_sum = 2*TP + FP + FN,  IoU = TP / (row_sum + col_sum - TP)

Inputs: y_true (B, H, W) integer class indices (uint8 from the data generator; a
trailing axis of 1 is squeezed), y_pred logits (B, H, W, K) (an integer label map of
y_true's shape is accepted too; with K = 2, a binary network's one logit (B, H, W, 1)).
Void pixels (y_true == ignore_index) are removed by masking labels, predictions and sample weights alike.

Two things differ from the numpy path because a compiled graph cannot raise: labels
outside [0, K) are dropped like void (the numpy path raises KsegError), and an empty
matrix scores 0 instead of NaN.

Why not `keras.metrics.MeanIoU(ignore_class=...)`: on logits (sparse_y_pred=False) it
gives the same mIoU as `MeanIoU` here (checked on a 16x128x128 batch, 11 classes plus
void), but it was 15 % slower per update on this project's CPU (34.3 vs 29.8 ms), it
counts sample weights as pixel counts (so class-balancing weights would distort the
logged score, see below), and Keras' accuracy metrics have no `ignore_class`: one
confusion-matrix base serves accuracy and mIoU here, with the algebra of
`kseg.metrics.scores`.

Sample weights: by default (`weighted=False`) a sample weight only masks (pixels with
weight 0 are dropped), so class-balancing weights passed to `fit` shape the loss but do
not distort the logged accuracy and mIoU. `weighted=True` counts weighted pixels, as
`keras.metrics.MeanIoU` does. Counts are float32: exact up to 2**24 pixels per cell,
then within about 1e-7 relative, plenty for a training log.
"""

import keras
import numpy as np
from keras import ops

register = keras.saving.register_keras_serializable(package="kseg")


def _flat_inputs(y_true, y_pred, sample_weight, num_classes, ignore_index, weighted):
    """Flatten a batch to (labels, predicted labels or logits, pixel weights).

    Returns t int32 (N,), y_pred (N,) labels or (N, K) logits, w float32 (N,)
    with 0 on void / out-of-range / zero-weight pixels and t set to 0 there.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1 and y_pred.shape[-1] not in (1, None):
        y_true = ops.squeeze(y_true, axis=-1)  # (B, H, W, 1) with logits (B, H, W, K)
    is_logits = len(y_pred.shape) == len(y_true.shape) + 1
    if is_logits and num_classes == 2 and y_pred.shape[-1] == 1:
        # A binary network's one sigmoid logit z is the two-class logits [0, z] (kseg.training.task).
        y_pred = ops.cast(y_pred, "float32")
        y_pred = ops.concatenate([ops.zeros_like(y_pred), y_pred], axis=-1)
    t = ops.cast(y_true, "int32")
    valid = ops.logical_and(ops.greater_equal(t, 0), ops.less(t, num_classes))
    if ignore_index is not None:
        valid = ops.logical_and(valid, ops.not_equal(t, ignore_index))
    w = ops.cast(valid, "float32")
    if sample_weight is not None:
        sw = ops.broadcast_to(ops.cast(sample_weight, "float32"), ops.shape(t))
        w = w * (sw if weighted else ops.cast(ops.greater(sw, 0), "float32"))
    t = ops.where(valid, t, 0)
    if is_logits:
        y_pred = ops.reshape(y_pred, (-1, num_classes))  # (N, K)
    else:
        y_pred = ops.reshape(ops.cast(y_pred, "int32"), (-1,))  # (N,)
    return ops.reshape(t, (-1,)), y_pred, ops.reshape(w, (-1,))


@register
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates a (K, K) confusion matrix; `result()` is the matrix itself.

    Subclasses turn the matrix into one scalar for the logs. `scores()` returns the
    full `kseg.metrics.scores` dict of the accumulated matrix (numpy, eager only).
    """

    def __init__(self, num_classes, ignore_index=None, weighted=False, name="confusion_matrix", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.weighted = bool(weighted)
        self.cm = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="float32", name="cm"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        K = self.num_classes
        t, p, w = _flat_inputs(y_true, y_pred, sample_weight, K, self.ignore_index, self.weighted)
        if len(p.shape) == 2:
            p = ops.cast(ops.argmax(p, axis=-1), "int32")  # logits (N, K) -> labels (N,)
        p = ops.clip(p, 0, K - 1)  # argmax is in range; clip guards label-map input
        # One flat histogram over K*K cells, index = true*K + pred; scatter adds
        # duplicates and, unlike bincount, has a static shape, so it compiles on JAX.
        flat = ops.expand_dims(t * K + p, -1)  # (N, 1)
        counts = ops.scatter(flat, w, (K * K,))
        self.cm.assign_add(ops.reshape(counts, (K, K)))

    def result(self):
        return ops.convert_to_tensor(self.cm)

    def counts(self):
        """(tp, row_sum, col_sum) float32 (K,) of the accumulated matrix."""
        cm = ops.convert_to_tensor(self.cm)
        return ops.diagonal(cm), ops.sum(cm, axis=1), ops.sum(cm, axis=0)

    def scores(self):
        from kseg.metrics.scores import scores

        return scores(np.rint(ops.convert_to_numpy(self.cm)).astype(np.int64))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "weighted": self.weighted,
        }


@register
class PixelAccuracy(ConfusionMatrixMetric):
    """Pixel accuracy = trace(cm) / sum(cm), void excluded."""

    def __init__(self, num_classes, ignore_index=None, weighted=False, name="accuracy", dtype=None):
        super().__init__(num_classes, ignore_index, weighted, name=name, dtype=dtype)

    def result(self):
        tp, row, _ = self.counts()
        return ops.divide_no_nan(ops.sum(tp), ops.sum(row))


@register
class MeanIoU(ConfusionMatrixMetric):
    """Macro IoU over classes present in labels or predictions (row_sum + col_sum > 0)."""

    def __init__(self, num_classes, ignore_index=None, weighted=False, name="miou", dtype=None):
        super().__init__(num_classes, ignore_index, weighted, name=name, dtype=dtype)

    def result(self):
        tp, row, col = self.counts()
        present = ops.cast(ops.greater(row + col, 0), "float32")
        # union = TP + FP + FN = row + col - TP, > 0 for every present class.
        iou = ops.divide_no_nan(tp, row + col - tp)
        return ops.divide_no_nan(ops.sum(iou * present), ops.sum(present))


@register
class ForegroundIoU(ConfusionMatrixMetric):
    """IoU of class 1, the foreground of a two-class (binary) set: TP / (TP + FP + FN)."""

    def __init__(self, num_classes=2, ignore_index=None, weighted=False, name="fg_iou", dtype=None):
        super().__init__(num_classes, ignore_index, weighted, name=name, dtype=dtype)

    def result(self):
        tp, row, col = self.counts()
        return ops.divide_no_nan(tp[1], row[1] + col[1] - tp[1])


@register
class SoftDice(keras.metrics.Metric):
    """Soft Dice on softmax probabilities: not the hard Dice of the confusion matrix.

    Per class c, sums accumulated over every pixel of every batch (not a mean of
    per-batch ratios), void pixels masked out:

        soft_dice_c = 2 * sum(p_c * onehot_c) / (sum(p_c) + sum(onehot_c))

    averaged over classes present in the labels so far (sum(onehot_c) > 0): with
    probabilities every class has some predicted mass, so "present in predictions"
    would mean every class.
    """

    def __init__(self, num_classes, ignore_index=None, weighted=False, name="soft_dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.weighted = bool(weighted)
        # Per-class sums over every pixel seen: sum(p*onehot), sum(p), sum(onehot).
        self.intersection = self._sum_variable("intersection")
        self.pred_sum = self._sum_variable("pred_sum")
        self.true_sum = self._sum_variable("true_sum")

    def _sum_variable(self, name):
        return self.add_variable(shape=(self.num_classes,), initializer="zeros", dtype="float32", name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        K = self.num_classes
        t, logits, w = _flat_inputs(y_true, y_pred, sample_weight, K, self.ignore_index, self.weighted)
        if len(logits.shape) != 2:
            raise ValueError(f"SoftDice needs logits (B, H, W, {K}). Received: y_pred.shape={y_pred.shape}")
        w = ops.expand_dims(w, -1)  # (N, 1)
        probs = ops.softmax(ops.cast(logits, "float32"), axis=-1) * w  # (N, K), void rows 0
        onehot = ops.one_hot(t, K, dtype="float32") * w  # (N, K)
        self.intersection.assign_add(ops.sum(probs * onehot, axis=0))
        self.pred_sum.assign_add(ops.sum(probs, axis=0))
        self.true_sum.assign_add(ops.sum(onehot, axis=0))

    def per_class(self):
        """float32 (K,) soft Dice per class (0 where the class never occurred)."""
        den = ops.convert_to_tensor(self.pred_sum) + ops.convert_to_tensor(self.true_sum)
        return ops.divide_no_nan(2.0 * ops.convert_to_tensor(self.intersection), den)

    def result(self):
        present = ops.cast(ops.greater(ops.convert_to_tensor(self.true_sum), 0), "float32")
        return ops.divide_no_nan(ops.sum(self.per_class() * present), ops.sum(present))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "weighted": self.weighted,
        }


def training_metrics(num_classes, ignore_index=None):
    """The metrics `kseg fit` logs: [PixelAccuracy "accuracy", MeanIoU "miou", SoftDice "soft_dice"],
    and ForegroundIoU "fg_iou" for two classes."""
    metrics = [
        PixelAccuracy(num_classes, ignore_index),
        MeanIoU(num_classes, ignore_index),
        SoftDice(num_classes, ignore_index),
    ]
    return metrics + ([ForegroundIoU(num_classes, ignore_index)] if num_classes == 2 else [])

