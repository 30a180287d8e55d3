"""Multi-band TIFF images through tifffile (the library behind imageio's TIFF plugin).

Pillow reads TIFFs of 1, 3 or 4 samples; aerial and medical TIFFs also come with 2 or
5+ bands, 16 bits a band, bands stored planar (one plane per band) or one band per page.
tifffile reads all of those, and its series names the axes: Y, X and at most one more
of size > 1 (S samples, C channels, I/Q pages...), which becomes the channel axis, so
every TIFF image is (H, W, C). Files of one 2-D page per series (written page by page)
are stacked the same way, one page a band.

Left to Pillow (the functions return None): palette, YCbCr, CIELAB and min-is-white
files, whose pixels need Pillow's colour conversion, and compressions that tifffile
decodes only with the optional `imagecodecs` package (LZW, JPEG); Pillow decodes those
for 1, 3 and 4 samples of 8 bits. Without tifffile installed every TIFF is Pillow's,
as before kseg read multi-band files.
"""

import numpy as np

from kseg.errors import DataError

# Photometric interpretations whose stored values are not the band values to train on.
PILLOW_PHOTOMETRIC = ("MINISWHITE", "PALETTE", "YCBCR", "CIELAB", "ICCLAB", "ITULAB", "LOGL", "LOGLUV")


def is_tiff(path):
    """Whether the file starts like a TIFF (II*, MM*, or BigTIFF's II+ / MM+)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False  # Pillow names the problem
    return head[:2] in (b"II", b"MM") and head[2:] in (b"*\0", b"\0*", b"+\0", b"\0+")


def _open(path):
    """The open TiffFile, or None without tifffile (imported here: only TIFF datasets need it)."""
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile.TiffFile(path)


def _layout(tif, path):
    """(series list, channel-axis name or None) of the image in `tif`, or None for Pillow."""
    if tif.pages.first.photometric.name in PILLOW_PHOTOMETRIC:
        return None
    series = tif.series
    if len(series) > 1 and all(s.ndim == 2 and s.shape == series[0].shape for s in series):
        return series, "pages"  # one band per page
    s = series[0]
    extra = [a for a, n in zip(s.axes, s.shape, strict=True) if a not in "YX" and n > 1]
    if "Y" not in s.axes or "X" not in s.axes or len(extra) > 1:
        raise DataError(f"{path}: a TIFF of axes {s.axes} and shape {s.shape}; kseg reads one image "
                        f"of bands (Y, X and one band axis): save one image per file")
    return [s], (extra[0] if extra else None)


def _shape(series, axis):
    """(H, W, C) of a layout, from headers."""
    s = series[0]
    sizes = dict(zip(s.axes, s.shape, strict=True))
    channels = len(series) if axis == "pages" else (sizes[axis] if axis else 1)
    return sizes["Y"], sizes["X"], channels


def bands_shape(path):
    """(H, W, C) of a TIFF image from its headers, or None when Pillow reads it."""
    tif = _open(path)
    if tif is None:
        return None
    with tif:
        layout = _layout(tif, path)
        return None if layout is None else _shape(*layout)


def read_bands(path, max_pixels):
    """A TIFF image as uint8 (H, W, C), or None when Pillow should read it.

    16-bit bands keep their top byte (as 16-bit grey images do in kseg.data.io); a
    header claiming more than `max_pixels` pixels is refused before any pixel is read.
    """
    tif = _open(path)
    if tif is None:
        return None
    with tif:
        layout = _layout(tif, path)
        if layout is None:
            return None
        series, axis = layout
        h, w, c = _shape(series, axis)
        if h * w > max_pixels:
            raise DataError(f"{path}: refused to decode: its header claims a huge image ({w}x{h} "
                            f"pixels); the file is corrupt or hostile, replace it")
        try:
            planes = [s.asarray() for s in series]
        except ValueError as exc:
            if "imagecodecs" in str(exc):
                return None  # LZW, JPEG ...: Pillow decodes them
            raise
    if axis == "pages":
        return _to_uint8(np.stack(planes, axis=-1), path)
    s, a = series[0], planes[0]
    keep = [i for i, (name, n) in enumerate(zip(s.axes, s.shape, strict=True)) if name in "YX" or n > 1]
    a = a.reshape([s.shape[i] for i in keep])
    names = [s.axes[i] for i in keep]
    order = [names.index("Y"), names.index("X")] + ([names.index(axis)] if axis else [])
    a = a.transpose(order)  # (H, W[, C])
    return _to_uint8(a if a.ndim == 3 else a[:, :, None], path)


def _to_uint8(a, path):
    """uint8 bands: 8-bit as is, 16-bit by their top byte, bilevel as 0/255."""
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    raise DataError(f"{path}: TIFF samples of type {a.dtype} are not supported; save 8- or 16-bit "
                    f"unsigned bands")
