"""What kseg inferred about a checked dataset, and whether it can train.

`describe(ds, splits)` (splits: kseg.data.check's per-split counts) says the task, the
classes with their share of the train pixels, void and the mask encoding. `refuse`
raises a one-line DataError, saying what to do, for a set that cannot train:

- one class only: nothing to tell apart (a blank mask set, or the objects taken for void;
  a multi-label set needs one class present, each class being its own yes/no);
- void above `max_void` of the train pixels (MAX_VOID, 30 %, unless kseg.json raises it
  for sparse labels such as scribbles): a class was most likely taken for void;
- a class with no train pixel, declared in a kseg.json (or `--spec`) or inferred from
  values seen in val/test masks only: a model could never predict it. The classes of
  the built-in specs (CamVid, Cityscapes, VOC, ADE20K; also in a kseg.json, such as the
  one `kseg data synth` writes) are exempt, since a subset of a known dataset may miss
  rare classes: `describe` lists them under "absent" instead.

The shares are over the train split (all splits summed where there is none).
"""

from pathlib import Path

from kseg import atomic
from kseg.errors import DataError

MAX_VOID = 0.30


def task_of(spec):
    """"multilabel" (overlapping classes), "binary" for two classes, "multiclass" for more
    ("single class" for one)."""
    if spec.multilabel:
        return "multilabel"
    return {1: "single class", 2: "binary"}.get(spec.num_classes, "multiclass")


def describe(ds, splits):
    """The JSON-ready "inferred" block of `kseg data check --json`."""
    pixels, void, total, split = _train_counts(splits)
    spec = ds.spec
    labelled = max(sum(pixels) if not spec.multilabel else total - void, 1)
    return {
        "task": task_of(spec),
        "encoding": ds.origin.get("encoding") or _read_through(ds),
        "spec_source": ds.origin["source"],
        "shares_of": split,
        "classes": [{"id": i, "name": name, "share": pixels[i] / labelled}
                    for i, name in enumerate(spec.classes)],
        "void": None if spec.void is None else {"value": spec.void, "share": void / max(total, 1)},
        "absent": [name for i, name in enumerate(spec.classes) if not pixels[i]],
    }


def _read_through(ds):
    """How the masks of a dataset with a given spec are read: the first mask's kind."""
    from PIL import Image

    from kseg.data.maskfile import KIND_TEXT, SIXTEEN_BIT

    first = next(iter(ds.splits.values()))[0].mask
    with Image.open(first) as im:
        mode = im.mode
    kind = {"L": "gray", "P": "palette", "1": "bilevel", "LA": "gray", "RGB": "rgb", "RGBA": "rgb"}.get(
        mode, "gray16" if mode in SIXTEEN_BIT else None)
    what = KIND_TEXT.get(kind, f"mode {mode}")
    how = "colours through the spec's colour map" if kind == "rgb" and ds.spec.color_map else (
        "values through the spec's label map" if ds.spec.label_map is not None else "class indices")
    if ds.spec.multilabel:
        how = "one 0/nonzero mask (or band) per class, classes overlapping"
    return f"{what} masks (e.g. {first.name}), read as {how}"


def _train_counts(splits):
    """(pixels per class, void pixels, all pixels, which split) of train, or of all splits."""
    if "train" in splits:
        chosen, name = [splits["train"]], "train"
    else:
        chosen, name = list(splits.values()), "all splits"
    pixels = [sum(col) for col in zip(*(d["pixels"] for d in chosen), strict=True)]
    return pixels, sum(d["void"] for d in chosen), sum(d["total"] for d in chosen), name


