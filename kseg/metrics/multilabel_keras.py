"""Keras metrics of multi-label training logs: one sigmoid per class, labels as bits.

y_true (B, H, W) holds one bit per class (kseg.data.multilabel_masks), void = ignore_index or
any label >= 2**K; y_pred (B, H, W, K) logits, class c predicted where z_c > 0. Each
metric keeps per-class sums over every pixel of the epoch:

    accuracy   (right pixel-class decisions) / (valid pixels x K)
    miou       mean over present classes (TP + FP + FN > 0) of TP / (TP + FP + FN)
    soft_dice  mean over classes in the labels of 2 sum(p y) / (sum p + sum y)

the names of the single-label metrics (kseg.metrics.keras_metrics), so logs, --monitor
and history.csv read the same.
"""

import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="kseg")


def _flat(y_true, y_pred, num_classes, ignore_index):
    """(bits (N, K) float32, logits (N, K) float32, valid (N, 1) float32)."""
    k = num_classes
    t = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    valid = ops.logical_and(ops.greater_equal(t, 0), ops.less(t, 2 ** k))
    if ignore_index is not None:
        valid = ops.logical_and(valid, ops.not_equal(t, ignore_index))
    t = ops.where(valid, t, 0)
    bits = ops.bitwise_and(ops.right_shift(t[:, None], ops.arange(k, dtype="int32")[None]), 1)
    z = ops.reshape(ops.cast(y_pred, "float32"), (-1, k))
    return ops.cast(bits, "float32"), z, ops.cast(valid, "float32")[:, None]


class _PerClassSums(keras.metrics.Metric):
    """(K, 4) sums per class, whose meaning a subclass gives in `_terms`."""

    def __init__(self, num_classes, ignore_index=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.sums = self.add_variable(shape=(self.num_classes, 4), initializer="zeros", dtype="float32",
                                      name="sums")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y, z, w = _flat(y_true, y_pred, self.num_classes, self.ignore_index)
        self.sums.assign_add(ops.stack(self._terms(y, z, w), axis=-1))

    def _terms(self, y, z, w):
        """Confusion counts per class (TP, FP, FN, TN), each (K,)."""
        pred = ops.cast(ops.greater(z, 0), "float32")
        return [ops.sum(w * a * b, axis=0) for a, b in ((y, pred), (1 - y, pred), (y, 1 - pred),
                                                        (1 - y, 1 - pred))]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_index": self.ignore_index}


@register
class MultiLabelAccuracy(_PerClassSums):
    def __init__(self, num_classes, ignore_index=None, name="accuracy", dtype=None):
        super().__init__(num_classes, ignore_index, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn, tn = (self.sums[:, i] for i in range(4))
        return ops.divide_no_nan(ops.sum(tp + tn), ops.sum(tp + fp + fn + tn))


@register
class MultiLabelIoU(_PerClassSums):
    def __init__(self, num_classes, ignore_index=None, name="miou", dtype=None):
        super().__init__(num_classes, ignore_index, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn = (self.sums[:, i] for i in range(3))
        union = tp + fp + fn
        present = ops.cast(ops.greater(union, 0), "float32")
        return ops.divide_no_nan(ops.sum(present * ops.divide_no_nan(tp, union)), ops.sum(present))


@register
class MultiLabelSoftDice(_PerClassSums):
    def __init__(self, num_classes, ignore_index=None, name="soft_dice", dtype=None):
        super().__init__(num_classes, ignore_index, name=name, dtype=dtype)

    def _terms(self, y, z, w):
        p = ops.sigmoid(z) * w
        y = y * w
        zero = ops.zeros((self.num_classes,))
        return [ops.sum(p * y, axis=0), ops.sum(p, axis=0), ops.sum(y, axis=0), zero]

    def result(self):
        inter, p, y = (self.sums[:, i] for i in range(3))
        present = ops.cast(ops.greater(y, 0), "float32")
        return ops.divide_no_nan(ops.sum(present * ops.divide_no_nan(2 * inter, p + y)), ops.sum(present))


def training_metrics(num_classes, ignore_index=None):
    """[accuracy, miou, soft_dice] of a multi-label run."""
    return [cls(num_classes, ignore_index) for cls in (MultiLabelAccuracy, MultiLabelIoU, MultiLabelSoftDice)]
