"""Image/mask pairs: pairing folders and pair lists, and reading a pair's mask.

Shared by the generic readers (`kseg.data.readers`) and the named dataset layouts
(`kseg.data.layouts`). Every error is one line that names the file.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kseg.data import io
from kseg.errors import DataError


@dataclass(frozen=True)
class Pair:
    """An image and its mask (raw values are mapped to classes by the spec's label_map)."""

    image: Path
    mask: Path

    @property
    def name(self):
        return self.image.stem


def folders_present(root, first, partner, layout):
    """True when `root/first` exists (and `root/partner` beside it, else a DataError naming
    it); False when `first` is absent: the layout is not this one."""
    if not (root / first).is_dir():
        return False
    if not (root / partner).is_dir():
        raise DataError(f"{root / partner}: missing folder ({layout} needs {first}/ and {partner}/)")
    return True


def build_label_map(table, default="keep"):
    """A uint8 (256,) lookup table from `{raw value: class or void}`.

    Values not in `table` map to themselves (default="keep"), so the value check still
    reports a stray value as it is in the file, or to the int `default`.
    """
    lut = np.arange(256, dtype=np.uint8) if default == "keep" else np.full(256, default, np.uint8)
    for raw, value in table.items():
        lut[raw] = value
    lut.setflags(write=False)
    return lut


def files_by_stem(folder, suffixes):
    """{stem: path} of the data files in `folder`; two files with one stem is an error."""
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


def pair_keys(images, masks, img_dir, mask_dir, how="stem", depth=1):
    """Pairs of `{key: image}` and `{key: mask}` in key order; a lonely file is an error.

    The error names the two folders by their last `depth` path parts.
    """
    if not images and not masks:
        raise DataError(f"{img_dir}: empty split (no image files)")
    lonely = [images[k] for k in sorted(set(images) - set(masks))]
    lonely += [masks[k] for k in sorted(set(masks) - set(images))]
    if lonely:
        shown = ", ".join(str(p) for p in lonely[:5]) + (" ..." if len(lonely) > 5 else "")
        a, b = ("/".join(d.parts[-depth:]) for d in (img_dir, mask_dir))
        raise DataError(f"{len(lonely)} file(s) without a partner in {a}/ vs {b}/ "
                        f"(matched by {how}): {shown}")
    return [Pair(images[k], masks[k]) for k in sorted(images)]


def pair_folders(img_dir, mask_dir, depth=1):
    """Pairs of two folders matched by file stem (a.jpg <-> a.png)."""
    images = files_by_stem(img_dir, io.IMAGE_SUFFIXES)
    masks = files_by_stem(mask_dir, io.MASK_SUFFIXES)
    return pair_keys(images, masks, img_dir, mask_dir, depth=depth)


def class_folders(mask_dir):
    """The class names of a multi-label mask folder (subfolders, no mask files), else ()."""
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        return ()
    entries = [p for p in mask_dir.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and p.suffix.lower() in io.MASK_SUFFIXES for p in entries):
        return ()
    return tuple(sorted(p.name for p in entries if p.is_dir()))


def pair_masks(img_dir, mask_dir):
    """`pair_folders`, or for a multi-label mask folder (kseg.data.multilabel_masks) the images
    paired with their first class's masks (the mask reader finds the other classes')."""
    classes = class_folders(mask_dir)
    return pair_folders(img_dir, mask_dir / classes[0]) if classes else pair_folders(img_dir, mask_dir)


def read_list(path, root, img_folder, mask_folder):
    """Pairs of a list file: lines "image mask" (relative to root) or bare stems."""
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
            image, mask = _pair_from_stem(root, img_folder, mask_folder, tokens[0], path, n)
        elif len(tokens) == 2:
            image, mask = _resolve(root, tokens[0]), _resolve(root, tokens[1])
        else:
            raise DataError(f"{path}:{n}: expected 'image mask' or a stem, got {line!r}")
        pairs.append(Pair(image, mask))
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
    return tuple(found)


def _resolve(root, token):
    p = Path(token)
    if not p.is_absolute():
        return root / p
    if p.exists():
        return p
    return root / p.parent.name / p.name  # SegNet lists: /SegNet/CamVid/train/x.png
