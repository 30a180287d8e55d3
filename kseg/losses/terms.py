"""The per-term losses on one flattened batch; `keras.ops` only, so any backend works.

`prepare` turns labels (B, H, W) and logits (B, H, W, K) into a `Batch` of N = B*H*W
pixels; every term takes that Batch and returns a float32 scalar. Void pixels (label ==
ignore_index) and labels outside [0, K) (a compiled graph cannot raise on them) are
dropped by weights that are 0 there, never by filtering, so shapes stay static and the
gradient at a void pixel is exactly 0. Softmax and its log are taken in float32.

Pixel terms, ce and focal, are means over the non-void pixels. With class weights w
(K,), pixel i counts w[t_i], normalised as PyTorch's weighted cross-entropy does:

    loss = sum_i w[t_i] * s_i * l_i / sum_i w[t_i]      (sums over non-void pixels)

where s_i is the sample weight (1 without one): as in Keras, a sample weight scales a
pixel's loss but is not in the normaliser, so "ce" matches Keras'
SparseCategoricalCrossentropy(ignore_class=void) with or without sample weights.

Region terms, dice, tversky (and lovasz in kseg.losses.lovasz), give one loss L_c per
class from sums over the kept pixels (non-void, sample weight > 0: for them a sample
weight only masks, as in kseg's metrics) and average the classes PRESENT in the batch's
labels (G_c > 0), weighted by w:

    loss = sum_c w_c [G_c > 0] L_c / sum_c w_c [G_c > 0]

An absent class is left out rather than smoothed in: predicting it anywhere already costs
through the present classes' probabilities, and a batch of a few classes out of K is not
dominated by K - few trivial terms. A batch with no kept pixel gives 0 (and 0 gradients).
"""

from typing import NamedTuple

from keras import ops


class Batch(NamedTuple):
    """One batch flattened to N pixels (float32 unless said)."""

    labels: object  # (N,) int32 class index, 0 where dropped
    log_probs: object  # (N, K) log softmax of the logits
    probs: object  # (N, K) softmax of the logits
    onehot: object  # (N, K) one-hot labels, rows of dropped pixels included (weights zero them)
    valid: object  # (N,) 1 on non-void pixels with a label in [0, K): the pixel terms' normaliser
    scale: object  # (N,) sample weight on valid pixels, 0 elsewhere: the pixel terms' numerator
    mask: object  # (N,) 1 on valid pixels with sample weight > 0: the region terms' pixels


def prepare(y_true, logits, num_classes, ignore_index=None, sample_weight=None):
    """Labels (B, H, W) (or (B, H, W, 1)), logits (B, H, W, K) -> Batch.

    `sample_weight`: None, or per-pixel (B, H, W) or per-image (B,) weights (anything that
    broadcasts to the labels once trailing axes are added).
    """
    K = int(num_classes)
    logits = ops.cast(logits, "float32")  # mixed precision: bf16/f16 logits, f32 loss
    t = ops.cast(y_true, "int32")
    if len(t.shape) == len(logits.shape):
        t = ops.squeeze(t, axis=-1)  # (B, H, W, 1) -> (B, H, W)
    valid = ops.logical_and(ops.greater_equal(t, 0), ops.less(t, K))
    if ignore_index is not None:
        valid = ops.logical_and(valid, ops.not_equal(t, int(ignore_index)))
    t = ops.where(valid, t, 0)  # any index in range: its weights are 0
    valid = ops.cast(valid, "float32")
    if sample_weight is None:
        scale, mask = valid, valid
    else:
        sw = ops.cast(sample_weight, "float32")
        while len(sw.shape) < len(t.shape):
            sw = ops.expand_dims(sw, -1)  # per-image (B,) -> (B, 1, 1)
        if len(sw.shape) > len(t.shape):
            sw = ops.squeeze(sw, axis=-1)  # (B, H, W, 1) -> (B, H, W)
        sw = ops.broadcast_to(sw, ops.shape(t))
        scale = sw * valid
        mask = ops.cast(ops.greater(sw, 0), "float32") * valid
    labels = ops.reshape(t, (-1,))
    log_probs = ops.log_softmax(ops.reshape(logits, (-1, K)), axis=-1)
    return Batch(
        labels=labels,
        log_probs=log_probs,
        probs=ops.exp(log_probs),
        onehot=ops.one_hot(labels, K, dtype="float32"),
        valid=ops.reshape(valid, (-1,)),
        scale=ops.reshape(scale, (-1,)),
        mask=ops.reshape(mask, (-1,)),
    )


