"""Soft Dice over a split, with numpy: the evaluation twin of `keras_metrics.SoftDice`.

Per class k, over all non-void pixels of the split (sums, not a mean of batch ratios):
    soft_dice_k = 2 * sum(p_k * y_k) / (sum(p_k) + sum(y_k))
with p the softmax of the logits and y the one-hot labels. The score is the mean over
classes present in the labels: every class gets some probability mass, so "present in
predictions" would mean every class. Not hard Dice (which equals F1): see docs/metrics.md.
"""

import math

import numpy as np

from kseg.metrics.split_loss import _log_softmax


class SoftDiceAccumulator:
    """`update(logits, y_true)` per batch or frame; `result()` gives the split's soft Dice."""

    def __init__(self, num_classes, ignore_index=None):
        self.ignore_index = ignore_index
        self.inter = np.zeros(num_classes)  # sum p*y per class
        self.prob = np.zeros(num_classes)  # sum p
        self.true = np.zeros(num_classes)  # sum y

    def update(self, logits, y_true):
        """logits float (..., K), labels (...) with void = `ignore_index`."""
        y_true = np.asarray(y_true)
        keep = y_true != self.ignore_index if self.ignore_index is not None else np.ones(y_true.shape, bool)
        p = np.exp(_log_softmax(np.asarray(logits)[keep]))  # (n, K)
        onehot = np.eye(p.shape[-1])[y_true[keep].astype(np.intp)]  # (n, K)
        self.inter += (p * onehot).sum(0)
        self.prob += p.sum(0)
        self.true += onehot.sum(0)

    def result(self):
        present = self.true > 0
        den = self.prob + self.true
        soft = np.divide(2 * self.inter, den, out=np.zeros_like(den), where=den > 0)
        return float(soft[present].mean()) if present.any() else math.nan
