"""The training loss, evaluated on a whole split with numpy.

Training minimises sparse categorical cross-entropy from logits with void pixels
ignored (`kseg.losses`, term "ce"). Keras averages it per batch; over a split
the right number is sum over all non-void pixels / their count, so batches of different
sizes or void fractions weigh by pixel, not by batch. `cross_entropy_sum` returns that
(sum, count) pair for one batch; `split_loss` adds the pairs up.
"""

import numpy as np

from kseg.errors import KsegError


def _log_softmax(logits):
    """Stable log-softmax over the last axis, in float64. (..., K) -> (..., K)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def cross_entropy_sum(logits, y_true, ignore_index=None, from_logits=True):
    """Sum and count of per-pixel cross-entropy over non-void pixels.

    Args:
        logits: float (..., K): logits, or probabilities when `from_logits=False`.
        y_true: integer (...) class indices in [0, K) or `ignore_index`.
        ignore_index: the void value, or None.
        from_logits: False when `logits` are already softmax probabilities.

    Returns:
        (sum, count): float sum of -log p[true] over counted pixels, and int count.
        The mean loss is sum / count.
    """
    logits = np.asarray(logits)
    y_true = np.asarray(y_true)
    if logits.shape[:-1] != y_true.shape:
        raise KsegError(
            f"logits have shape {logits.shape} but y_true has shape {y_true.shape}; "
            "expected (..., K) and (...)"
        )
    num_classes = logits.shape[-1]
    keep = np.ones(y_true.shape, bool) if ignore_index is None else y_true != ignore_index
    t = y_true[keep].astype(np.intp)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = np.unique(t[(t < 0) | (t >= num_classes)])[:5].tolist()
        raise KsegError(f"y_true holds values {bad} outside [0, {num_classes}) and void {ignore_index}")
    if from_logits:
        log_p = _log_softmax(logits[keep])  # (n, K)
    else:
        # Same clipping as keras' categorical cross-entropy on probabilities.
        log_p = np.log(np.clip(np.asarray(logits[keep], np.float64), 1e-7, 1.0))
    picked = np.take_along_axis(log_p, t[:, None], axis=-1)[:, 0]  # (n,)
    return float(-picked.sum()), int(t.size)


def split_loss(batches, ignore_index=None, from_logits=True):
    """Mean cross-entropy per non-void pixel over an iterable of (logits, y_true) batches.

    Returns NaN when no pixel was counted.
    """
    total, count = 0.0, 0
    for logits, y_true in batches:
        s, n = cross_entropy_sum(logits, y_true, ignore_index, from_logits)
        total, count = total + s, count + n
    return total / count if count else float("nan")
