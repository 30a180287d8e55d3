"""Streaming confusion matrix on numpy: the one object every evaluation score comes from.

Rows are the true class, columns the predicted class: `cm[t, p]` counts pixels of
true class `t` predicted as `p`. Void pixels (`y_true == ignore_index`) are dropped
before counting, whatever was predicted there.
"""

import numpy as np

from kseg.errors import KsegError

# How many distinct bad values an error message lists before it says "...".
_MAX_SHOWN = 5


def _as_labels(arr, what):
    """`arr` as an integer numpy array; floats, bools and objects are refused."""
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.integer):
        raise KsegError(
            f"{what} must hold integer class indices, got dtype {arr.dtype}; "
            "pass label maps (argmax of the logits), not probabilities"
        )
    return arr


def _bad_values_message(values, what, allowed):
    bad = np.unique(values)
    shown = ", ".join(str(int(v)) for v in bad[:_MAX_SHOWN])
    more = ", ..." if bad.size > _MAX_SHOWN else ""
    return f"{what} holds values {shown}{more} outside {allowed}; check num_classes and the void value"


def _check_range(arr, num_classes, what, allowed):
    """Raise KsegError naming the values of `arr` outside [0, num_classes)."""
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)]
        raise KsegError(_bad_values_message(bad, what, allowed))


def confusion_matrix(y_true, y_pred, num_classes, ignore_index=None):
    """Count pixels by (true class, predicted class).

    Args:
        y_true: integer label map(s), any shape, e.g. (N, H, W) uint8. Values must be in
            [0, num_classes) or equal `ignore_index`.
        y_pred: integer predicted labels, same shape as `y_true`, values in
            [0, num_classes) wherever `y_true` is not void.
        num_classes: K, the number of real classes (void not included).
        ignore_index: the void value, or None when every pixel counts.

    Returns:
        int64 array (K, K): rows = true class, columns = predicted class.

    Raises:
        KsegError: shapes differ, labels are not integers, or values are out of range
            (the message names the bad values).
    """
    num_classes = int(num_classes)
    if num_classes < 1:
        raise KsegError(f"num_classes must be >= 1, got {num_classes}")
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise KsegError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; they must match")
    t, p = t.ravel(), p.ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        if not keep.all():  # boolean indexing copies: skip it when there is no void
            t, p = t[keep], p[keep]
    allowed_true = f"[0, {num_classes})" + ("" if ignore_index is None else f" and void {ignore_index}")
    _check_range(t, num_classes, "y_true", allowed_true)
    _check_range(p, num_classes, "y_pred", f"[0, {num_classes})")
    # One flat histogram over K*K cells: index = true*K + pred. np.bincount is a single
    # pass in C, several times faster than np.add.at or a (K, K) loop of masks.
    flat = t.astype(np.intp) * num_classes + p.astype(np.intp)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


class ConfusionAccumulator:
    """Sum confusion matrices over batches or frames of a split.

    >>> acc = ConfusionAccumulator(num_classes=11, ignore_index=11)
    >>> for y_true, y_pred in batches:
    ...     acc.update(y_true, y_pred)
    >>> kseg.metrics.scores(acc.cm)["miou"]
    """

    def __init__(self, num_classes, ignore_index=None):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, y_true, y_pred):
        """Add the confusion matrix of one batch; returns self so calls can chain."""
        self.cm += confusion_matrix(y_true, y_pred, self.num_classes, self.ignore_index)
        return self

    def reset(self):
        self.cm[...] = 0

    @property
    def pixels(self):
        """Number of non-void pixels counted so far."""
        return int(self.cm.sum())

    def scores(self):
        """`kseg.metrics.scores` of the accumulated matrix."""
        from kseg.metrics.scores import scores

        return scores(self.cm)
