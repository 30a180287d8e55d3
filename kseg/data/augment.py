"""Augmentation: geometric warps applied identically to an image patch and its mask,
and photometric jitter of the image alone.

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

Photometric jitter (brightness, contrast, saturation, hue, gamma) is numpy too.
keras.layers.RandomBrightness/RandomContrast/RandomSaturation/RandomHue, when called,
draw from the layer's SeedGenerator (`self.generator`, whose state advances on every
call), so a batch would depend on how many batches came before it. Their
get_random_transformation(data, seed=int) followed by transform_images is stateless and
could keep the rule, but it runs backend tensor ops (eager TensorFlow under the
TensorFlow backend, on the accelerator under JAX or torch) inside PyDataset workers,
Keras has no gamma layer, and four layers make four passes over the batch where
adjust_colors composes brightness, contrast, saturation and hue into one 3x3 colour
map per sample (a (16, 256, 256, 3) batch on 2 CPU cores: 46 ms through three Keras
layers called that way, 12 ms through jitter_colors with gamma as well).
"""

from dataclasses import dataclass

import numpy as np

from kseg.data.io import resize_bilinear, resize_nearest


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges, as Keras' ImageDataGenerator takes them; the defaults are the study's.

    The study augmented with rotation, width and height shifts and horizontal flips
    (no zoom); it gives no ranges, so these are ImageDataGenerator's common values.

    rotation: degrees, uniform in [-rotation, rotation].
    width_shift, height_shift: fractions of the patch size, uniform in [-s, s].
    zoom: scale uniform in [1 - zoom, 1 + zoom] (> 1 magnifies); 0: none, as the study.
    hflip: flip left-right with probability 1/2.
    """

    rotation: float = 10.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    zoom: float = 0.0
    hflip: bool = True

    @classmethod
    def coerce(cls, value):
        """True -> defaults, False/None -> None, a dict -> fields, a config -> itself."""
        return _coerce(cls, value, "augment")


def _coerce(cls, value, arg):
    if value is None or value is False:
        return None
    if value is True:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    if isinstance(value, cls):
        return value
    raise ValueError(f"{arg} must be a bool, dict or {cls.__name__}. Received: {arg}={value!r}")


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


def warp(image, mask, matrix, void=None, size=None):
    """Warp image (H, W, C) and mask (H, W) with one inverse-map matrix into (h, w) = `size`
    (default (H, W)): output pixel (x, y, 1) reads source pixel matrix @ (x, y, 1).

    Returns float32 image (h, w, C) (bilinear, 0 outside the source) and uint8 mask
    (h, w) (nearest, void outside; with no void value, the nearest edge pixel is
    repeated for both).
    """
    h_in, w_in = mask.shape
    h, w = size or mask.shape
    xs, ys = _grid(h, w)
    m = matrix.astype(np.float32)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]  # (h*w,) source coordinates
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    # A pixel is data when its source lies inside the source pixel grid (half a pixel of
    # slack at the borders so an identity warp keeps every pixel).
    inside = (sx > -0.5) & (sx < w_in - 0.5) & (sy > -0.5) & (sy < h_in - 0.5)
    np.clip(sx, 0, w_in - 1, out=sx)
    np.clip(sy, 0, h_in - 1, out=sy)

    # Bilinear on flat indices: np.take on a (H*W, C) view is much faster than 2-D
    # fancy indexing. Each lerp is a + (b - a) * f, in place: half the array passes of
    # a * (1 - f) + b * f.
    x0, y0 = sx.astype(np.intp), sy.astype(np.intp)  # floor, since sx, sy >= 0
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    dx, dy = (x0 < w_in - 1).astype(np.intp), (y0 < h_in - 1) * w_in
    flat = image.reshape(h_in * w_in, -1).astype(np.float32, copy=False)
    i00 = y0 * w_in + x0
    top = _lerp(np.take(flat, i00, axis=0), np.take(flat, i00 + dx, axis=0), fx)
    bottom = _lerp(np.take(flat, i00 + dy, axis=0), np.take(flat, i00 + dy + dx, axis=0), fx)
    out_image = _lerp(top, bottom, fy)  # (h*w, C)

    nearest = np.rint(sy).astype(np.intp) * w_in + np.rint(sx).astype(np.intp)
    out_mask = np.take(mask.ravel(), nearest)
    if void is not None:
        out_image[~inside] = 0
        out_mask[~inside] = void
    return out_image.reshape(h, w, -1), out_mask.reshape(h, w)


def _lerp(a, b, f):
    """a + (b - a) * f, computed in b's buffer and returned in a's (both fresh takes)."""
    b -= a
    b *= f
    a += b
    return a


def resize_matrix(source, size):
    """The inverse map of a bilinear resize from (H, W) = `source` to (h, w) = `size`, with
    half-pixel centres as kseg.data.io.resize_bilinear: x_src = (x + 0.5) W / w - 0.5."""
    (h_in, w_in), (h, w) = source, size
    sx, sy = w_in / w, h_in / h
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])


def augment_pair(image, mask, rng, cfg, void=None, size=None):
    """One random affine warp drawn from `rng`, applied to both image and mask.

    `size`: the (h, w) to resize to first (the study's grid cells stretched to 128x128);
    the resize folds into the warp's matrix, so the image is interpolated once, not
    twice (0.4 of the 1.8 CPU-ms a 128 px grid patch cost with a separate resize).
    A config of flips alone (no rotation, shift or zoom) flips by slicing instead: the
    same result as the warp, without its 3.7 ms per 256 px patch.
    """
    size = tuple(size or mask.shape)
    if cfg.rotation == cfg.width_shift == cfg.height_shift == cfg.zoom == 0:
        if size != mask.shape:
            image, mask = resize_bilinear(image, size), resize_nearest(mask, size)
        if cfg.hflip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(mask)
    matrix = resize_matrix(mask.shape, size) @ random_matrix(rng, *size, cfg)
    return warp(image, mask, matrix, void, size)  # warp's reshapes copy a strided cell


# --- photometric jitter (image only) ------------------------------------------------

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, the grey level of saturation
_RGB_TO_YIQ = np.array([LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True)
class PhotometricConfig:
    """Ranges of the per-sample colour jitter, applied in this order to x in [0, 255]:

    brightness: x * b, b uniform in [1 - brightness, 1 + brightness].
    contrast: m + c (x - m), m the sample's mean grey level, c uniform in
        [1 - contrast, 1 + contrast]. Pixels exactly 0 (those a crop or warp left
        empty, and black ones) are left out of m and stay 0.
    saturation: g + s (x - g), g the pixel's grey level (LUMA), s uniform in
        [1 - saturation, 1 + saturation] (0 gives grey).
    hue: degrees, uniform in [-hue, hue]: a rotation of the chroma plane in YIQ space,
        which keeps grey levels (off by default: colour is a class cue in road scenes).
    gamma: 255 (x / 255) ** g, g uniform in [1 - gamma, 1 + gamma] (g > 1 darkens).
    The four linear steps compose into one 3x3 map plus an offset; the result is
    clipped to [0, 255] once, before gamma.

    Images of C != 3 channels (grey, RGB + near infrared, ...) get brightness, contrast
    and gamma, one factor per sample for all its bands as for RGB, with the mean of the
    bands as grey level; saturation and hue need an RGB colour space and are skipped
    (their factors are still drawn, so the random stream does not depend on C).
    """

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0
    gamma: float = 0.2

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation", "gamma"):
            value = getattr(self, name)
            if not 0 <= value <= 1 or (name == "gamma" and value == 1):
                raise ValueError(f"photometric {name} must be in [0, 1] ([0, 1) for gamma). "
                                 f"Received: {name}={value}")
        if not 0 <= self.hue <= 180:
            raise ValueError(f"photometric hue must be in [0, 180] degrees. Received: hue={self.hue}")

    @classmethod
    def coerce(cls, value):
        """True -> defaults, False/None -> None, a dict -> fields, a config -> itself."""
        return _coerce(cls, value, "photometric")


def draw_photometric(rng, n, cfg):
    """Factors for n samples, {name: (n,) array}, drawn from `rng` in a fixed order."""
    def around_one(r):
        return rng.uniform(1 - r, 1 + r, n)

    return {"brightness": around_one(cfg.brightness), "contrast": around_one(cfg.contrast),
            "saturation": around_one(cfg.saturation), "hue": rng.uniform(-cfg.hue, cfg.hue, n),
            "gamma": around_one(cfg.gamma)}


def color_matrices(saturation, hue):
    """(B, 3, 3) maps RGB -> RGB: saturation about the grey level, then hue rotation."""
    n = len(saturation)
    s = np.asarray(saturation, np.float64)[:, None, None]
    sat = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), LUMA)  # g + s (x - g)
    theta = np.deg2rad(np.asarray(hue, np.float64))
    rot = np.zeros((n, 3, 3))
    rot[:, 0, 0] = 1
    rot[:, 1, 1] = rot[:, 2, 2] = np.cos(theta)
    rot[:, 1, 2], rot[:, 2, 1] = -np.sin(theta), np.sin(theta)
    return _YIQ_TO_RGB @ rot @ _RGB_TO_YIQ @ sat


def adjust_colors(x, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0, gamma=1.0):
    """Jitter a batch x float32 (B, H, W, C) in [0, 255]; returns a new float32 array.

    Each factor is a scalar or a (B,) array (see PhotometricConfig for the formulas;
    saturation and hue act only when C is 3)."""
    x = np.asarray(x, np.float32)
    n, bands = len(x), x.shape[-1]
    b, c, s, h, g = (np.broadcast_to(np.asarray(f, np.float64), (n,))
                     for f in (brightness, contrast, saturation, hue, gamma))
    luma = LUMA if bands == 3 else np.full(bands, 1 / bands)  # the grey level of a pixel
    grey = x @ luma.astype(np.float32)  # (B, H, W)
    data = grey > 0  # empty pixels are exactly 0 (so are black ones: same treatment)
    count = np.count_nonzero(data.reshape(n, -1), axis=1)
    mean = grey.reshape(n, -1).sum(axis=1, dtype=np.float64) / np.maximum(count, 1)
    # b, then c, then S, then H: c b H S x + b m (1 - c), as S and H keep grey (1, 1, 1).
    colors = color_matrices(s, h) if bands == 3 else np.broadcast_to(np.eye(bands), (n, bands, bands))
    maps = ((c * b)[:, None, None] * colors).astype(np.float32)
    offsets = (b * mean * (1 - c)).astype(np.float32)
    out = np.empty_like(x)
    pixels = x.reshape(n, -1, bands)
    for i in range(n):  # a BLAS (H*W, C) x (C, C) product per sample: 3x faster than einsum
        o = out[i].reshape(-1, bands)
        np.matmul(pixels[i], maps[i].T, out=o)
        o += offsets[i]
        if count[i] < data[i].size:
            o[~data[i].ravel()] = 0
    np.clip(out, 0, 255, out=out)
    if (g != 1).any():  # 255 (x / 255) ** g as x ** g * 255 ** (1 - g): one pass fewer
        np.power(out, g.astype(np.float32)[:, None, None, None], out=out)
        out *= (255.0 ** (1 - g)).astype(np.float32)[:, None, None, None]
        np.minimum(out, 255, out=out)  # float rounding can pass 255 by a hair
    return out


def jitter_colors(x, rng, cfg):
    """adjust_colors with factors drawn from `rng` for every sample of the batch x."""
    return adjust_colors(x, **draw_photometric(rng, len(x), cfg))
