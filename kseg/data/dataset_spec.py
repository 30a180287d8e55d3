"""The dataset description: class names, their colours and the void value.

CamVid's is built in (`CAMVID`). Any other dataset brings a small JSON file
(`kseg.json` in the dataset root, or `--spec FILE`)::

    {"name": "roads", "classes": ["sky", "road", "car"],
     "colors": [[128, 128, 128], [128, 64, 128], [64, 0, 128]],
     "void": 255, "void_color": [0, 0, 0]}

or has one inferred from its masks (kseg.data.encoding; `infer_spec` for class indices).
"max_void" (0 to 1) raises the share of void train pixels `kseg data check` accepts
(30 %), for sparse labels such as scribbles.

`color_map` says whether `colors` are the colours used in RGB mask files (then RGB
masks are converted to class indices through them); inferred specs and JSON files
without "colors" get display colours only, and RGB masks are an error there.
"""

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kseg.errors import DataError

# CamVid's 11 classes as in SegNet. Colours read from SegNet's palette12.png, whose
# first pixels are Sky, Building, Pole, Road_marking, Road, Pavement, Tree,
# SignSymbol, Fence, Car, Pedestrian, Bicyclist, Unlabelled: Road_marking (255, 69, 0)
# is merged into Road in the 11-class masks, so it is skipped here
# (tests/test_data.py checks these against palette12.png when it is present).
CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                  "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist")
CAMVID_COLORS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
                 (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
                 (64, 0, 128), (64, 64, 0), (0, 128, 192))
CAMVID_ROAD_MARKING = (255, 69, 0)


@dataclass(frozen=True)
class DatasetSpec:
    """Class names, one RGB colour per class, and the void mask value (or None)."""

    name: str
    classes: tuple
    colors: tuple
    void: int | None = None
    void_color: tuple | None = None
    color_map: bool = True
    # 256 ints: the class (or void) of each raw value stored in single-channel mask files,
    # e.g. Cityscapes labelIds -> trainIds; None: the files hold class indices.
    label_map: tuple | None = None
    # The largest share of void among the train pixels that `kseg data check` accepts
    # (None: its default, 0.3); raise it for sparse labels such as scribbles.
    max_void: float | None = None
    # Classes overlap: a mask label holds one bit per class (kseg.data.multilabel_masks).
    multilabel: bool = False

    def __post_init__(self):
        _check_fields(self)  # types and shapes first, so the conversions below cannot fail
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        colors = self.colors if len(self.colors) else default_colors(len(self.classes))
        object.__setattr__(self, "colors", tuple(tuple(int(v) for v in c) for c in colors))
        if self.void is not None:
            object.__setattr__(self, "void", int(self.void))
        if self.void_color is not None:
            object.__setattr__(self, "void_color", tuple(int(v) for v in self.void_color))
        if self.label_map is not None:
            object.__setattr__(self, "label_map", tuple(int(v) for v in self.label_map))
        if self.max_void is not None:
            object.__setattr__(self, "max_void", float(self.max_void))
        _validate(self)

    @property
    def num_classes(self):
        return len(self.classes)

    def to_dict(self):
        """A JSON-ready dict; `DatasetSpec.from_dict` reads it back."""
        return {"name": self.name, "classes": list(self.classes),
                "colors": [list(c) for c in self.colors], "void": self.void,
                "void_color": list(self.void_color) if self.void_color else None,
                "color_map": self.color_map,
                **({"label_map": list(self.label_map)} if self.label_map is not None else {}),
                **({"max_void": self.max_void} if self.max_void is not None else {}),
                **({"multilabel": True} if self.multilabel else {})}

    @classmethod
    def from_dict(cls, d, source="spec"):
        """Build from a dict such as `to_dict()` or a `kseg.json` file's content.

        Every field is checked for type, range and shape; a DataError names `source`
        and the field.
        """
        if not isinstance(d, dict):
            raise DataError(f"{source}: a dataset spec is a JSON object such as "
                            f'{{"classes": ["sky", "road"]}}. Received: {_show(d)}')
        unknown = set(d) - set(SPEC_FIELDS)
        if unknown:
            raise DataError(f"{source}: unknown spec keys {sorted(unknown)}; "
                            f"the keys are {', '.join(SPEC_FIELDS)}")
        if "classes" not in d:
            raise DataError(f"{source}: 'classes' is missing: a dataset spec needs a non-empty "
                            f"list of class names")
        colors = d.get("colors")
        colors = () if colors is None else colors
        color_map = d.get("color_map", bool(colors))
        try:
            if color_map is True and not colors:
                raise ValueError("'color_map' is true but there are no 'colors' to map RGB masks "
                                 "through; add 'colors' or drop 'color_map'")
            return cls(name=d.get("name", "dataset"), classes=d["classes"], colors=colors,
                       void=d.get("void"), void_color=d.get("void_color"), color_map=color_map,
                       label_map=d.get("label_map"), max_void=d.get("max_void"),
                       multilabel=d.get("multilabel", False))
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from None


SPEC_FIELDS = ("name", "classes", "colors", "void", "void_color", "color_map", "label_map", "max_void",
               "multilabel")
RGB_HELP = "[R, G, B] (three ints 0-255)"


