"""COCO annotation files as a dataset layout: polygons, uncompressed and compressed RLE,
overlaps, the exporters' folder layouts, and `kseg data check` on them."""

import json

import numpy as np
import pytest
from PIL import Image

from kseg.data import io
from kseg.data.check import check_dataset
from kseg.data.readers import detect_layout, open_dataset
from kseg.errors import DataError

mask_utils = pytest.importorskip("pycocotools.mask")

H, W = 20, 24


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def square(x0, y0, x1, y1):
    """A COCO polygon: the rectangle of pixels x0..x1-1, y0..y1-1 (pycocotools fills
    the polygon's interior, so its corners sit on pixel edges)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rle_of(mask, compressed):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    flat = mask.T.reshape(-1)  # COCO's RLE runs down the columns, starting with zeros
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]]))) if flat.size else []
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": [H, W], "counts": counts if flat[0] == 0 else [0, *counts]}


def coco_file(path, images, annotations, categories):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def image_file(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(folder / name)
    return {"id": int(name.split(".")[0][-1]), "file_name": name, "height": H, "width": W}


def blob():
    """bool (H, W): a disk, given as RLE."""
    yy, xx = np.mgrid[:H, :W]
    return (yy - 12) ** 2 + (xx - 16) ** 2 < 16


CATEGORIES = [{"id": 0, "name": "objects"},  # Roboflow's unused placeholder: left out
              {"id": 3, "name": "table"}, {"id": 7, "name": "cup"}, {"id": 9, "name": "ball"}]


def write_split(root, split, n, compressed):
    images = [image_file(root / "images", f"{split}{i}.png") for i in range(n)]
    anns = []
    for k, im in enumerate(images):
        anns += [
            {"id": 10 * k + 1, "image_id": im["id"], "category_id": 3, "segmentation": square(2, 2, 20, 16),
             "iscrowd": 0},
            {"id": 10 * k + 2, "image_id": im["id"], "category_id": 7, "segmentation": square(4, 4, 8, 8),
             "iscrowd": 0},  # on the table: painted after it
            {"id": 10 * k + 3, "image_id": im["id"], "category_id": 9,
             "segmentation": rle_of(blob(), compressed), "iscrowd": 1},
        ]
    coco_file(root / "annotations" / f"instances_{split}.json", images, anns, CATEGORIES)


@pytest.mark.parametrize("compressed", [False, True])
def test_polygons_and_rle_become_class_index_masks(tmp_path, compressed):
    root = tmp_path / "ds"
    write_split(root, "train", 2, compressed)
    write_split(root, "val", 1, compressed)
    assert detect_layout(root) == "coco"
    ds = open_dataset(root)
    assert ds.spec.classes == ("background", "table", "cup", "ball") and ds.spec.void is None
    assert list(ds.splits) == ["train", "val"] and len(ds.splits["train"]) == 2
    pair = ds.splits["val"][0]
    assert pair.image == root / "images" / "val0.png"
    mask = io.read_mask(pair.mask, ds.spec)
    assert mask.shape == (H, W) and mask[0, 0] == 0 and mask[3, 10] == 1  # background, table
    assert (mask[4:8, 4:8] == 2).all() and mask[8, 8] == 1  # the cup on the table
    assert (mask[blob()] == 3).all() and (mask == 3).sum() == blob().sum()  # the ball (RLE, crowd)
    table = np.zeros((H, W), bool)
    table[2:16, 2:20] = True  # the polygon's pixels: corners on pixel edges
    table[4:8, 4:8] = False  # under the cup
    assert np.array_equal(mask == 1, table & ~blob())  # the ball covers part of the table too
    assert str(tmp_path / "cache") in str(pair.mask)  # the dataset folder is not written to


def test_data_check_reads_a_coco_set(tmp_path):
    root = tmp_path / "ds"
    write_split(root, "train", 2, True)
    write_split(root, "val", 1, True)
    summary = check_dataset(root)
    info = summary["inferred"]
    assert summary["layout"] == "coco" and info["task"] == "multiclass" and "COCO" in info["encoding"]
    assert info["void"] is None and all(c["share"] > 0 for c in info["classes"])


def test_roboflow_folders_and_a_file_without_a_split(tmp_path):
    rf = tmp_path / "rf"
    for folder in ("train", "valid"):
        im = image_file(rf / folder, f"{folder}1.jpg")
        anns = [{"id": 1, "image_id": im["id"], "category_id": 3, "segmentation": square(0, 0, 5, 5)}]
        coco_file(rf / folder / "_annotations.coco.json", [im], anns, CATEGORIES)
    ds = open_dataset(rf)
    assert ds.layout == "coco" and list(ds.splits) == ["train", "val"] and ds.spec.classes == ("background",
                                                                                               "table")
    cvat = tmp_path / "cvat"  # CVAT: annotations/instances_default.json, images/
    images = [image_file(cvat / "images", f"f{i}.png") for i in range(8)]
    anns = [{"id": i, "image_id": im["id"], "category_id": 7, "segmentation": square(1, 1, 4, 4)}
            for i, im in enumerate(images)]
    coco_file(cvat / "annotations" / "instances_default.json", images, anns, CATEGORIES)
    assert sum(len(p) for p in open_dataset(cvat).splits.values()) == 8


def test_coco_errors_are_one_line(tmp_path):
    root = tmp_path / "ds"
    coco_file(root / "annotations" / "instances_train.json", [{"id": 1, "file_name": "gone.png",
                                                               "height": H, "width": W}], [], CATEGORIES)
    with pytest.raises(DataError, match="hold no segmentation"):
        open_dataset(root)
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": square(0, 0, 4, 4)}]
    coco_file(root / "annotations" / "instances_train.json", [{"id": 1, "file_name": "gone.png",
                                                               "height": H, "width": W}], anns, CATEGORIES)
    with pytest.raises(DataError, match="image 'gone.png' not found"):
        open_dataset(root)
    (root / "annotations" / "instances_train.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="not a COCO annotation file"):
        open_dataset(root)


def test_without_pycocotools_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    root = tmp_path / "ds"
    write_split(root, "train", 1, False)
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import fails
    with pytest.raises(DataError, match=r"needs pycocotools: pip install 'kseg\[coco\]'"):
        open_dataset(root)
