"""How a folder's masks encode their classes, and the spec that follows (no kseg.json).

`survey_masks(pairs)` decodes every mask once (kseg.data.maskfile) and counts the
kinds of files, the raw values and the colours; `infer(survey, name)` turns that into
a DatasetSpec and a sentence for `kseg data check`:

    values seen              classes                     void   task
    {0, 1} or {0, 255}       background, foreground      none   binary (255 -> 1)
    {0, 1, 255}              background, foreground      255    binary
    {0 .. k-1} (+ 255)       class_0 .. class_{k-1}      255    k classes
    colours (RGB masks)      one class per colour        none   one class per colour,
                             (black first, as class 0)          written to kseg.json

0/255 is the most common binary encoding (medical, defect and satellite sets): 255 is
the object there, never void, so a mask of 0 and 255 alone is two classes; 0/255 masks
whose edges were smoothed (dozens of values between, most pixels 0 or 255) are refused
with a hint rather than read as a class per value. 255 is void
only beside other classes ({0, 1, 255}, {0, 1, 2, 255}), as in Pascal VOC. Palette PNGs
hold class indices (their palette gives the display colours); 16-bit masks are read as
their values (kseg.data.maskfile). More than MAX_COLORS colours in RGB masks is not a
colour mask (antialiased edges or JPEG artefacts): a DataError says so.
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from kseg.data import io, maskfile
from kseg.data.dataset_spec import DatasetSpec, infer_spec
from kseg.data.multilabel_masks import MAX_CLASSES as MAX_LABELS
from kseg.errors import DataError

MAX_COLORS = 64
BINARY = ("background", "foreground")
BINARY_COLORS = ((0, 0, 0), (255, 255, 255))


@dataclass
class MaskSurvey:
    """What the mask files hold, summed over every file surveyed."""

    kinds: Counter = field(default_factory=Counter)  # kind -> files
    values: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # pixels per raw value
    colors: Counter = field(default_factory=Counter)  # colour key -> pixels, RGB masks
    palette: tuple | None = None  # the first palette PNG's colours, for display
    first: dict = field(default_factory=dict)  # kind -> the first file of that kind
    bands: set = field(default_factory=set)  # band counts of multi-band TIFF masks

    def add(self, path, kind, pixels):
        self.kinds[kind] += 1
        self.first.setdefault(kind, path)
        if kind == "bands":
            self.bands.add(pixels.shape[-1])
        elif kind == "rgb":
            keys, counts = np.unique(maskfile.color_keys(pixels), return_counts=True)
            self.colors.update(dict(zip(keys.tolist(), counts.tolist(), strict=True)))
        else:
            self.values += np.bincount(pixels.ravel(), minlength=256)


def survey_masks(pairs, threads=4):
    """A MaskSurvey of the masks of `pairs` (decoded in `threads` threads)."""
    survey = MaskSurvey()
    with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without the GIL
        decoded = pool.map(lambda p: io.read_raw_mask(p.mask), pairs)
        for pair, (kind, pixels) in zip(pairs, decoded, strict=True):
            survey.add(pair.mask, kind, pixels)
    palette_file = survey.first.get("palette")
    if palette_file is not None:
        with Image.open(palette_file) as im:
            survey.palette = maskfile.palette_colors(im, 256)
    return survey


def infer(survey, name="inferred"):
    """`(spec, encoding)`: the DatasetSpec the survey implies and a sentence saying how."""
    if survey.bands:
        return _bands_spec(survey, name)
    if survey.colors:
        if survey.values.any():
            raise DataError(f"{survey.first['rgb']}: an RGB colour mask among grayscale masks "
                            f"(e.g. {_first_gray(survey)}); save every mask the same way")
        return _color_spec(survey, name)
    seen = set(np.flatnonzero(survey.values).tolist())
    kinds = " and ".join(maskfile.KIND_TEXT[k] for k in sorted(survey.kinds))
    if seen in ({0, 1}, {0, 255}, {0, 1, 255}):
        lut = list(range(256))
        if seen == {0, 255}:
            lut[255] = 1  # 255 is the object, not void
        spec = DatasetSpec(name, BINARY, BINARY_COLORS, void=255 if seen == {0, 1, 255} else None,
                           color_map=False, label_map=tuple(lut) if seen == {0, 255} else None)
        values = "0 and 255 (255 = foreground)" if seen == {0, 255} else "0 and 1"
        void = ", 255 = void" if spec.void is not None else ""
        return spec, f"binary: {kinds} masks of {values}{void}"
    _refuse_smoothed_binary(survey, seen)
    spec = infer_spec(seen, name=name)
    if survey.palette is not None:  # the palette's colours for display
        spec = DatasetSpec(name, spec.classes, survey.palette[:spec.num_classes], void=spec.void,
                           color_map=False)
    void = ", 255 = void" if spec.void is not None else ""
    return spec, f"class indices: {kinds} masks of values 0..{spec.num_classes - 1}{void}"


def _refuse_smoothed_binary(survey, seen):
    """0/255 masks whose edges were smoothed (resized, antialiased or saved lossy) hold
    dozens of values in between: as class indices they would be a class each."""
    share = (survey.values[0] + survey.values[255]) / max(survey.values.sum(), 1)
    if len(seen) > MAX_COLORS and share >= 0.9:
        first = next(iter(survey.first.values()))
        raise DataError(f"{first}: the masks hold {len(seen)} values, {100 * share:.0f} % of pixels "
                        f"0 or 255: 0/255 masks with smoothed edges (resized or antialiased?); "
                        f"threshold them at 128 (or resize masks with nearest neighbour)")


def _color_spec(survey, name):
    """One class per colour, black first (the usual background), then in RGB order."""
    if len(survey.colors) > MAX_COLORS:
        raise DataError(f"{survey.first['rgb']}: the RGB masks hold {len(survey.colors)} colours, more "
                        f"than the {MAX_COLORS} classes a colour mask can carry here (antialiased "
                        f"edges or JPEG?); save masks without smoothing, or list 'colors' in kseg.json")
    colors = [maskfile.key_color(k) for k in sorted(survey.colors)]
    if len(colors) == 2 and colors[0] == (0, 0, 0):
        classes = BINARY
    else:
        classes = tuple("background" if c == (0, 0, 0) else f"class_{i}" for i, c in enumerate(colors))
    spec = DatasetSpec(name, classes, tuple(colors), void=None, color_map=True)
    return spec, f"RGB colour masks: {len(colors)} colours, one class each"


def _bands_spec(survey, name):
    """Multi-band TIFF masks: one class per band (kseg.data.multilabel_masks)."""
    first = survey.first["bands"]
    if len(survey.kinds) > 1 or len(survey.bands) > 1:
        raise DataError(f"{first}: multi-band masks beside masks of other kinds or band counts "
                        f"({', '.join(sorted(survey.kinds))}; bands {sorted(survey.bands)}); save every "
                        f"mask the same way")
    k = survey.bands.pop()
    spec, _ = multilabel_spec(tuple(f"class_{c}" for c in range(k)), name, first.parent)
    return spec, f"multi-label: {k}-band TIFF masks, one 0/nonzero band per class"


def _first_gray(survey):
    return next(path for kind, path in survey.first.items() if kind != "rgb")


def multilabel_spec(classes, name, folder):
    """`(spec, origin)` of a masks/<class>/ folder: overlapping classes (kseg.data.multilabel_masks)."""
    if len(classes) > MAX_LABELS:
        raise DataError(f"{folder}: {len(classes)} class folders; multi-label masks carry at most "
                        f"{MAX_LABELS} classes here (one bit each); merge classes or train them in groups")
    spec = DatasetSpec(name, classes, (), void=None, color_map=False, multilabel=True)
    return spec, {"source": "inferred", "encoding": f"multi-label: one 0/nonzero mask per class "
                                                   f"in {folder.name}/<class>/ ({len(classes)} classes)"}
