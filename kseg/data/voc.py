"""Pascal VOC 2012 segmentation (Everingham et al.) in the VOCdevkit layout::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png          palette PNGs: the index is the class
    root/ImageSets/Segmentation/{train,val}.txt   one <id> per line

root is VOCdevkit/VOC2012. Masks are read as palette indices, never as RGB (mode 'P'
keeps the indices; `kseg.data.io.read_mask` reads them so), so no label map is needed:
0 is background, 1-20 the objects and 255 the void border around them.
"""

from kseg.data.dataset_spec import DatasetSpec
from kseg.data.pairs import folders_present, read_list
from kseg.errors import DataError

NAME = "voc"
SPLITS = ("train", "val")
VOID = 255
LISTS = ("ImageSets", "Segmentation")

# VOCdevkit's labelcolormap: class i's bits, three at a time, from the top bit down
# (tests/test_layouts.py recomputes them). The void border is entry 255, (224, 224, 192).
CLASSES_AND_COLORS = (
    ("background", (0, 0, 0)),
    ("aeroplane", (128, 0, 0)),
    ("bicycle", (0, 128, 0)),
    ("bird", (128, 128, 0)),
    ("boat", (0, 0, 128)),
    ("bottle", (128, 0, 128)),
    ("bus", (0, 128, 128)),
    ("car", (128, 128, 128)),
    ("cat", (64, 0, 0)),
    ("chair", (192, 0, 0)),
    ("cow", (64, 128, 0)),
    ("diningtable", (192, 128, 0)),
    ("dog", (64, 0, 128)),
    ("horse", (192, 0, 128)),
    ("motorbike", (64, 128, 128)),
    ("person", (192, 128, 128)),
    ("pottedplant", (0, 64, 0)),
    ("sheep", (128, 64, 0)),
    ("sofa", (0, 192, 0)),
    ("train", (128, 192, 0)),
    ("tvmonitor", (0, 64, 128)),
)
CLASSES = tuple(name for name, _ in CLASSES_AND_COLORS)
COLORS = tuple(color for _, color in CLASSES_AND_COLORS)
VOID_COLOR = (224, 224, 192)
# color_map: a mask someone converted to RGB still maps back through VOC's colours.
SPEC = DatasetSpec(NAME, CLASSES, COLORS, void=VOID, void_color=VOID_COLOR, color_map=True)


def detect(root):
    """True for a VOC2012 root: JPEGImages/ (and SegmentationClass/, else an error)."""
    return folders_present(root, "JPEGImages", "SegmentationClass", "Pascal VOC")


def splits(root):
    """{split: [Pair]} from ImageSets/Segmentation/{train,val}.txt."""
    lists = root.joinpath(*LISTS)
    found = {s: lists / f"{s}.txt" for s in SPLITS if (lists / f"{s}.txt").is_file()}
    if not found:
        raise DataError(f"{lists}: no train.txt or val.txt (Pascal VOC lists its splits there)")
    return {s: read_list(path, root, "JPEGImages", "SegmentationClass")
            for s, path in found.items()}