def two_class_logits(logits):
    """One sigmoid logit z (..., 1) -> the two-class logits [0, z] (..., 2).

    softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)], so cross-entropy on them is binary
    cross-entropy and focal is binary focal, computed through log-softmax (stable for any z).
    """
    logits = ops.cast(logits, "float32")
    return ops.concatenate([ops.zeros_like(logits), logits], axis=-1)


def _true_log_prob(batch):
    """(N,) log p[true] of each pixel, gathered (not summed against the one-hot)."""
    return ops.take_along_axis(batch.log_probs, ops.expand_dims(batch.labels, -1), axis=-1)[:, 0]


def _pixel_mean(per_pixel, batch, class_weights):
    """sum_i w[t_i] s_i l_i / sum_i w[t_i] over valid pixels; 0 when none is valid."""
    if class_weights is None:
        num, den = ops.sum(batch.scale * per_pixel), ops.sum(batch.valid)
    else:
        w = ops.take(ops.convert_to_tensor(class_weights, "float32"), batch.labels)  # (N,) w[t_i]
        num, den = ops.sum(w * batch.scale * per_pixel), ops.sum(w * batch.valid)
    return ops.divide_no_nan(num, den)


def cross_entropy(batch, class_weights=None):
    """Mean over non-void pixels of -log p[true] (class-weighted as in the module doc)."""
    return _pixel_mean(-_true_log_prob(batch), batch, class_weights)


def focal(batch, class_weights=None, gamma=2.0):
    """Focal loss (Lin et al. 2017): mean of -(1 - p_t)^gamma log p_t; gamma=0 is cross-entropy.

    Class weights play the part of the paper's alpha_t. 1 - p_t is floored at 1e-12 so
    the gradient of x^gamma stays finite at p_t = 1 for gamma < 1 (the term is 0 there).
    """
    log_pt = _true_log_prob(batch)  # (N,)
    modulator = ops.power(ops.maximum(1.0 - ops.exp(log_pt), 1e-12), float(gamma))
    return _pixel_mean(-modulator * log_pt, batch, class_weights)


def class_sums(batch):
    """Per-class soft counts over kept pixels, each (K,): (sum p*y, sum p, sum y)."""
    m = ops.expand_dims(batch.mask, -1)  # (N, 1)
    p = batch.probs * m
    y = batch.onehot * m
    return ops.sum(p * y, axis=0), ops.sum(p, axis=0), ops.sum(y, axis=0)


def present_class_mean(per_class, true_sum, class_weights=None):
    """Mean of per_class (K,) over classes with true_sum > 0, weighted by class_weights."""
    w = ops.cast(ops.greater(true_sum, 0), "float32")
    if class_weights is not None:
        w = w * ops.convert_to_tensor(class_weights, "float32")
    return ops.divide_no_nan(ops.sum(w * per_class), ops.sum(w))


def dice(batch, class_weights=None, smooth=1.0):
    """Soft Dice loss: per class 1 - (2 I + s) / (P + G + s), present classes averaged.

    I = sum p*y, P = sum p, G = sum y over kept pixels, s = smooth.
    """
    inter, pred_sum, true_sum = class_sums(batch)
    per_class = 1.0 - ops.divide_no_nan(2.0 * inter + smooth, pred_sum + true_sum + smooth)
    return present_class_mean(per_class, true_sum, class_weights)


def tversky(batch, class_weights=None, alpha=0.5, beta=0.5, smooth=1.0):
    """Tversky loss (Salehi et al. 2017): per class 1 - (I + s/2) / (I + alpha FP + beta FN + s/2).

    FP = P - I (soft false positives), FN = G - I. alpha weighs false positives, beta
    false negatives. Smoothing enters as s/2 so that alpha = beta = 1/2 is exactly Dice
    with the same `smooth`: I + (P - I)/2 + (G - I)/2 = (P + G)/2.
    """
    inter, pred_sum, true_sum = class_sums(batch)
    den = inter + alpha * (pred_sum - inter) + beta * (true_sum - inter) + 0.5 * smooth
    per_class = 1.0 - ops.divide_no_nan(inter + 0.5 * smooth, den)
    return present_class_mean(per_class, true_sum, class_weights)
