"""Decoding images and masks, with one-line errors that name the file.

Images become uint8 (H, W, C). An image file has C channels: grey 1, grey + alpha 2,
RGB, palette and JPEG 3, RGBA 4, a TIFF as many bands (or pages) as it holds (read by
kseg.data.tiff). With `channels=3`, the default, colour files become RGB whatever their
mode (grey repeated, palette expanded, alpha dropped), as they always did; a TIFF must
hold 1 band (repeated) or 3. With any other `channels`, a file must hold exactly that
many, and a mismatch is a one-line DataError naming the file and both counts.
Masks become uint8 (H, W) class indices: single-channel masks (L, P, 16-bit) are read
as values; RGB(A) masks are mapped through the spec's colour map, or rejected when the
spec has none. Pillow is used directly (it is imageio's PNG/JPEG backend anyway) because
it exposes the PNG mode, which decides how a mask is read.
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kseg.data import maskfile, multilabel_masks, tiff
from kseg.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def _open(path):
    """Decode fully (so truncated files fail here); return a loaded PIL image.

    Every decoder failure becomes a DataError naming the file: a header that claims
    more pixels than Pillow's limit (`Image.MAX_IMAGE_PIXELS`, a "decompression bomb":
    an 83-byte PNG can claim 100000 x 100000) is refused before any pixel is allocated.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning etc. are not ours
            im = Image.open(path)
            im.load()
        return im
    except Exception as exc:
        raise _decode_error(path, exc) from None


