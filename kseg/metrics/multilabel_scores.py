"""Scores of a multi-label split, with numpy: one binary confusion per class.

Labels (...) hold one bit per class (kseg.data.multilabel_masks), logits (..., K); class c is
predicted where z_c > 0 (sigmoid(z_c) > 0.5). Per class, summed over every non-void
pixel of the split: TP, FP, FN, TN, and for soft Dice sum p*y, sum p, sum y. Table I's
names then mean:

    accuracy      (TP + TN) / all pixel-class decisions (micro)
    f1 = dice, precision, sensitivity, specificity, iou (miou)
                  per class from its counts, macro over the classes present
                  (TP + FP + FN > 0), as kseg.metrics.scores does for one class a pixel
    soft_dice     2 sum(p y) / (sum p + sum y), mean over classes in the labels
    loss          binary cross-entropy, mean over pixels and classes
"""

import math

import numpy as np


def bits_of(labels, k):
    """(..., K) 0/1 of labels holding one bit per class."""
    return (np.asarray(labels)[..., None].astype(np.int64) >> np.arange(k)) & 1


class MultiLabelAccumulator:
    """`update(logits, y_true)` per frame or band; `result()` gives the split's scores."""

    def __init__(self, num_classes, ignore_index=None):
        self.k, self.ignore_index = int(num_classes), ignore_index
        self.counts = np.zeros((self.k, 4), np.int64)  # TP, FP, FN, TN per class
        self.soft = np.zeros((self.k, 3))  # sum p*y, sum p, sum y
        self.bce, self.pixels = 0.0, 0

    def update(self, logits, y_true):
        y_true = np.asarray(y_true)
        keep = y_true < 2 ** self.k
        if self.ignore_index is not None:
            keep &= y_true != self.ignore_index
        z = np.asarray(logits, np.float64)[keep]  # (n, K)
        y = bits_of(y_true[keep], self.k).astype(bool)
        pred = z > 0
        self.counts += np.stack([(y & pred).sum(0), (~y & pred).sum(0), (y & ~pred).sum(0),
                                 (~y & ~pred).sum(0)], axis=-1)
        p = 1 / (1 + np.exp(-z))
        self.soft += np.stack([(p * y).sum(0), p.sum(0), y.sum(0)], axis=-1)
        # -log sigmoid(z) for y = 1, -log sigmoid(-z) for y = 0: softplus(-+z), stable.
        self.bce += float(np.logaddexp(0, np.where(y, -z, z)).mean(-1).sum()) if len(z) else 0.0
        self.pixels += int(keep.sum())

    def result(self):
        tp, fp, fn, tn = (self.counts[:, i].astype(np.float64) for i in range(4))
        present = tp + fp + fn > 0
        per_class = {"precision": (tp, tp + fp), "sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
                     "f1": (2 * tp, 2 * tp + fp + fn), "dice": (2 * tp, 2 * tp + fp + fn),
                     "iou": (tp, tp + fp + fn)}
        out = {"loss": self.bce / self.pixels if self.pixels else math.nan,
               "accuracy": _ratio((tp + tn).sum(), self.counts.sum())}
        for name, (num, den) in per_class.items():
            values = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
            out[name] = float(values[present].mean()) if present.any() else math.nan
            if name == "iou":
                out["iou_per_class"] = np.where(present, values, np.nan).tolist()
        inter, prob, true = self.soft.T
        labelled = true > 0
        soft = np.divide(2 * inter, prob + true, out=np.zeros_like(inter), where=prob + true > 0)
        out["soft_dice"] = float(soft[labelled].mean()) if labelled.any() else math.nan
        out["miou"] = out.pop("iou")
        out["pixels"] = self.pixels
        out["class_counts"] = self.counts.tolist()  # (K, 4): TP, FP, FN, TN
        return out


def _ratio(num, den):
    return float(num) / float(den) if den > 0 else math.nan
