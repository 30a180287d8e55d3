"""Named dataset layouts: Cityscapes, Pascal VOC 2012 and ADE20K, on tiny copies written here."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kseg.data import ade20k, cityscapes, voc
from kseg.data.io import read_mask as io_read_mask
from kseg.data.pairs import Pair
from kseg.data.readers import detect_layout, open_dataset
from kseg.errors import DataError

H, W = 32, 48


def read_mask(pair, spec, check=True):
    return io_read_mask(pair.mask, spec, check)


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), np.uint8)).save(path)


def _mask(path, stripes, palette=None):
    """A mask of horizontal stripes, one value each (8 rows per value of `stripes`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.repeat(np.asarray(stripes, np.uint8), H // len(stripes))[:, None].repeat(W, 1)
    im = Image.fromarray(m, mode="L")
    if palette is not None:
        im = im.convert("P")
        im.putpalette(palette)
    im.save(path)


# labelIds: road 7 -> 0, unlabeled 0 -> void, car 26 -> 13, person 24 -> 11.
CITYSCAPES_STRIPES = (7, 0, 26, 24)


@pytest.fixture
def cityscapes_dir(tmp_path):
    root = tmp_path / "cityscapes"
    frames = {"train": ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"],
              "val": ["frankfurt_000000_000294"]}
    for split, names in frames.items():
        for i, name in enumerate(names):
            city = name.split("_")[0]
            _image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", i)
            gt = root / "gtFine" / split / city
            _mask(gt / f"{name}_gtFine_labelIds.png", CITYSCAPES_STRIPES)
            # Ignored: only labelIds are read.
            _mask(gt / f"{name}_gtFine_instanceIds.png", (1, 2, 3, 4))
            _image(gt / f"{name}_gtFine_color.png", 9)
    return root


def voc_palette():
    """VOCdevkit's labelcolormap, 256 entries, flat [r, g, b, ...]."""
    flat = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        flat += [r, g, b]
    return flat


# background, aeroplane, person, void border
VOC_STRIPES = (0, 1, 15, 255)


@pytest.fixture
def voc_dir(tmp_path):
    root = tmp_path / "VOC2012"
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
    for split, names in ids.items():
        (lists / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for i, n in enumerate(names):
            _image(root / "JPEGImages" / f"{n}.jpg", i)
            _mask(root / "SegmentationClass" / f"{n}.png", VOC_STRIPES, voc_palette())
    (lists / "trainval.txt").write_text("2007_000032\n2007_000039\n2007_000033\n")
    return root


# other objects 0 -> void, wall 1 -> 0, building 2 -> 1, flag 150 -> 149
ADE_STRIPES = (0, 1, 2, 150)


@pytest.fixture
def ade_dir(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for folder, names in {"training": ["ADE_train_00000001", "ADE_train_00000002"],
                          "validation": ["ADE_val_00000001"]}.items():
        for i, n in enumerate(names):
            _image(root / "images" / folder / f"{n}.jpg", i)
            _mask(root / "annotations" / folder / f"{n}.png", ADE_STRIPES)
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n")
    return root


def stripe_values(mask):
    return [int(v) for v in mask[:: H // 4, 0]]


# --- detection, splits, pairing --------------------------------------------------------


def test_cityscapes_detection_splits_and_pairing(cityscapes_dir):
    ds = open_dataset(cityscapes_dir)
    assert ds.layout == detect_layout(cityscapes_dir) == "cityscapes"
    assert {s: len(p) for s, p in ds.splits.items()} == {"train": 3, "val": 1}
    first = ds.splits["train"][0]
    assert first == Pair(cityscapes_dir / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
                         cityscapes_dir / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    assert all(p.mask.name.endswith("_gtFine_labelIds.png") for ps in ds.splits.values() for p in ps)
    assert ds.spec is cityscapes.SPEC and ds.spec.num_classes == 19 and ds.spec.void == 255
    assert ds.spec.classes[:3] == ("road", "sidewalk", "building") and ds.spec.classes[-1] == "bicycle"
    assert ds.spec.colors[0] == (128, 64, 128) and ds.spec.colors[13] == (0, 0, 142)


def test_voc_detection_splits_and_pairing(voc_dir):
    ds = open_dataset(voc_dir)
    assert ds.layout == "voc" and list(ds.splits) == ["train", "val"]  # trainval.txt is not a split
    assert [p.name for p in ds.splits["train"]] == ["2007_000032", "2007_000039"]
    assert ds.splits["val"] == [Pair(voc_dir / "JPEGImages/2007_000033.jpg",
                                     voc_dir / "SegmentationClass/2007_000033.png")]
    assert ds.spec.num_classes == 21 and ds.spec.classes[15] == "person" and ds.spec.void == 255
    # The colours are VOCdevkit's colormap; the void border is its entry 255.
    pal = voc_palette()
    assert ds.spec.colors == tuple(tuple(pal[3 * i:3 * i + 3]) for i in range(21))
    assert ds.spec.void_color == tuple(pal[3 * 255:]) == (224, 224, 192)


def test_ade20k_detection_splits_and_pairing(ade_dir):
    ds = open_dataset(ade_dir)
    assert ds.layout == "ade20k" and {s: len(p) for s, p in ds.splits.items()} == {"train": 2, "val": 1}
    assert ds.splits["val"][0] == Pair(ade_dir / "images/validation/ADE_val_00000001.jpg",
                                       ade_dir / "annotations/validation/ADE_val_00000001.png")
    assert ds.spec.num_classes == 150 and ds.spec.void == 255 and len(ds.spec.colors) == 150
    assert ds.spec.classes[:3] == ("wall", "building", "sky") and ds.spec.classes[149] == "flag"


def test_generic_images_and_masks_are_still_generic(tmp_path):
    _image(tmp_path / "images" / "a.png", 0)
    _mask(tmp_path / "masks" / "a.png", (0, 1))
    assert detect_layout(tmp_path) == "generic"
    (tmp_path / "masks" / "a.png").unlink()
    (tmp_path / "masks").rmdir()
    with pytest.raises(DataError, match="masks: missing folder"):
        detect_layout(tmp_path)


# --- label mapping ----------------------------------------------------------------------


def test_cityscapes_label_ids_become_train_ids(cityscapes_dir):
    ds = open_dataset(cityscapes_dir)
    mask = read_mask(ds.splits["train"][0], ds.spec)
    assert stripe_values(mask) == [0, 255, 13, 11]  # road, void, car, person
    assert [ds.spec.classes[v] for v in (0, 13, 11)] == ["road", "car", "person"]
    # The full table: 19 labelIds map to 0..18 in order, the other 15 to void.
    assert sorted(cityscapes.LABEL_MAP[:34].tolist()) == list(range(19)) + [255] * 15
    assert cityscapes.LABEL_MAP[255] == 255


def test_voc_reads_palette_indices_and_keeps_void(voc_dir):
    ds = open_dataset(voc_dir)
    pair = ds.splits["train"][0]
    assert Image.open(pair.mask).mode == "P"
    mask = read_mask(pair, ds.spec)
    assert stripe_values(mask) == [0, 1, 15, 255]  # indices, not colours; 255 stays void
    assert np.asarray(Image.open(pair.mask).convert("RGB"))[H - 1, 0].tolist() == [224, 224, 192]


def test_ade20k_zero_is_void_and_labels_shift_down(ade_dir):
    ds = open_dataset(ade_dir)
    assert stripe_values(read_mask(ds.splits["train"][1], ds.spec)) == [255, 0, 1, 149]


def test_mapped_values_are_checked_naming_the_file(cityscapes_dir, ade_dir):
    bad = cityscapes_dir / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    _mask(bad, (7, 40))  # 40 is no Cityscapes labelId
    pair = open_dataset(cityscapes_dir).splits["val"][0]
    with pytest.raises(DataError, match=r"frankfurt_000000_000294_gtFine_labelIds\.png: mask values 40 "):
        read_mask(pair, cityscapes.SPEC)
    assert stripe_values(read_mask(pair, cityscapes.SPEC, check=False))[:2] == [0, 0]


# --- one-line errors ------------------------------------------------------------------


def one_line_error(root, match):
    with pytest.raises(DataError) as info:
        open_dataset(root)
    msg = str(info.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_missing_masks_are_one_line_errors_naming_the_file(cityscapes_dir, voc_dir, ade_dir):
    (cityscapes_dir / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png").unlink()
    msg = one_line_error(cityscapes_dir, "bochum_000000_000313_leftImg8bit.png")
    assert "1 file(s) without a partner in leftImg8bit/train/ vs gtFine/train/" in msg
    (voc_dir / "SegmentationClass/2007_000039.png").unlink()
    one_line_error(voc_dir, "train.txt:2: no file named 2007_000039.* in ")
    (ade_dir / "annotations/training/ADE_train_00000002.png").unlink()
    one_line_error(ade_dir, "images/training/ADE_train_00000002.jpg")


def test_half_present_layouts_are_one_line_errors(tmp_path):
    (tmp_path / "c" / "leftImg8bit").mkdir(parents=True)
    one_line_error(tmp_path / "c", "gtFine: missing folder")
    (tmp_path / "v" / "JPEGImages").mkdir(parents=True)
    one_line_error(tmp_path / "v", "SegmentationClass: missing folder")
    (tmp_path / "v" / "SegmentationClass").mkdir()
    one_line_error(tmp_path / "v", "no train.txt or val.txt")
    (tmp_path / "a" / "images" / "training").mkdir(parents=True)
    (tmp_path / "a" / "annotations").mkdir()
    one_line_error(tmp_path / "a", "annotations/training: missing folder")


# --- kseg data check --------------------------------------------------------------------


def data_check(root, *args):
    from kseg.cli import main

    return CliRunner().invoke(main, ["data", "check", str(root), *args])


def test_cli_data_check_voc(voc_dir):
    res = data_check(voc_dir)
    assert res.exit_code == 0, res.output
    assert "aeroplane" in res.output and "tvmonitor" in res.output and "OK" in res.output
    summary = json.loads(data_check(voc_dir, "--json").output)
    assert summary["layout"] == "voc" and summary["spec"]["name"] == "voc"
    train = summary["splits"]["train"]
    assert train["pairs"] == 2 and train["sizes"] == {f"{H}x{W}": 2}
    # Stripes of 8 rows: background, aeroplane, person, void.
    assert train["void"] == 2 * 8 * W and train["frequency"][0] == train["frequency"][15] == 1 / 3


def test_cli_data_check_missing_mask_is_one_line(cityscapes_dir):
    (cityscapes_dir / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png").unlink()
    res = data_check(cityscapes_dir)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "frankfurt_000000_000294_leftImg8bit.png" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("layout", ["cityscapes", "ade20k"])
def test_cli_data_check_applies_the_label_map(layout, cityscapes_dir, ade_dir):
    root = cityscapes_dir if layout == "cityscapes" else ade_dir
    res = data_check(root, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["layout"] == layout
    train = summary["splits"]["train"]
    # One stripe in four is void (Cityscapes unlabeled, ADE20K's 0), the rest one class each.
    assert train["void"] == train["total"] // 4
    first = (0, 13, 11) if layout == "cityscapes" else (0, 1, 149)
    assert [round(train["frequency"][k], 6) for k in first] == [round(1 / 3, 6)] * 3


def test_layout_modules_agree_on_their_interface():
    for module in (cityscapes, voc, ade20k):
        assert module.SPEC.name == module.NAME and callable(module.detect) and callable(module.splits)
        lut = module.SPEC.label_map
        assert lut is None or (len(lut) == 256 and all(0 <= v <= 255 for v in lut))
    assert voc.SPEC.label_map is None  # palette indices are the classes
    assert cityscapes.SPEC.label_map == tuple(cityscapes.LABEL_MAP)
    assert Path(ade20k.__file__).read_text().count("\n") < 300


def test_the_label_map_travels_with_the_spec_into_a_runs_config():
    from kseg.data.dataset_spec import DatasetSpec

    for module in (cityscapes, ade20k):
        back = DatasetSpec.from_dict(json.loads(json.dumps(module.SPEC.to_dict())))
        assert back == module.SPEC and back.label_map == module.SPEC.label_map
