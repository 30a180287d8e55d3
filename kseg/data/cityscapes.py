"""Cityscapes (Cordts et al. 2016), fine annotations, in its own folder layout::

    root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Masks hold the 34 labelIds; they are mapped to the 19 trainIds of the benchmark
when read, every other label to void (255), as cityscapesscripts'
createTrainIdLabelImgs.py does.
"""

from kseg.data.dataset_spec import DatasetSpec
from kseg.data.pairs import build_label_map, folders_present, pair_keys
from kseg.errors import DataError

NAME = "cityscapes"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
VOID = 255

# cityscapesscripts/helpers/labels.py: (name, labelId, trainId, colour). trainId 255
# is void. 'license plate' (labelId -1) never occurs in labelIds PNGs.
LABELS = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
)
_TRAIN = sorted((train_id, name, color) for name, _, train_id, color in LABELS if train_id != VOID)
CLASSES = tuple(name for _, name, _ in _TRAIN)  # 19, in trainId order
COLORS = tuple(color for _, _, color in _TRAIN)
# labelId -> trainId; values above 33 (none in a valid file) are kept, so the value
# check reports them as they are in the file, and 255 stays void.
LABEL_MAP = build_label_map({label_id: train_id for _, label_id, train_id, _ in LABELS})
# Colours are for display: masks are labelIds, never RGB.
SPEC = DatasetSpec(NAME, CLASSES, COLORS, void=VOID, void_color=(0, 0, 0), color_map=False,
                   label_map=tuple(LABEL_MAP))


def detect(root):
    """True for a Cityscapes root: leftImg8bit/ (and gtFine/, else an error)."""
    return folders_present(root, "leftImg8bit", "gtFine", "Cityscapes")


def splits(root):
    """{split: [Pair]} for the splits present under leftImg8bit/, paired by frame name."""
    out = {}
    for s in SPLITS:
        img_dir, mask_dir = root / "leftImg8bit" / s, root / "gtFine" / s
        if not img_dir.is_dir():
            continue
        if not mask_dir.is_dir():
            raise DataError(f"{mask_dir}: missing folder (split '{s}' needs leftImg8bit/{s}/ "
                            f"and gtFine/{s}/)")
        images = _frames(img_dir, IMAGE_SUFFIX)
        masks = _frames(mask_dir, MASK_SUFFIX)
        out[s] = pair_keys(images, masks, img_dir, mask_dir, how="city and frame", depth=2)
    return out


def _frames(folder, suffix):
    """{(city, frame): path} of the `*{suffix}` files in folder/<city>/."""
    return {(f.parent.name, f.name[: -len(suffix)]): f
            for f in sorted(folder.glob(f"*/*{suffix}")) if not f.name.startswith(".")}