def _check_fields(spec):
    """Raise ValueError naming the field whose type, range or shape is wrong."""
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise ValueError(f"'name' must be a non-empty string. Received: {_show(spec.name)}")
    classes = spec.classes
    if not isinstance(classes, (list, tuple)):
        raise ValueError(f'\'classes\' must be a list of class names, e.g. ["sky", "road"]. '
                         f"Received: {_show(classes)}")
    if not 1 <= len(classes) <= 255:
        raise ValueError(f"'classes' needs 1 to 255 class names. Received: {len(classes)}")
    for i, c in enumerate(classes):
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"'classes'[{i}] must be a non-empty string (a class name). "
                             f"Received: {_show(c)}")
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise ValueError(f"'classes' names {', '.join(map(repr, twice))} more than once")
    if not isinstance(spec.colors, (list, tuple, np.ndarray)):
        raise ValueError(f"'colors' must be a list with one {RGB_HELP} per class. "
                         f"Received: {_show(spec.colors)}")
    if len(spec.colors) and len(spec.colors) != len(classes):
        raise ValueError(f"'colors' has {len(spec.colors)} entries for {len(classes)} classes; "
                         f"give one {RGB_HELP} per class")
    for i, c in enumerate(spec.colors):
        _check_rgb(c, f"'colors'[{i}]")
    _check_void(spec.void, len(classes))
    if spec.void_color is not None:
        _check_rgb(spec.void_color, "'void_color'")
    if not isinstance(spec.color_map, bool):
        raise ValueError(f"'color_map' must be true or false. Received: {_show(spec.color_map)}")
    lut = spec.label_map
    if lut is not None and not (isinstance(lut, (list, tuple, np.ndarray)) and len(lut) == 256
                                and all(_is_int(v) and 0 <= v <= 255 for v in lut)):
        raise ValueError(f"'label_map' must be 256 ints 0-255 (the class of each raw mask value). "
                         f"Received: {_show(lut)}")
    share = spec.max_void
    if share is not None and not (isinstance(share, numbers.Real) and not isinstance(share, bool)
                                  and 0 <= share <= 1):
        raise ValueError(f"'max_void' must be a number from 0 to 1 (a share of the train pixels). "
                         f"Received: {_show(share)}")


def _check_rgb(value, field):
    ok = (isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3
          and all(_is_int(v) and 0 <= v <= 255 for v in value))
    if not ok:
        raise ValueError(f"{field} must be {RGB_HELP}. Received: {_show(value)}")


def _check_void(void, k):
    if void is None:
        return
    if not _is_int(void):
        raise ValueError(f"'void' must be an int (the mask value of unlabelled pixels) or null. "
                         f"Received: {_show(void)}")
    if not k <= void <= 255:
        raise ValueError(f"'void' must be in [{k}, 255] (after the {k} classes). Received: {void}")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _show(value):
    """A value as the user wrote it in JSON, cut to a readable length."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _validate(spec):
    """Checks across fields, after _check_fields: colours usable as a colour map, and a
    multi-label spec's classes fitting the bits of a label (kseg.data.multilabel_masks)."""
    k = len(spec.classes)
    if not isinstance(spec.multilabel, bool):
        raise ValueError(f"'multilabel' must be true or false. Received: {_show(spec.multilabel)}")
    if spec.multilabel and (k > 7 or (spec.void is not None and spec.void < 2 ** k) or spec.color_map):
        raise ValueError(f"a 'multilabel' spec holds 1 to 7 classes (one bit each), a 'void' of at "
                         f"least {2 ** min(k, 7)} (255) and no colour map. Received: {k} classes, "
                         f"void {spec.void}")
    if spec.color_map and len(set(spec.colors)) != k:
        raise ValueError("'colors' must be distinct to map RGB masks to classes")
    if spec.color_map and spec.void is not None and spec.void_color in spec.colors:
        raise ValueError(f"'void_color' {list(spec.void_color)} is also the colour of class "
                         f"{spec.classes[spec.colors.index(spec.void_color)]!r}; an RGB mask "
                         f"could not tell them apart")


def default_colors(n):
    """n distinct display colours: CamVid's first, then a deterministic spread."""
    colors = list(CAMVID_COLORS[:n])
    i = 0
    while len(colors) < n:
        # Golden-ratio hue steps give well separated colours for any n.
        h = (i * 0.618033988749895) % 1.0
        i += 1
        rgb = _hsv(h, 0.65, 0.9)
        if rgb not in colors:
            colors.append(rgb)
    return tuple(colors)


def _hsv(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(r * 255), round(g * 255), round(b * 255))


CAMVID = DatasetSpec("camvid", CAMVID_CLASSES, CAMVID_COLORS, void=11, void_color=(0, 0, 0))


def load_spec(path):
    """Read a JSON dataset spec (see the module docstring for the format)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: spec file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON spec ({exc})") from None
    return DatasetSpec.from_dict(data, source=str(path))


def infer_spec(mask_values, name="inferred"):
    """A spec from the set of values seen in grayscale masks.

    Classes are 0..max (named "class_<i>"); 255, when present, is void, as in
    Pascal VOC and most label tools. No colour map, so RGB masks are rejected.
    """
    values = sorted(int(v) for v in mask_values)
    void = 255 if 255 in values else None
    real = [v for v in values if v != 255]
    k = (max(real) + 1) if real else 1
    return DatasetSpec(name, tuple(f"class_{i}" for i in range(k)), (), void=void,
                       color_map=False)
