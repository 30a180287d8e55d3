"""Find image/mask pairs in the two supported layouts.

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
CamVid's for the SegNet layout, else inferred from the mask values.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kseg.data import io
from kseg.data.spec import CAMVID, DatasetSpec, infer_spec, load_spec
from kseg.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path

    @property
    def name(self):
        return self.image.stem


@dataclass
class Dataset:
    root: Path
    layout: str  # "segnet" | "generic"
    spec: DatasetSpec
    splits: dict  # split name -> list[Pair], only splits that exist

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
    splits = _segnet_splits(root) if layout == "segnet" else _generic_splits(root)
    if not splits:
        raise DataError(f"{root}: no split has any image/mask pairs")
    return Dataset(root, layout, resolve_spec(root, layout, splits, spec), splits)


def detect_layout(root):
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
                    f"(SegNet/CamVid) or images/ + masks/")


def resolve_spec(root, layout, splits, spec=None):
    if isinstance(spec, DatasetSpec):
        return spec
    if spec is not None:
        return load_spec(spec)
    if (root / "kseg.json").is_file():
        return load_spec(root / "kseg.json")
    if layout == "segnet":
        return CAMVID
    values = set()
    for pairs in splits.values():
        for p in pairs:
            values.update(np.unique(io.read_mask(p.mask, None, check=False)).tolist())
    return infer_spec(values, name=root.name)


def _segnet_splits(root):
    splits = {}
    for s in SPLITS:
        lst = root / f"{s}.txt"
        if lst.is_file():
            splits[s] = _read_list(lst, root, s, f"{s}annot")
            continue
        img_dir, mask_dir = root / s, root / f"{s}annot"
        if not img_dir.is_dir() and not mask_dir.is_dir():
            continue
        for d, other in ((img_dir, mask_dir), (mask_dir, img_dir)):
            if not d.is_dir():
                raise DataError(f"{d}: missing folder (needed beside {other.name}/)")
        splits[s] = _pair_folders(img_dir, mask_dir)
    return splits


def _generic_splits(root):
    images, masks = root / "images", root / "masks"
    lists = {s: root / f"{s}.txt" for s in SPLITS if (root / f"{s}.txt").is_file()}
    if lists:
        return {s: _read_list(p, root, "images", "masks") for s, p in lists.items()}
    subs = [s for s in SPLITS if (images / s).is_dir() or (masks / s).is_dir()]
    if subs:
        splits = {}
        for s in subs:
            for d in (images / s, masks / s):
                if not d.is_dir():
                    raise DataError(f"{d}: missing folder (split '{s}' needs images/{s}/ "
                                    f"and masks/{s}/)")
            splits[s] = _pair_folders(images / s, masks / s)
        return splits
    splits = {}
    for pair in _pair_folders(images, masks):
        bucket = zlib.crc32(pair.image.stem.encode("utf-8")) % 10
        splits.setdefault("test" if bucket == 0 else "val" if bucket == 1 else "train",
                          []).append(pair)
    return {s: splits[s] for s in SPLITS if s in splits}


def _files_by_stem(folder, suffixes):
    found = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or f.suffix.lower() not in suffixes:
            continue  # .DS_Store, README.txt, Thumbs.db: not data
        if f.is_dir():
            continue
        if f.stem in found:
            raise DataError(f"{f}: two files with stem '{f.stem}' ({found[f.stem].name}, "
                            f"{f.name}); keep one")
        found[f.stem] = f
    return found


def _pair_folders(img_dir, mask_dir):
    images = _files_by_stem(img_dir, io.IMAGE_SUFFIXES)
    masks = _files_by_stem(mask_dir, io.MASK_SUFFIXES)
    if not images and not masks:
        raise DataError(f"{img_dir}: empty split (no image files)")
    lonely = [images[s] for s in sorted(set(images) - set(masks))]
    lonely += [masks[s] for s in sorted(set(masks) - set(images))]
    if lonely:
        shown = ", ".join(str(p) for p in lonely[:5]) + (" ..." if len(lonely) > 5 else "")
        raise DataError(f"{len(lonely)} file(s) without a partner in {img_dir.name}/ vs "
                        f"{mask_dir.name}/ (matched by stem): {shown}")
    return [Pair(images[s], masks[s]) for s in sorted(images)]


def _read_list(path, root, img_folder, mask_folder):
    pairs = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable pair list ({exc})") from None
    for n, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) == 1:  # a bare stem: look it up in the two folders
            pairs.append(_pair_from_stem(root, img_folder, mask_folder, tokens[0], path, n))
        elif len(tokens) == 2:
            pairs.append(Pair(_resolve(root, tokens[0]), _resolve(root, tokens[1])))
        else:
            raise DataError(f"{path}:{n}: expected 'image mask' or a stem, got {line!r}")
    if not pairs:
        raise DataError(f"{path}: empty split (the pair list has no entries)")
    return pairs


def _pair_from_stem(root, img_folder, mask_folder, stem, path, n):
    found = []
    for folder, suffixes in ((img_folder, io.IMAGE_SUFFIXES), (mask_folder, io.MASK_SUFFIXES)):
        hits = [root / folder / (stem + s) for s in suffixes if (root / folder / (stem + s)).exists()]
        if not hits:
            raise DataError(f"{path}:{n}: no file named {stem}.* in {root / folder}")
        found.append(hits[0])
    return Pair(*found)


def _resolve(root, token):
    p = Path(token)
    if not p.is_absolute():
        return root / p
    if p.exists():
        return p
    return root / p.parent.name / p.name  # SegNet lists: /SegNet/CamVid/train/x.png