def _decode_error(path, exc):
    """The DataError for a file Pillow could not open or decode."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: {'broken symlink' if path.is_symlink() else 'file not found'}")
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(f"{path}: refused to decode: its header claims a huge image ({exc}); "
                         f"the file is corrupt or hostile, replace it")
    if isinstance(exc, UnidentifiedImageError):
        return DataError(f"{path}: not an image file (or an unsupported format)")
    if isinstance(exc, OSError) and exc.errno is not None:
        # The file cannot be read at all (permissions, a folder, a failing disk).
        return DataError(f"{path}: cannot read ({exc.strerror or exc})")
    if isinstance(exc, MemoryError):
        return DataError(f"{path}: too large to decode in the memory available")
    # Pillow reports truncation and CRC failures as OSError / SyntaxError, and a
    # malformed header may raise anything (ValueError, struct.error, IndexError ...).
    text = " ".join(str(exc).split())[:200]
    return DataError(f"{path}: unreadable or truncated image ({type(exc).__name__}: {text})")


def image_size(path):
    """(H, W) from the header alone, without decoding pixels."""
    return image_header(path)[:2]


def image_header(path):
    """(H, W, C) from the headers alone: C the channels the file holds (see the module doc)."""
    path = Path(path)
    try:
        shape = tiff.bands_shape(path) if tiff.is_tiff(path) else None
        if shape is not None:
            return shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                return h, w, _mode_channels(im)
    except DataError:
        raise
    except Exception as exc:
        raise _decode_error(path, exc) from None


def read_image(path, channels=3):
    """An image file as uint8 (H, W, channels); see the module docstring for the rules."""
    strict = tiff.is_tiff(path)  # TIFF bands are data: no alpha to drop
    bands = _read_tiff(path) if strict else None
    if bands is not None:
        return fit_channels(bands, channels, path, strict)
    im = _open(path)
    if im.mode == "F":
        raise DataError(f"{path}: floating-point images are not supported; save as 8-bit")
    if im.mode in SIXTEEN_BIT:
        # 16-bit grayscale: keep the top byte (PNG 16-bit spans 0..65535).
        a = np.asarray(im, dtype=np.int64)
        a = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)[:, :, None]
    elif channels == 3 and not strict:  # L, LA, P, RGBA, CMYK, 1 -> RGB (alpha dropped)
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8).copy()
    else:
        a = np.asarray(im.convert(_native_mode(im)), dtype=np.uint8)
        a = a[:, :, None] if a.ndim == 2 else a.copy()
    return fit_channels(a, channels, path, strict)


def _read_tiff(path):
    """uint8 (H, W, C) bands of a TIFF, or None where Pillow reads it (kseg.data.tiff)."""
    try:
        return tiff.read_bands(path, 2 * Image.MAX_IMAGE_PIXELS)
    except DataError:
        raise
    except Exception as exc:
        raise _decode_error(Path(path), exc) from None


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")
# Pillow mode -> the mode whose bands are the file's channels: palettes expanded to RGB,
# bilevel to 0/255, premultiplied alpha undone, YCbCr (JPEG) as RGB; CMYK stays 4 bands.
NATIVE_MODES = {"1": "L", "P": "RGB", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB",
                "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def _native_mode(im):
    if im.mode == "P" and "transparency" in im.info:
        return "RGBA"
    return NATIVE_MODES.get(im.mode, im.mode)


def _mode_channels(im):
    """Channels of an opened (not decoded) Pillow image, as read_image sees them."""
    return 1 if im.mode in SIXTEEN_BIT + ("F",) else Image.getmodebands(_native_mode(im))


def fit_channels(pixels, channels, path, strict=False):
    """uint8 (H, W, c) pixels as (H, W, channels), or the DataError naming both counts.

    A single channel is repeated when 3 are wanted (grey in an RGB dataset); `strict`
    (TIFF, whose bands are data) allows nothing else, otherwise an alpha channel
    (2 or 4 channels) is dropped when 3 are wanted.
    """
    c = pixels.shape[-1]
    if c == channels:
        return pixels
    if channels == 3 and c == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 3 and not strict and c in (2, 4):
        return np.repeat(pixels[:, :, :1], 3, axis=2) if c == 2 else pixels[:, :, :3].copy()
    raise DataError(f"{path}: {c} channel{'s' if c != 1 else ''}, but {channels} expected "
                    f"(--channels {channels}); convert the file, or train with --channels {c}")


def check_channels(path, channels):
    """Raise the DataError of `fit_channels` from the headers alone (no pixel decoded)."""
    c = image_header(path)[2]
    fit_channels(np.zeros((1, 1, c), np.uint8), channels, path, strict=tiff.is_tiff(path))


def display_rgb(image):
    """uint8 (H, W, 3) to show an (H, W, C) image: RGB as is, the first 3 of more bands
    (e.g. R, G, B of RGB + near infrared), a single (or grey + alpha) channel as grey."""
    image = np.asarray(image)
    if image.shape[-1] >= 3:
        return np.ascontiguousarray(image[..., :3])
    return np.repeat(image[..., :1], 3, axis=-1)


def read_mask(path, spec=None, check=True):
    """A mask file as uint8 (H, W) class indices.

    Args:
        path: mask file.
        spec: the DatasetSpec; maps RGB masks (colours) and raw values (`label_map`) to
            classes, and checks values.
        check: raise DataError when a value is neither a class nor void.
    """
    if spec is not None and spec.multilabel:
        kind, mask = "bits", multilabel_masks.read_bits(path, spec, read_raw_mask)
    else:
        kind, mask = read_raw_mask(path)
    if kind == "bands":
        raise DataError(f"{path}: a multi-band mask (one band per class), but the dataset spec is not "
                        f"multi-label; add \"multilabel\": true to kseg.json")
    if kind == "rgb":
        mask = rgb_to_mask(mask, spec, path)
    elif kind != "bits" and spec is not None and spec.label_map is not None:
        mask = np.asarray(spec.label_map, np.uint8)[mask]  # raw values -> classes (Cityscapes ids)
    if check and spec is not None:
        check_mask_values(mask, spec, path)
    return mask


def read_raw_mask(path):
    """`(kind, pixels)` of a mask file: raw values, colours or bands (kseg.data.maskfile)."""
    if tiff.is_tiff(path) and (image_header(path)[2] > 1):  # multi-band: tifffile's bands
        bands = _read_tiff(path)
        if bands is not None and bands.shape[-1] > 1:
            return maskfile.decode_bands(bands, path)
    return maskfile.decode(_open(path), path)


def rgb_to_mask(rgb, spec, path="mask"):
    """Map an RGB mask (H, W, 3) to class indices through the spec's colours."""
    if spec is None or not spec.color_map:
        raise DataError(f"{path}: RGB/RGBA mask but the dataset spec has no colour map; "
                        f"add 'colors' to kseg.json or save masks as class indices")
    key = maskfile.color_keys(rgb)
    lut_keys, lut_vals = [], []
    for i, (r, g, b) in enumerate(spec.colors):
        lut_keys.append((r << 16) | (g << 8) | b)
        lut_vals.append(i)
    if spec.void is not None and spec.void_color is not None:
        r, g, b = spec.void_color
        lut_keys.append((r << 16) | (g << 8) | b)
        lut_vals.append(spec.void)
    lut_keys = np.array(lut_keys, np.uint32)
    order = np.argsort(lut_keys)
    lut_keys, lut_vals = lut_keys[order], np.array(lut_vals, np.uint8)[order]
    pos = np.clip(np.searchsorted(lut_keys, key), 0, len(lut_keys) - 1)
    known = lut_keys[pos] == key
    if not known.all():
        bad = np.unique(key[~known])[:5]
        colors = ", ".join(f"({k >> 16},{(k >> 8) & 255},{k & 255})" for k in bad)
        raise DataError(f"{path}: RGB mask has colours not in the spec: {colors}")
    return lut_vals[pos]


