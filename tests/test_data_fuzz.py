"""Fuzz the data readers: every case loads correctly or fails with a one-line DataError
naming the file. About 200 tiny cases (16x16 frames), seeded, a few seconds."""

import io as pyio

import numpy as np
import pytest
from PIL import Image

from kseg.data import io
from kseg.data.check import check_dataset
from kseg.data.dataset_spec import CAMVID
from kseg.data.readers import open_dataset
from kseg.errors import DataError

H, W = 16, 24
RNG = np.random.default_rng(2024)
IMAGE = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
MASK = RNG.integers(0, 12, (H, W), dtype=np.uint8)  # classes 0..10 and void 11


def png_bytes(array, mode=None, **save):
    buf = pyio.BytesIO()
    im = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    im.save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def make_dataset(root, image=None, mask=None):
    """A SegNet-layout dataset with one training pair, 'a'; bytes override the files."""
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    (root / "train" / "a.png").write_bytes(image if image is not None else png_bytes(IMAGE))
    (root / "trainannot" / "a.png").write_bytes(mask if mask is not None else png_bytes(MASK))
    return root


def corrupt(data, seed):
    """Seeded damage: flip bytes, truncate, or splice in garbage."""
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    kind = seed % 3
    if kind == 0:
        for pos in rng.integers(0, len(b), rng.integers(1, 6)):
            b[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:
        b = b[: int(rng.integers(0, len(b)))]
    else:
        pos = int(rng.integers(0, len(b)))
        b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
    return bytes(b)


def load_or_data_error(root, named):
    """Check the dataset and decode its pair; accept success or a DataError naming `named`."""
    try:
        summary = check_dataset(root)
        pair = open_dataset(root).splits["train"][0]
        image, mask = io.read_image(pair.image), io.read_mask(pair.mask, CAMVID)
    except DataError as exc:
        msg = exc.format_message()
        assert "\n" not in msg and str(named) in msg, msg
        return None
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert mask.shape == (H, W) and mask.dtype == np.uint8 and mask.max() <= 11
    assert summary["splits"]["train"]["pairs"] == 1
    return image, mask


@pytest.mark.parametrize("seed", range(80))
@pytest.mark.parametrize("which", ["image", "mask"])
def test_corrupted_png(tmp_path, seed, which):
    good = png_bytes(IMAGE) if which == "image" else png_bytes(MASK)
    root = make_dataset(tmp_path, **{which: corrupt(good, seed)})
    folder = "train" if which == "image" else "trainannot"
    loaded = load_or_data_error(root, root / folder / "a.png")
    if loaded is not None:  # damage the decoder tolerates must not change a pixel
        assert np.array_equal(loaded[0], IMAGE) and np.array_equal(loaded[1], MASK)


@pytest.mark.parametrize("seed", range(12))
def test_corrupted_jpeg_image(tmp_path, seed):
    root = make_dataset(tmp_path, image=b"")
    (root / "train" / "a.png").unlink()
    (root / "train" / "a.jpg").write_bytes(corrupt(png_bytes(IMAGE, format="JPEG"), seed))
    load_or_data_error(root, root / "train" / "a.jpg")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "1", "I;16", "CMYK"])
def test_image_modes_load(tmp_path, mode):
    if mode == "I;16":
        data = png_bytes(IMAGE[..., 0].astype(np.uint16) * 257)
    else:
        data = png_bytes(IMAGE, mode, format="JPEG" if mode == "CMYK" else "PNG")
    root = make_dataset(tmp_path, image=data)
    image, mask = load_or_data_error(root, "never")
    if mode in ("RGBA", "I;16"):  # these keep the pixel values exactly
        want = IMAGE if mode == "RGBA" else np.repeat(IMAGE[..., :1], 3, 2)
        assert np.array_equal(image, want)


@pytest.mark.parametrize("case", ["L", "P", "I;16", "RGB-gray", "RGBA-palette"])
def test_mask_encodings_give_the_same_classes(tmp_path, case):
    if case == "P":
        im = Image.fromarray(MASK, mode="L").convert("P")  # index == value
        im.putpalette([v for i in range(256) for v in (i, 255 - i, 7)])
        buf = pyio.BytesIO()
        im.save(buf, format="PNG")
        data = buf.getvalue()
    elif case == "I;16":
        data = png_bytes(MASK.astype(np.uint16))
    elif case == "RGB-gray":
        data = png_bytes(np.repeat(MASK[..., None], 3, 2))
    elif case == "RGBA-palette":
        rgb = io.colorize(MASK, CAMVID)
        data = png_bytes(np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], 2))
    else:
        data = png_bytes(MASK)
    _, mask = load_or_data_error(make_dataset(tmp_path, mask=data), "never")
    assert np.array_equal(mask, MASK)


@pytest.mark.parametrize("case", ["16bit-300", "value-200", "rgb-unknown", "size", "float"])
def test_bad_masks_name_the_file(tmp_path, case):
    data = {
        "16bit-300": lambda: png_bytes(np.full((H, W), 300, np.uint16)),
        "value-200": lambda: png_bytes(np.full((H, W), 200, np.uint8)),
        "rgb-unknown": lambda: png_bytes(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)),
        "size": lambda: png_bytes(MASK[:8]),
        "float": lambda: png_bytes(MASK, "F", format="TIFF"),
    }[case]()
    root = make_dataset(tmp_path, mask=data)
    named = root / "trainannot" / "a.png"
    with pytest.raises(DataError) as info:
        check_dataset(root)
    msg = info.value.format_message()
    assert "\n" not in msg and str(named) in msg, msg


@pytest.mark.parametrize("which", ["image", "mask"])
@pytest.mark.parametrize("case", ["empty", "dangling-symlink", "text"])
def test_empty_dangling_and_text_files(tmp_path, which, case):
    root = make_dataset(tmp_path)
    f = root / ("train" if which == "image" else "trainannot") / "a.png"
    f.unlink()
    if case == "empty":
        f.write_bytes(b"")
    elif case == "dangling-symlink":
        f.symlink_to(tmp_path / "nowhere.png")
    else:
        f.write_text("this is not a PNG\n")
    with pytest.raises(DataError) as info:
        check_dataset(root)
    msg = info.value.format_message()
    assert "\n" not in msg and str(f) in msg, msg


def test_stray_non_image_files_are_ignored_or_named(tmp_path):
    root = make_dataset(tmp_path)
    for name in ("README.txt", ".DS_Store", "Thumbs.db", "notes.md"):
        (root / "train" / name).write_text("x")
        (root / "trainannot" / name).write_text("x")
    (root / "train" / "sub.png").mkdir()  # a folder with an image suffix
    load_or_data_error(root, "never")
    (root / "train" / "b.png").write_text("a text file posing as an image")
    with pytest.raises(DataError, match=r"without a partner.*train/b\.png"):
        check_dataset(root)
    (root / "trainannot" / "b.png").write_bytes(png_bytes(MASK))
    with pytest.raises(DataError, match=r"train/b\.png: not an image file"):
        check_dataset(root)


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path):
    """A PNG of under 100 bytes whose header claims 100000 x 100000 pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    for read in (io.read_image, io.read_mask, io.image_size):
        with pytest.raises(DataError, match="bomb.png: refused to decode: its header claims a huge image"):
            read(bomb)