def refuse(ds, info):
    """Raise the DataError of the first reason the set cannot train (see the module doc)."""
    where, spec = ds.root, ds.spec
    present = [c["name"] for c in info["classes"] if c["share"] > 0]
    source = _edit_hint(ds)
    if len(present) < (1 if spec.multilabel else 2):  # one multi-label class is a binary task
        only = f"'{present[0]}'" if present else "no class at all"
        void = f" (void is mask value {spec.void})" if spec.void is not None else ""
        raise DataError(f"{where}: the {info['shares_of']} masks hold {only}{void}: a segmentation "
                        f"model needs two or more classes; check that the masks are annotated, "
                        f"not blank, and that your objects are not marked void ({source})")
    limit = MAX_VOID if spec.max_void is None else spec.max_void
    void = info["void"]
    if void and void["share"] > limit:
        raise DataError(f"{where}: void (mask value {void['value']}) is {100 * void['share']:.1f} % of "
                        f"the {info['shares_of']} pixels, above {100 * limit:.0f} %: check that "
                        f"{void['value']} marks unlabelled pixels, not a class ({source}); for sparse "
                        f"labels set \"max_void\": {min(1.0, round(void['share'] + 0.05, 2))} "
                        f"in kseg.json")
    if info["absent"] and not (ds.origin.get("builtin") or spec.classes in _known_class_lists()):
        names = ", ".join(f"'{n}' ({spec.classes.index(n)})" for n in info["absent"])
        one = len(info["absent"]) == 1
        raise DataError(f"{where}: class{'' if one else 'es'} {names} {'has' if one else 'have'} no pixel "
                        f"in the {info['shares_of']} masks, so a model cannot learn "
                        f"{'it' if one else 'them'}: add {info['shares_of']} images that show "
                        f"{'it' if one else 'them'}, or drop {'the class' if one else 'them'} ({source})")


def _known_class_lists():
    from kseg.data.dataset_spec import CAMVID
    from kseg.data.layouts import LAYOUTS

    return [CAMVID.classes, *(m.SPEC.classes for m in LAYOUTS.values() if m.SPEC is not None)]


def _edit_hint(ds):
    source = ds.origin["source"]
    if source == "inferred":
        return "classes inferred from the mask values; write a kseg.json to set them"
    if ds.origin.get("builtin"):
        return f"the spec is {source}'s; a kseg.json in the dataset folder replaces it"
    return f"the spec is {source}"


def write_inferred_spec(ds):
    """Write an inferred colour palette to root/kseg.json for the user to edit; only where
    no kseg.json exists. Returns the path written, or None (nothing to write, or a
    read-only folder: the inferred spec is still used, the run records it)."""
    path = Path(ds.root) / "kseg.json"
    if ds.origin["source"] != "inferred" or not ds.spec.color_map or path.exists():
        return None
    try:
        atomic.write_json(path, ds.spec.to_dict())
    except OSError:
        return None
    return path


def one_line(info):
    """The summary `kseg fit` prints: task, classes (shares when few), void, encoding."""
    classes = info["classes"]
    if len(classes) <= 4:
        shown = ", ".join(f"{c['name']} {100 * c['share']:.1f} %" for c in classes)
    else:
        shown = f"{len(classes)} classes"
    void = info["void"]
    void_text = "no void" if not void else f"void {100 * void['share']:.1f} %"
    return f"data: {info['task']} ({shown}), {void_text}; {info['encoding']}"


def report_lines(summary):
    """`kseg data check`'s lines on what it inferred, after its tables."""
    info = summary["inferred"]
    source = info["spec_source"]
    void = info["void"]
    lines = [
        f"task: {info['task']} ({len(info['classes'])} classes)",
        f"encoding: {info['encoding']}",
        f"spec: {'inferred from the masks (no kseg.json)' if source == 'inferred' else source}",
        "void: none" if not void else
        f"void: mask value {void['value']}, {100 * void['share']:.2f} % of the {info['shares_of']} pixels",
    ]
    if info["absent"]:
        lines.append(f"no {info['shares_of']} pixels: {', '.join(info['absent'])}")
    if summary.get("kseg_json"):
        lines.append(f"wrote the inferred palette to {summary['kseg_json']}: edit the class names there")
    return lines