def check_mask_values(mask, spec, path="mask"):
    """Raise DataError when mask holds values that are neither a class nor void."""
    counts = np.bincount(mask.ravel(), minlength=256)
    limit = multilabel_masks.label_limit(spec)
    bad = [v for v in np.flatnonzero(counts) if v >= limit and v != spec.void]
    if bad:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise DataError(f"{path}: mask values {shown} are neither a class "
                        f"(0..{limit - 1}) nor void ({spec.void})")
    return counts


def write_png(path, array, compress_level=1):
    """Write a uint8 (H, W) or (H, W, 3) array as PNG (fast compression)."""
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(
        path, compress_level=compress_level)


def colorize(mask, spec):
    """Class indices (H, W) to an RGB uint8 image (H, W, 3); void gets void_color or black.
    Multi-label bits: the mean colour of the classes present, black where none is."""
    lut = np.zeros((256, 3), np.float32)
    if spec.multilabel:  # label v: the mean colour of the classes whose bit v sets
        bits = (np.arange(256)[:, None] >> np.arange(spec.num_classes)) & 1  # (256, K)
        lut = bits @ np.array(spec.colors, np.float32) / np.maximum(bits.sum(1, keepdims=True), 1)
    else:
        lut[:spec.num_classes] = np.array(spec.colors, np.float32)
    if spec.void is not None and spec.void_color is not None:
        lut[spec.void] = spec.void_color
    return np.rint(lut).astype(np.uint8)[mask]


# Array helpers shared by patches.py, frames.py and synth.py (no Keras needed).

def grid_cells(height, width, grid):
    """[(y0, y1, x0, x1)] of an R x C grid, row-major; edges rounded to pixels."""
    rows, cols = grid
    ys = np.rint(np.linspace(0, height, rows + 1)).astype(int)
    xs = np.rint(np.linspace(0, width, cols + 1)).astype(int)
    return [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(rows) for c in range(cols)]


def _axis(n_in, n_out):
    # Half-pixel centres, as tf.image.resize / cv2.INTER_LINEAR (no antialiasing).
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(x).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), (x - i0).astype(np.float32)


def resize_bilinear(array, size):
    """(H, W, C) array of any dtype -> float32 (h, w, C), bilinear."""
    h, w = size
    r0, r1, wr = _axis(array.shape[0], h)
    c0, c1, wc = _axis(array.shape[1], w)
    a = array.astype(np.float32, copy=False)
    shape = (-1,) + (1,) * (a.ndim - 1)
    rows = np.take(a, r0, axis=0) * (1 - wr).reshape(shape) + np.take(a, r1, axis=0) * wr.reshape(shape)
    shape = (1, -1) + (1,) * (a.ndim - 2)
    return np.take(rows, c0, axis=1) * (1 - wc).reshape(shape) + np.take(rows, c1, axis=1) * wc.reshape(shape)


def resize_nearest(array, size):
    """(H, W, ...) array -> (h, w, ...), nearest neighbour (for masks)."""
    h, w = size
    r = np.minimum(((np.arange(h) + 0.5) * array.shape[0] / h).astype(np.intp), array.shape[0] - 1)
    c = np.minimum(((np.arange(w) + 0.5) * array.shape[1] / w).astype(np.intp), array.shape[1] - 1)
    return array[r][:, c]
