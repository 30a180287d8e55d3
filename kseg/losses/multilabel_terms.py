"""The losses' multi-label mode: one sigmoid per class, classes that overlap.

Labels (B, H, W) hold one bit per class (kseg.data.multilabel_masks: bit c set where class c
is present), void = ignore_index or any label >= 2**K; logits (B, H, W, K), one per
class, p_c = sigmoid(z_c). Over the non-void pixels:

    ce       mean over pixels and classes of -(y log p + (1 - y) log(1 - p))   (BCE)
    focal    the same, each term times (1 - p_t)^gamma, p_t = p if y else 1 - p
    dice, tversky, lovasz   per class on (p_c, y_c), the classes present in the batch
                            averaged: the multi-class terms' code on sigmoid
                            probabilities and bit targets (Lovász-sigmoid for lovasz)

log p and log(1 - p) are log_sigmoid(z) and log_sigmoid(-z): stable for any z.
"""

from typing import NamedTuple

from keras import ops

from kseg.losses.lovasz import lovasz_softmax
from kseg.losses.terms import dice, tversky


class MultiLabelBatch(NamedTuple):
    """One batch flattened to N pixels; the fields the region terms read, as terms.Batch."""

    log_p: object  # (N, K) log sigmoid(z)
    log_not_p: object  # (N, K) log sigmoid(-z) = log(1 - p)
    probs: object  # (N, K) sigmoid(z)
    onehot: object  # (N, K) the label's bits, 0/1
    valid: object  # (N,) 1 on non-void pixels
    scale: object  # (N,) sample weight on valid pixels
    mask: object  # (N,) 1 on valid pixels with sample weight > 0


def prepare(y_true, logits, num_classes, ignore_index=None, sample_weight=None):
    """Labels (B, H, W) of bits, logits (B, H, W, K) -> MultiLabelBatch."""
    k = int(num_classes)
    z = ops.reshape(ops.cast(logits, "float32"), (-1, k))
    t = ops.cast(y_true, "int32")
    if len(t.shape) == len(logits.shape):
        t = ops.squeeze(t, axis=-1)
    t = ops.reshape(t, (-1,))
    valid = ops.logical_and(ops.greater_equal(t, 0), ops.less(t, 2 ** k))
    if ignore_index is not None:
        valid = ops.logical_and(valid, ops.not_equal(t, int(ignore_index)))
    t = ops.where(valid, t, 0)
    valid = ops.cast(valid, "float32")
    bits = ops.cast(ops.bitwise_and(ops.right_shift(t[:, None], ops.arange(k, dtype="int32")[None]), 1),
                    "float32")  # (N, K)
    if sample_weight is None:
        scale, mask = valid, valid
    else:
        sw = ops.reshape(ops.broadcast_to(_per_pixel(sample_weight, y_true), ops.shape(y_true)[:3]), (-1,))
        scale, mask = sw * valid, ops.cast(ops.greater(sw, 0), "float32") * valid
    return MultiLabelBatch(log_p=ops.log_sigmoid(z), log_not_p=ops.log_sigmoid(-z), probs=ops.sigmoid(z),
                           onehot=bits, valid=valid, scale=scale, mask=mask)


def _per_pixel(sample_weight, y_true):
    sw = ops.cast(sample_weight, "float32")
    while len(sw.shape) < 3:
        sw = ops.expand_dims(sw, -1)  # per-image (B,) -> (B, 1, 1)
    return sw[..., 0] if len(sw.shape) > 3 else sw


def _pixel_mean(per_class, batch):
    """sum_i s_i mean_c l_ic / sum_i valid_i; 0 when no pixel is valid."""
    per_pixel = ops.mean(per_class, axis=-1)
    return ops.divide_no_nan(ops.sum(batch.scale * per_pixel), ops.sum(batch.valid))


def binary_cross_entropy(batch):
    y = batch.onehot
    return _pixel_mean(-(y * batch.log_p + (1.0 - y) * batch.log_not_p), batch)


def focal(batch, gamma=2.0):
    y = batch.onehot
    log_pt = y * batch.log_p + (1.0 - y) * batch.log_not_p
    modulator = ops.power(ops.maximum(1.0 - ops.exp(log_pt), 1e-12), float(gamma))
    return _pixel_mean(-modulator * log_pt, batch)


def term_functions(loss):
    """name -> function(MultiLabelBatch) for a SegmentationLoss's options."""
    return {
        "ce": binary_cross_entropy,
        "focal": lambda b: focal(b, loss.focal_gamma),
        "dice": lambda b: dice(b, None, loss.smooth),
        "tversky": lambda b: tversky(b, None, loss.tversky_alpha, loss.tversky_beta, loss.smooth),
        "lovasz": lambda b: lovasz_softmax(b),
    }
