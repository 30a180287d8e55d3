"""Find image/mask pairs: the named dataset layouts, SegNet/CamVid, and generic folders.

Named layouts (`kseg.data.layouts`), tried first: Cityscapes (leftImg8bit/ + gtFine/),
Pascal VOC 2012 (JPEGImages/ + SegmentationClass/ + ImageSets/Segmentation/) and
ADE20K SceneParsing (images/ + annotations/). Each brings its classes, colours and a
label map in its spec, which `kseg.data.io.read_mask` applies to every mask it reads.

SegNet/CamVid layout::

    root/train/ root/trainannot/  root/val/ root/valannot/  root/test/ root/testannot/
    root/train.txt ...            (optional pair lists: "train/a.png trainannot/a.png")

Generic layout::

    root/images/ root/masks/            pairs matched by file stem (a.jpg <-> a.png)
    root/images/train/ root/masks/train/ ...   split subfolders, used when present
    root/train.txt ...                  optional lists: "images/a.jpg masks/a.png" or "a"

Generic layout without split subfolders or lists: each pair goes to a split by a hash of
its stem (crc32 % 10: 0 -> test, 1 -> val, else train), so about 80/10/10, and a pair
never changes split when files are added. A split that gets no pairs is left out.

Pair lists are read relative to the root. Absolute paths that do not exist (SegNet's
lists say /SegNet/CamVid/train/x.png) fall back to root/<folder>/<file>.
The spec is `spec` if given (a DatasetSpec or a JSON path), else root/kseg.json, else
the named layout's (CamVid's for the SegNet layout), else inferred from the masks: 0/1
and 0/255 masks are binary, palette PNGs hold indices, RGB masks one class per colour
(kseg.data.encoding).
"""

import zlib
from dataclasses import dataclass, field
from pathlib import Path

from kseg.data import encoding, layouts
from kseg.data.dataset_spec import CAMVID, DatasetSpec, load_spec
from kseg.data.pairs import Pair, class_folders, pair_folders, pair_masks, read_list
from kseg.errors import DataError

SPLITS = ("train", "val", "test")
__all__ = ["SPLITS", "Dataset", "Pair", "detect_layout", "open_dataset", "resolve_spec"]


@dataclass
class Dataset:
    root: Path
    layout: str  # "cityscapes" | "voc" | "coco" | "ade20k" | "segnet" | "generic"
    spec: DatasetSpec
    splits: dict  # split name -> list[Pair], only splits that exist
    # Where the spec came from ("--spec", "kseg.json", "layout" or "inferred") and, for an
    # inferred one, the encoding seen in the masks (kseg.data.encoding).
    origin: dict = field(default_factory=lambda: {"source": "given", "encoding": None})

    def pairs(self, split):
        """The pairs of one split; DataError naming the split if it is absent."""
        if split not in self.splits:
            raise DataError(f"{self.root}: no '{split}' split (have: {', '.join(self.splits)})")
        return self.splits[split]


def open_dataset(root, spec=None):
    """Find the layout, the splits and the spec of the dataset at `root`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    layout = detect_layout(root)
    if layout in layouts.LAYOUTS:
        splits = layouts.LAYOUTS[layout].splits(root)
    else:
        splits = _segnet_splits(root) if layout == "segnet" else _generic_splits(root)
    if not splits:
        raise DataError(f"{root}: no split has any image/mask pairs")
    spec, origin = resolve_spec(root, layout, splits, spec)
    return Dataset(root, layout, spec, splits, origin)


def detect_layout(root):
    """The layout name of the dataset at `root`; DataError when none fits."""
    root = Path(root)
    named = layouts.detect(root)
    if named is not None:
        return named
    if (root / "images").is_dir() or (root / "masks").is_dir():
        for sub in ("images", "masks"):
            if not (root / sub).is_dir():
                raise DataError(f"{root / sub}: missing folder (generic layout needs "
                                f"images/ and masks/)")
        return "generic"
    if any((root / s).is_dir() or (root / f"{s}annot").is_dir() or (root / f"{s}.txt").is_file()
           for s in SPLITS):
        return "segnet"
    raise DataError(f"{root}: no dataset layout found; expected train/ + trainannot/ "
                    f"(SegNet/CamVid), images/ + masks/, or {layouts.describe()}")


def resolve_spec(root, layout, splits, spec=None):
    """`(spec, origin)`: the spec to read the masks with and where it came from (see
    `Dataset.origin`): `spec`, root/kseg.json, the layout's, or inferred from the masks."""
    if isinstance(spec, DatasetSpec):
        return spec, {"source": "given", "encoding": None}
    if spec is not None:
        return load_spec(spec), {"source": str(spec), "encoding": None}
    if (root / "kseg.json").is_file():
        return load_spec(root / "kseg.json"), {"source": str(root / "kseg.json"), "encoding": None}
    module = layouts.LAYOUTS.get(layout)
    if module is not None and module.SPEC is None:  # the classes are in the dataset's files
        return module.spec(root), {"source": f"{layout} annotations", "encoding": "COCO polygons and RLE, "
                                   "rasterised by pycocotools (0 = background)"}
    if module is not None:
        return module.SPEC, {"source": f"{layout} layout", "encoding": None, "builtin": True}
    if layout == "segnet":
        return CAMVID, {"source": "camvid (SegNet layout)", "encoding": None, "builtin": True}
    for folder in (root / "masks", *(root / "masks" / s for s in splits)):  # masks/[split/]<class>/
        classes = class_folders(folder)
        if classes and not set(classes) & set(SPLITS):
            return encoding.multilabel_spec(classes, root.name, folder)
    pairs = [p for split_pairs in splits.values() for p in split_pairs]
    inferred, text = encoding.infer(encoding.survey_masks(pairs), name=root.name)
    return inferred, {"source": "inferred", "encoding": text}


def _segnet_splits(root):
    splits = {}
    for s in SPLITS:
        lst = root / f"{s}.txt"
        if lst.is_file():
            splits[s] = read_list(lst, root, s, f"{s}annot")
            continue
        img_dir, mask_dir = root / s, root / f"{s}annot"
        if not img_dir.is_dir() and not mask_dir.is_dir():
            continue
        for d, other in ((img_dir, mask_dir), (mask_dir, img_dir)):
            if not d.is_dir():
                raise DataError(f"{d}: missing folder (needed beside {other.name}/)")
        splits[s] = pair_folders(img_dir, mask_dir)
    return splits


def _generic_splits(root):
    images, masks = root / "images", root / "masks"
    lists = {s: root / f"{s}.txt" for s in SPLITS if (root / f"{s}.txt").is_file()}
    if lists:
        return {s: read_list(p, root, "images", "masks") for s, p in lists.items()}
    subs = [s for s in SPLITS if (images / s).is_dir() or (masks / s).is_dir()]
    if subs:
        splits = {}
        for s in subs:
            for d in (images / s, masks / s):
                if not d.is_dir():
                    raise DataError(f"{d}: missing folder (split '{s}' needs images/{s}/ "
                                    f"and masks/{s}/)")
            splits[s] = pair_masks(images / s, masks / s)
        return splits
    splits = {}
    for pair in pair_masks(images, masks):
        bucket = zlib.crc32(pair.image.stem.encode("utf-8")) % 10
        splits.setdefault("test" if bucket == 0 else "val" if bucket == 1 else "train",
                          []).append(pair)
    return {s: splits[s] for s in SPLITS if s in splits}
