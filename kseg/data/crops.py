"""Random crops at native resolution, optionally with scale jitter (random-crop mode).

`random_crop` cuts a patch of the frame as it is. `scaled_crop` first draws a scale s
log-uniformly in [lo, hi] (so s and 1/s are equally likely: (0.5, 2) zooms out as often
as in), then reads a source window of side patch / s at a uniform position and resamples
it to the patch size, image bilinear and mask nearest (one interpolation). s > 1 magnifies, as
AugmentConfig.zoom does. A window larger than the frame (s < patch / frame side) holds
the frame at a uniform position; the rest is empty: image 0, mask void (with no void
value, the nearest edge pixel is repeated, as in augment.warp). Downscaling does not
antialias, like io.resize_bilinear and tf.image.resize's default.

Both take an optional `anchor`, a (row, col) pixel the crop must contain: class-uniform
sampling (`class_anchor`) centres some crops on a class drawn uniformly from the classes
in the frame, so a thin class such as CamVid's Pole (1 % of pixels) is in far more crops
than its pixel share gives it.

Not keras.layers.RandomCrop: it has no scale jitter, no anchor, and draws from a
stateful SeedGenerator (kseg/data/augment.py says why that breaks the batch rule).
"""

import numpy as np


def class_anchor(mask, rng, num_classes):
    """(row, col) of a uniform pixel of a class drawn uniformly from the classes in `mask`
    (labels < num_classes: void never), or None when the mask holds none."""
    counts = np.bincount(mask.ravel(), minlength=256)[:num_classes]
    present = np.flatnonzero(counts)
    if not len(present):
        return None
    c = present[rng.integers(len(present))]
    k = rng.integers(counts[c])
    return divmod(int(np.flatnonzero(mask.ravel() == c)[k]), mask.shape[1])


def _start(anchor, window, n, rng):
    """Start of a window of `window` pixels on an axis of n: uniform over the starts that
    keep the window in the frame (or the frame in the window); with `anchor`, uniform over
    those that also hold the anchor pixel (clipped to the same range)."""
    lo, hi = min(0.0, n - window), max(0.0, n - window)
    if anchor is None:
        return rng.uniform(lo, hi)
    return float(np.clip(anchor + 0.5 - rng.uniform(0.0, window), lo, hi))


def random_crop(image, mask, size, rng, void, anchor=None):
    """A crop of `size` (h, w, or an int) at a uniform position (holding `anchor`, a
    (row, col), when given); frames smaller than it are padded at the bottom and right
    (0 / void)."""
    p_h, p_w = (size, size) if np.ndim(size) == 0 else size
    h, w = mask.shape
    ph, pw = max(p_h - h, 0), max(p_w - w, 0)
    if ph or pw:
        mode = dict(mode="constant") if void is not None else dict(mode="edge")
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), **mode)
        mask = np.pad(mask, ((0, ph), (0, pw)), **mode,
                      **({"constant_values": void} if void is not None else {}))
        h, w = mask.shape
    if anchor is None:
        y0, x0 = rng.integers(0, h - p_h + 1), rng.integers(0, w - p_w + 1)
    else:  # whole-pixel starts whose window holds the anchor, kept in the frame
        y0 = int(np.clip(anchor[0] - rng.integers(0, p_h), 0, h - p_h))
        x0 = int(np.clip(anchor[1] - rng.integers(0, p_w), 0, w - p_w))
    return (image[y0:y0 + p_h, x0:x0 + p_w].astype(np.float32),
            mask[y0:y0 + p_h, x0:x0 + p_w].copy())


def scaled_crop(image, mask, size, rng, scale, void, anchor=None):
    """A crop of `size` (h, w) of the frame scaled by s, s log-uniform in `scale` (lo, hi),
    holding `anchor` (row, col) when given."""
    lo, hi = scale
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    h, w = mask.shape
    win_h, win_w = size[0] / s, size[1] / s
    y0 = _start(None if anchor is None else anchor[0], win_h, h, rng)
    x0 = _start(None if anchor is None else anchor[1], win_w, w, rng)
    return resample_window(image, mask, (y0, x0, win_h, win_w), size, void)


def _taps(start, length, n_out, n_in):
    """Source taps of n_out samples spread over [start, start + length) of an n_in axis."""
    # Half-pixel centres, as io.resize_bilinear: sample i sits at source coordinate x.
    x = start + (np.arange(n_out) + 0.5) * (length / n_out) - 0.5
    nearest = np.floor(x + 0.5).astype(np.intp)  # as io.resize_nearest
    inside = (nearest >= 0) & (nearest < n_in)
    xc = np.clip(x, 0, n_in - 1)
    i0 = np.floor(xc).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (xc - i0).astype(np.float32), np.clip(nearest, 0, n_in - 1), inside


def resample_window(image, mask, window, size, void):
    """Resample the source window (y0, x0, height, width), in frame pixels, to `size` (h, w).

    Returns float32 image (bilinear) and uint8 mask (nearest); output pixels whose source
    lies outside the frame are 0 and void (edge-repeated when void is None)."""
    y0, x0, win_h, win_w = window
    r0, r1, fr, rn, r_in = _taps(y0, win_h, size[0], mask.shape[0])
    c0, c1, fc, cn, c_in = _taps(x0, win_w, size[1], mask.shape[1])
    # Columns first, on the rows the taps touch, with (H, W * C) rows so that the gathers
    # and the weights run along contiguous memory (weights broadcast over a trailing axis
    # of 3 are several times slower).
    top, ch = r0.min(), np.arange(image.shape[2])
    rows = image.reshape(image.shape[0], -1)[top:r1.max() + 1]  # (h_src, W * C)
    a = np.take(rows, (c0[:, None] * len(ch) + ch).ravel(), axis=1).astype(np.float32)
    b = np.take(rows, (c1[:, None] * len(ch) + ch).ravel(), axis=1).astype(np.float32)
    b -= a
    b *= np.repeat(fc, len(ch))
    a += b  # (h_src, w * C)
    out, b = a[r0 - top], a[r1 - top]  # (h, w * C)
    b -= out
    b *= fr[:, None]
    out += b
    out = out.reshape(size[0], size[1], len(ch))
    out_mask = mask[rn][:, cn]
    if void is not None:
        out[~r_in], out[:, ~c_in] = 0, 0
        out_mask[~r_in], out_mask[:, ~c_in] = void, void
    return out, out_mask
