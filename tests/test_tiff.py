"""kseg.data.tiff through kseg.data.io: which TIFFs tifffile reads, which it leaves to Pillow,
and the one-line errors for the TIFFs kseg cannot train on (tests/test_channels.py reads
the multi-band layouts)."""

import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from kseg.data import io, tiff
from kseg.errors import DataError

RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)


def test_is_tiff_by_the_first_bytes(tmp_path):
    classic, big, png = tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "c.tif"
    tifffile.imwrite(classic, RGB)
    tifffile.imwrite(big, RGB, bigtiff=True)
    Image.fromarray(RGB).save(png, format="PNG")  # a PNG named .tif is not a TIFF
    big_endian = tmp_path / "d.tif"
    tifffile.imwrite(big_endian, RGB, byteorder=">")
    assert [tiff.is_tiff(p) for p in (classic, big, big_endian, png)] == [True, True, True, False]
    assert not tiff.is_tiff(tmp_path / "missing.tif")  # the reader then names the problem


def test_bigtiff_and_big_endian_files_read_like_any_other(tmp_path):
    for kwargs in ({"bigtiff": True}, {"byteorder": ">"}):
        path = tmp_path / "x.tif"
        tifffile.imwrite(path, RGB, **kwargs)
        assert io.image_header(path) == (16, 24, 3)
        np.testing.assert_array_equal(io.read_image(path), RGB)


def test_bilevel_tiff_reads_as_0_and_255(tmp_path):
    bits = RNG.integers(0, 2, (16, 24)).astype(bool)
    black_is_zero, white_is_zero = tmp_path / "minisblack.tif", tmp_path / "miniswhite.tif"
    tifffile.imwrite(black_is_zero, bits, photometric="minisblack")  # tifffile reads it: a set bit is white
    np.testing.assert_array_equal(io.read_image(black_is_zero, 1)[..., 0], bits.astype(np.uint8) * 255)
    tifffile.imwrite(white_is_zero, bits, photometric="miniswhite")  # Pillow reads it: a set bit is black
    np.testing.assert_array_equal(io.read_image(white_is_zero, 1)[..., 0], (~bits).astype(np.uint8) * 255)


def test_palette_tiff_is_left_to_pillow(tmp_path):
    """A palette TIFF stores indices; the bands to train on are the palette's colours."""
    image = Image.fromarray(RGB).quantize(8)
    path = tmp_path / "palette.tif"
    image.save(path)
    expected = np.asarray(image.convert("RGB"))
    with tifffile.TiffFile(path) as tif:
        assert tiff._layout(tif, path) is None
    assert tiff.read_bands(path, 10**9) is None and tiff.bands_shape(path) is None
    np.testing.assert_array_equal(io.read_image(path), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint32])
def test_other_sample_types_are_one_line_errors(tmp_path, dtype):
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, RGB.astype(dtype))
    with pytest.raises(DataError) as err:
        io.read_image(path)
    assert str(err.value) == (f"{path}: TIFF samples of type {np.dtype(dtype)} are not supported; save 8- or "
                              f"16-bit unsigned bands")


def test_a_stack_of_images_is_refused_by_name(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, RNG.integers(0, 256, (2, 3, 16, 24), dtype=np.uint8), photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        s = tif.series[0]
    message = (f"{path}: a TIFF of axes {s.axes} and shape {s.shape}; kseg reads one image of bands (Y, X "
               f"and one band axis): save one image per file")
    for read in (io.image_header, io.read_image):  # from the headers alone, and when decoding
        with pytest.raises(DataError) as err:
            read(path)
        assert str(err.value) == message


def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, RGB)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # kseg allows twice Pillow's limit: 200 < 16 x 24
    with pytest.raises(DataError) as err:
        io.read_image(path)
    assert str(err.value) == (f"{path}: refused to decode: its header claims a huge image (24x16 pixels); "
                              f"the file is corrupt or hostile, replace it")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16 * 24 // 2)  # exactly at the limit: read
    np.testing.assert_array_equal(io.read_image(path), RGB)


def test_a_damaged_tiff_is_a_decode_error_naming_it(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, RGB)
    path.write_bytes(path.read_bytes()[:12])
    with pytest.raises(DataError, match=rf"^{path}: unreadable or truncated image \("):
        io.read_image(path)


def test_without_tifffile_pillow_reads_rgb_tiffs(tmp_path, monkeypatch):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, RGB)
    monkeypatch.setitem(sys.modules, "tifffile", None)  # `import tifffile` raises ImportError
    assert tiff.bands_shape(path) is None and tiff.read_bands(path, 10**9) is None
    assert io.image_header(path) == (16, 24, 3)
    np.testing.assert_array_equal(io.read_image(path), RGB)
