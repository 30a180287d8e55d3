"""The dataset description: class names, their colours and the void value.

CamVid's is built in (`CAMVID`). Any other dataset brings a small JSON file
(`kseg.json` in the dataset root, or `--spec FILE`)::

    {"name": "roads", "classes": ["sky", "road", "car"],
     "colors": [[128, 128, 128], [128, 64, 128], [64, 0, 128]],
     "void": 255, "void_color": [0, 0, 0]}

or has one inferred from the unique mask values (`infer_spec`).

`color_map` says whether `colors` are the colours used in RGB mask files (then RGB
masks are converted to class indices through them); inferred specs and JSON files
without "colors" get display colours only, and RGB masks are an error there.
"""

import json
from dataclasses import dataclass
from pathlib import Path

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

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        colors = self.colors if self.colors else default_colors(len(self.classes))
        object.__setattr__(self, "colors", tuple(tuple(int(v) for v in c) for c in colors))
        if self.void_color is not None:
            object.__setattr__(self, "void_color", tuple(int(v) for v in self.void_color))
        _validate(self)

    @property
    def num_classes(self):
        return len(self.classes)

    def to_dict(self):
        """A JSON-ready dict; `DatasetSpec.from_dict` reads it back."""
        return {"name": self.name, "classes": list(self.classes),
                "colors": [list(c) for c in self.colors], "void": self.void,
                "void_color": list(self.void_color) if self.void_color else None,
                "color_map": self.color_map}

    @classmethod
    def from_dict(cls, d, source="spec"):
        """Build from a dict such as `to_dict()` or a `kseg.json` file's content."""
        if not isinstance(d, dict) or not d.get("classes"):
            raise DataError(f"{source}: a dataset spec needs a non-empty 'classes' list")
        unknown = set(d) - {"name", "classes", "colors", "void", "void_color", "color_map"}
        if unknown:
            raise DataError(f"{source}: unknown spec keys {sorted(unknown)}")
        has_colors = bool(d.get("colors"))
        try:
            return cls(name=str(d.get("name", "dataset")), classes=d["classes"],
                       colors=d.get("colors") or (), void=d.get("void"),
                       void_color=d.get("void_color"),
                       color_map=bool(d.get("color_map", has_colors)) and has_colors)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: {exc}") from None


def _validate(spec):
    k = len(spec.classes)
    if k == 0 or k > 255:
        raise ValueError(f"needs 1 to 255 classes, got {k}")
    if len(spec.colors) != k or any(len(c) != 3 or not all(0 <= v <= 255 for v in c)
                                    for c in spec.colors):
        raise ValueError(f"needs one RGB colour (0-255) per class: {k} classes, "
                         f"{len(spec.colors)} colours")
    if spec.void is not None and not (k <= spec.void <= 255):
        raise ValueError(f"void must be an int in [{k}, 255] (after the classes), "
                         f"got {spec.void}")
    if spec.color_map and len(set(spec.colors)) != k:
        raise ValueError("colours must be distinct to map RGB masks to classes")


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
