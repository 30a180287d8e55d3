"""A decoded mask file as raw values or colours, with the kind of encoding it uses.

`decode(im, path)` takes a loaded Pillow image (kseg.data.io opens and decodes it) and
returns `(kind, pixels)`:

    kind      Pillow modes        pixels
    bilevel   1                   uint8 (H, W) 0/1
    gray      L, LA, grey RGB(A)  uint8 (H, W) values (a grey mask saved as RGB is grey)
    palette   P                   uint8 (H, W) palette indices (the VOC convention: the
                                  index is the class, the colour is for display)
    gray16    I;16, I             uint8 (H, W): values up to 255 as they are, or 8-bit
                                  values a tool stored as 16-bit (v * 257: 0, 257 ... 65535)
    rgb       RGB, RGBA           uint8 (H, W, 3) colours, mapped to classes by a spec
    bands     TIFF of C > 1 bands uint8 (H, W, C), each 0/nonzero: one band per class of a
              multi-label set (`decode_bands`; a 3-band TIFF of other values is rgb)

Anything else (a 16-bit mask holding label ids above 255, floats, CMYK) is a one-line
DataError naming the file.
"""

import numpy as np

from kseg.errors import DataError

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")
KIND_TEXT = {"bilevel": "1-bit", "gray": "8-bit grayscale", "palette": "palette PNG",
             "gray16": "16-bit grayscale", "rgb": "RGB colour", "bands": "multi-band TIFF"}


def decode(im, path):
    """`(kind, pixels)` of a loaded Pillow image `im` read from `path` (see the module doc)."""
    mode = im.mode
    if mode in ("L", "P", "1"):
        kind = {"L": "gray", "P": "palette", "1": "bilevel"}[mode]
        return kind, np.asarray(im, dtype=np.uint8)
    if mode in SIXTEEN_BIT:
        return "gray16", _sixteen_bit(np.asarray(im, dtype=np.int64), path)
    if mode == "LA":
        return "gray", np.asarray(im, dtype=np.uint8)[:, :, 0].copy()
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return "gray", rgb[..., 0].copy()  # a grayscale mask saved as RGB
        return "rgb", rgb
    raise DataError(f"{path}: unsupported mask mode {mode}; save as 8-bit grayscale PNG")


def decode_bands(bands, path):
    """`(kind, pixels)` of a TIFF mask of C > 1 uint8 bands (kseg.data.tiff.read_bands)."""
    binary = all(set(np.unique(bands[..., c]).tolist()) <= {0, 1, 255} for c in range(bands.shape[-1]))
    if binary:
        return "bands", bands
    if bands.shape[-1] == 3:
        return "rgb", bands
    raise DataError(f"{path}: a mask of {bands.shape[-1]} bands holds values other than 0, 1 and 255; "
                    f"a multi-band mask holds one 0/1 (or 0/255) band per class")


def _sixteen_bit(a, path):
    """16-bit values as uint8: class indices up to 255, or 8-bit values scaled by 257."""
    if not a.size or (a.min() >= 0 and a.max() <= 255):
        return a.astype(np.uint8)
    if a.min() >= 0 and a.max() <= 65535 and not (a % 257).any():
        return (a // 257).astype(np.uint8)  # 65535 -> 255, as 8-bit tools widen to 16 bits
    raise DataError(f"{path}: 16-bit mask has values up to {a.max()}; class indices must be "
                    f"0..255 (or 8-bit values x 257); renumber the classes 0..K-1 and save again")


def palette_colors(im, count):
    """The first `count` RGB colours of a palette image's palette (None without one)."""
    pal = im.getpalette() if im.mode == "P" else None
    if not pal or len(pal) < 3 * count:
        return None
    return tuple(tuple(pal[3 * i:3 * i + 3]) for i in range(count))


def color_keys(rgb):
    """(H, W, 3) uint8 colours -> (H, W) uint32 keys r << 16 | g << 8 | b."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def key_color(key):
    """A colour key back to (r, g, b)."""
    key = int(key)
    return (key >> 16, (key >> 8) & 255, key & 255)
