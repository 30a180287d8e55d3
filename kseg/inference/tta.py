"""Test-time augmentation: logits averaged over horizontal flips and image scales.

Each pass resizes the batch by a scale (bilinear), reflect-pads it to the network's
stride, predicts, crops, flips the logits back, and resizes them to the batch's size
(bilinear): the average is over 2 x len(scales) passes with `flip`, len(scales) without.
With no augmentation, `tta_predict` is the plain padded whole-frame call (one pass).
"""

import numpy as np

from kseg.data.io import resize_bilinear


def padded_predict(predict, x, stride):
    """float32 (B, h, w, K) logits of a (B, h, w, 3) batch, reflect-padded to `stride` and cropped."""
    h, w = x.shape[1:3]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
    return predict(np.ascontiguousarray(x, np.float32))[:, :h, :w]


def _resize_batch(x, size):
    return np.stack([resize_bilinear(v, size) for v in x])


def tta_predict(predict, x, stride, flip=False, scales=(1.0,)):
    """Mean float32 (B, h, w, K) logits of `x` over flips and scales.

    Args:
        predict: (B, H, W, 3) float32 with H, W multiples of `stride` -> (B, H, W, K) logits.
        x: (B, h, w, 3) batch of any size, values in [0, 255].
        flip: also predict the horizontally flipped batch (and flip its logits back).
        scales: image scales; 1 is the batch as it is.
    """
    h, w = x.shape[1:3]
    total, passes = None, 0
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        xs = x if size == (h, w) else _resize_batch(x, size)
        for flipped in (False, True) if flip else (False,):
            z = padded_predict(predict, xs[:, :, ::-1] if flipped else xs, stride)  # (B, h', w', K)
            if flipped:
                z = z[:, :, ::-1]
            if size != (h, w):
                z = _resize_batch(z, (h, w))
            total = np.array(z, np.float32) if total is None else total + z
            passes += 1
    return total if passes == 1 else total / np.float32(passes)
