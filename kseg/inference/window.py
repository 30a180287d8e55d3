"""Sliding windows: an image of any size as overlapping tiles, blended, in bounded memory.

Tiles are `window` pixels (rounded up to the stride; a side shorter than a window
becomes one tile, reflect-padded to the stride, exactly the whole-frame prediction).
Neighbouring tiles overlap by `overlap` of a tile; the last tile of a row or column is
flush with the image's edge, so no tile is padded beyond it. Each tile's logits are
weighted by a separable ramp, 1e-3 + sin^2(pi (i + 0.5) / n): smooth, highest at the
tile's centre, never zero, so seams blend and every pixel has weight.

Memory: tiles are predicted `batch_size` at a time and accumulated, top to bottom,
into float32 buffers one tile high, weighted logits (window, W, K) and weights
(window, W); rows that no later tile touches are yielded as a finished band and the
buffers shift up. For a 4096 x 4096 image, K = 12 and window 512 that is 512 * 4096 *
12 * 4 B = 101 MB (plus 8 MB of weights), instead of 805 MB for whole-image buffers,
and float32 keeps the blend exact enough for the loss and soft Dice of `kseg eval`.
"""

import numpy as np


def ramp(n):
    """(n,) float32 blending weights of one tile side: smooth, peak mid-tile, never zero."""
    return (1e-3 + np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2).astype(np.float32)


def tile_side(window, stride, n):
    """A tile side: `window` rounded up to `stride`, but no more than `n` padded to `stride`."""
    up = lambda v: -(-v // stride) * stride  # noqa: E731
    return min(up(window), up(n))


def starts(n, tile, step):
    """Tile starts along an axis of length n >= tile: every `step`, the last flush with the end."""
    if n <= tile:
        return [0]
    return list(range(0, n - tile, step)) + [n - tile]


def iter_window_bands(predict, image, stride, window, overlap=0.33, batch_size=2):
    """Yield (y0, float32 (h, W, K) logits) bands of one (H, W, 3) image, top to bottom.

    `predict`: (B, th, tw, 3) float32 tiles (sides multiples of `stride`) -> (B, th, tw, K).
    The bands cover the image's rows exactly once, in order.
    """
    h, w = image.shape[:2]
    th, tw = tile_side(window, stride, h), tile_side(window, stride, w)
    hp, wp = max(h, th), max(w, tw)
    if (hp, wp) != (h, w):  # a side shorter than a tile: reflect-pad it, as whole frames are
        image = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="reflect")
    ys = starts(hp, th, max(1, round(th * (1 - overlap))))
    xs = starts(wp, tw, max(1, round(tw * (1 - overlap))))
    if len(ys) == len(xs) == 1:  # one tile: no blending, bit for bit the whole frame
        yield 0, predict(np.asarray(image[None], np.float32))[0][:h, :w]
        return
    weight = ramp(th)[:, None] * ramp(tw)[None, :]  # (th, tw)
    acc = wsum = None
    for i, y in enumerate(ys):  # the buffers hold rows [y, y + th)
        for j in range(0, len(xs), batch_size):
            group = xs[j:j + batch_size]
            out = predict(np.stack([image[y:y + th, x:x + tw] for x in group]).astype(np.float32))
            if acc is None:
                acc = np.zeros((th, wp, out.shape[-1]), np.float32)  # (th, W, K) weighted logits
                wsum = np.zeros((th, wp), np.float32)
            for x, z in zip(group, out, strict=True):
                acc[:, x:x + tw] += z * weight[..., None]
                wsum[:, x:x + tw] += weight
        done = (ys[i + 1] if i + 1 < len(ys) else hp) - y  # rows [y, y + done) are final
        rows = max(0, min(done, h - y))
        yield y, acc[:rows, :w] / wsum[:rows, :w, None]
        acc[:th - done] = acc[done:]
        acc[th - done:] = 0
        wsum[:th - done] = wsum[done:]
        wsum[th - done:] = 0
