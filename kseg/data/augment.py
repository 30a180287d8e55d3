"""Geometric augmentation applied identically to an image patch and its mask.

Why not keras.layers.RandomRotation/RandomZoom/RandomTranslation/RandomFlip with
{"images", "segmentation_masks"} dicts? Keras 3.15 does warp masks with "nearest"
interpolation (BaseImagePreprocessingLayer.transform_segmentation_masks), but:
  * fill_mode/fill_value are shared with the image, so with fill_mode="constant" the
    area a rotation or shift leaves empty becomes class 0 (Sky in CamVid) instead of
    void, and the default "reflect" invents labels there;
  * each layer interpolates the image again, so chaining three layers blurs it three
    times, where one composed affine matrix interpolates once;
  * their randomness comes from a stateful backend SeedGenerator, so a batch is not a
    pure function of (seed, epoch, index) when PyDataset workers run out of order.
So this module composes rotation, shift, zoom and horizontal flip into one 3x3 matrix
and warps with numpy: bilinear for the image, nearest for the mask, 0 for image pixels
and void for mask pixels that map outside the source.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges, in the spirit of Keras' ImageDataGenerator (the study's settings).

    rotation: degrees, uniform in [-rotation, rotation].
    width_shift, height_shift: fractions of the patch size, uniform in [-s, s].
    zoom: scale uniform in [1 - zoom, 1 + zoom] (> 1 magnifies).
    hflip: flip left-right with probability 1/2.
    """

    rotation: float = 10.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    zoom: float = 0.1
    hflip: bool = True

    @classmethod
    def coerce(cls, value):
        """True -> defaults, False/None -> None, a dict -> fields, a config -> itself."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, cls):
            return value
        raise ValueError(f"augment must be a bool, dict or AugmentConfig. Received: augment={value!r}")


def random_matrix(rng, height, width, cfg):
    """A 3x3 matrix mapping output pixel (x, y, 1) to source pixel coordinates."""
    angle = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation))
    tx = rng.uniform(-cfg.width_shift, cfg.width_shift) * width
    ty = rng.uniform(-cfg.height_shift, cfg.height_shift) * height
    scale = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom)
    flip = cfg.hflip and rng.random() < 0.5
    return affine_matrix(height, width, angle, tx, ty, scale, flip)


def affine_matrix(height, width, angle=0.0, tx=0.0, ty=0.0, scale=1.0, flip=False):
    """Inverse map of: flip, then rotate by `angle` and scale about the centre, then shift."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    c, s = np.cos(angle), np.sin(angle)
    # Forward: out = S R (in - c) + c + t  =>  in = R^-1 S^-1 (out - c - t) + c.
    inv = np.array([[c, s], [-s, c]]) / scale
    m = np.eye(3)
    m[:2, :2] = inv
    m[:2, 2] = -inv @ np.array([cx + tx, cy + ty]) + np.array([cx, cy])
    if flip:  # source x -> W-1-x, applied after the inverse map
        m = np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]]) @ m
    return m


_GRIDS = {}


def _grid(h, w):
    # Output pixel coordinates, cached per shape: patches all share one size.
    if (h, w) not in _GRIDS:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        _GRIDS[(h, w)] = (xs.ravel(), ys.ravel())
    return _GRIDS[(h, w)]


def warp(image, mask, matrix, void=None):
    """Warp image (H, W, C) and mask (H, W) with one inverse-map matrix.

    Returns float32 image (bilinear, 0 outside the source) and uint8 mask (nearest,
    void outside; with no void value, the nearest edge pixel is repeated for both).
    """
    h, w = mask.shape
    xs, ys = _grid(h, w)
    m = matrix.astype(np.float32)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]  # (H*W,) source coordinates
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    # A pixel is data when its source lies inside the source pixel grid (half a pixel of
    # slack at the borders so an identity warp keeps every pixel).
    inside = (sx > -0.5) & (sx < w - 0.5) & (sy > -0.5) & (sy < h - 0.5)
    np.clip(sx, 0, w - 1, out=sx)
    np.clip(sy, 0, h - 1, out=sy)

    # Bilinear on flat indices: np.take on a (H*W, C) view is much faster than 2-D
    # fancy indexing.
    x0, y0 = sx.astype(np.intp), sy.astype(np.intp)  # floor, since sx, sy >= 0
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    dx, dy = (x0 < w - 1).astype(np.intp), (y0 < h - 1) * w
    flat = image.reshape(h * w, -1).astype(np.float32, copy=False)
    i00 = y0 * w + x0
    top = np.take(flat, i00, axis=0) * (1 - fx) + np.take(flat, i00 + dx, axis=0) * fx
    bottom = np.take(flat, i00 + dy, axis=0) * (1 - fx) + np.take(flat, i00 + dy + dx, axis=0) * fx
    out_image = top * (1 - fy) + bottom * fy  # (H*W, C)

    nearest = np.rint(sy).astype(np.intp) * w + np.rint(sx).astype(np.intp)
    out_mask = np.take(mask.ravel(), nearest)
    if void is not None:
        out_image[~inside] = 0
        out_mask[~inside] = void
    return out_image.reshape(image.shape).astype(np.float32, copy=False), out_mask.reshape(h, w)


def augment_pair(image, mask, rng, cfg, void=None):
    """One random affine warp drawn from `rng`, applied to both image and mask."""
    h, w = mask.shape
    return warp(image, mask, random_matrix(rng, h, w, cfg), void)
