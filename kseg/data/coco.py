"""COCO annotations (polygons and RLE) as a dataset layout: what CVAT, Label Studio,
Roboflow and LabelMe (through labelme2coco) export::

    root/annotations/<name>.json  + images in root/images/, root/<split>2017/ or root/
    root/{train,valid,test}/_annotations.coco.json beside their images (Roboflow)

A file's split comes from its name (instances_train2017.json -> train, *val* -> val,
*test* -> test; Roboflow's folders train/valid/test); the images of a file without one
(CVAT's instances_default.json, Label Studio's result.json) are split by a hash of
their stem, as in the generic layout.

Classes: 0 background, then each category that has an annotation, in category-id
order (an export's unused placeholder category, as Roboflow writes, is left out). The
masks are rasterised once (kseg.data.coco_raster, pycocotools) into kseg's cache
($KSEG_CACHE or ~/.cache/kseg), keyed by the annotation files' paths, sizes and
modification times: an edited export is rasterised again, and the dataset folder is
never written to.
"""

import functools
import hashlib
import json
import zlib
from pathlib import Path

from kseg import atomic
from kseg.data import io
from kseg.data.coco_raster import paint
from kseg.data.dataset_spec import DatasetSpec
from kseg.data.pairs import Pair
from kseg.errors import DataError

NAME = "coco"
SPEC = None  # read from the annotation files: spec(root)
VERSION = 1  # of the rasterised cache
ROBOFLOW = {"train": "train", "valid": "val", "val": "val", "test": "test"}


def annotation_files(root):
    """[(split or None, path)]: root/annotations/*.json, then Roboflow's per-split files."""
    root = Path(root)
    found = []
    if (root / "annotations").is_dir():
        found += [(_split_of(p.stem), p) for p in sorted((root / "annotations").glob("*.json"))]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
        path = sub / "_annotations.coco.json"
        if path.is_file():
            found.append((ROBOFLOW.get(sub.name.lower(), _split_of(sub.name)), path))
    return found


def _split_of(name):
    name = name.lower()
    return next((s for s, key in (("train", "train"), ("val", "val"), ("test", "test")) if key in name), None)


def detect(root):
    """True for a root holding COCO annotation files."""
    return bool(annotation_files(root))


def load(path):
    """A COCO file's dict (images, annotations, categories), read once per version of the file."""
    stat = Path(path).stat()
    return _load(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load(path, size, mtime):
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable COCO JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                              for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO annotation file (it needs 'images', 'annotations' "
                        f"and 'categories' lists)")
    return data


def class_ids(files):
    """{category id: name} of the categories with annotations, in id order."""
    names, used = {}, set()
    for _, path in files:
        data = load(path)
        for c in data["categories"]:
            names.setdefault(c["id"], str(c.get("name") or f"category_{c['id']}"))
        used |= {a.get("category_id") for a in data["annotations"] if a.get("segmentation")}
    missing = used - set(names)
    if missing:
        raise DataError(f"{files[0][1]}: annotations use category ids {sorted(missing)[:5]} that "
                        f"'categories' does not list")
    if not used:
        raise DataError(f"{files[0][1]}: the COCO files hold no segmentation (boxes only?); kseg "
                        f"needs polygons or RLE masks")
    return {cid: names[cid] for cid in sorted(used)}


def spec(root):
    """background + the annotated categories (names made unique with their id)."""
    ids = class_ids(annotation_files(root))
    seen = list(ids.values())
    classes = [n if seen.count(n) == 1 else f"{n}_{cid}" for cid, n in ids.items()]
    return DatasetSpec(Path(root).name, ("background", *classes), (), void=None, color_map=False)


def splits(root):
    """{split: [Pair]}: images found from each file, masks rasterised into the cache."""
    root = Path(root)
    files = annotation_files(root)
    class_of = {cid: i + 1 for i, cid in enumerate(class_ids(files))}
    cache = _rasterised(files, class_of)
    out = {}
    for n, (split, path) in enumerate(files):
        for image in load(path)["images"]:
            pair = Pair(_find_image(root, path, image["file_name"]), cache / str(n) / f"{image['id']}.png")
            out.setdefault(split or _hash_split(pair.image.stem), []).append(pair)
    return {s: out[s] for s in ("train", "val", "test") if s in out}


def _hash_split(stem):
    bucket = zlib.crc32(stem.encode("utf-8")) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def _find_image(root, ann_file, file_name):
    name = Path(file_name)
    tail = ann_file.stem.rsplit("_", 1)[-1]  # instances_train2017 -> train2017
    places = [ann_file.parent, root / "images", root, root / tail, root / "images" / tail]
    for folder in places:
        for candidate in (folder / name, folder / name.name):
            if candidate.is_file():
                return candidate
    raise DataError(f"{ann_file}: image '{file_name}' not found (looked in images/, {tail}/, the "
                    f"dataset root and beside the file)")


def _rasterised(files, class_of):
    """The cache folder of these files' masks: cache/<file n>/<image id>.png, made once."""
    key = hashlib.sha1(repr((VERSION, sorted(class_of.items()), [
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for _, p in files])).encode()).hexdigest()
    final = atomic.cache_dir() / f"coco-{key[:16]}"

    def paint_all(tmp):
        for n, (_, path) in enumerate(files):
            _paint_file(path, class_of, tmp / str(n))

    return atomic.cached_folder(final, paint_all)


def _paint_file(path, class_of, folder):
    data = load(path)
    folder.mkdir(parents=True)
    by_image = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    for image in data["images"]:
        mask = paint(by_image.get(image["id"], []), int(image["height"]), int(image["width"]), class_of,
                     source=f"{path}: image {image['id']}")
        io.write_png(folder / f"{image['id']}.png", mask)
