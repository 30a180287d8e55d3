"""Score a run on whole splits: the numbers behind the study's Table I and Table II.

Every score of a split comes from ONE confusion matrix accumulated over all its frames
(`kseg.metrics.scores`), never from an average of per-frame scores; a two-class set adds
the foreground's IoU, Dice, precision and recall (`foreground_scores`). The loss is the
training loss (cross-entropy, void ignored) summed over all non-void pixels of the
split and divided by their count. Soft Dice is computed from the softmax
probabilities over the whole split: per class 2*sum(p*y) / (sum(p) + sum(y)), macro
averaged over the classes present in the labels (as `keras_metrics.SoftDice`).

Times: `eval_seconds` is the whole split (reading, predicting, scoring);
`predict_ms_per_frame` is the network call alone per frame (pad, predict, crop; with
sliding windows or test-time augmentation, all tiles and passes and their blending).
One untimed warm-up frame runs first, so graph tracing is not counted as prediction.
Logits are scored band by band as `kseg.inference.frames.iter_logit_bands` yields
them, so windowed evaluation of a large frame never holds its (H, W, K) logits.
"""

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from kseg.errors import KsegError
from kseg.inference.frames import as_mode, frame_logits, input_channels, iter_logit_bands
from kseg.validation import check_fields

DEFAULT_SPLITS = ("val", "test")


class SplitAccumulator:
    """Sums over a split: confusion matrix, cross-entropy and soft-Dice terms.

    `update(logits, y_true)` takes one frame or batch: logits float (..., K), labels
    (...) with void = `ignore_index`.
    """

    def __init__(self, num_classes, ignore_index=None):
        from kseg.metrics import ConfusionAccumulator, SoftDiceAccumulator

        self.cm = ConfusionAccumulator(num_classes, ignore_index)
        self.soft_dice = SoftDiceAccumulator(num_classes, ignore_index)
        self.ignore_index = ignore_index
        self.loss_sum, self.pixels = 0.0, 0

    def update(self, logits, y_true):
        from kseg.metrics import cross_entropy_sum

        logits = np.asarray(logits, np.float32)
        y_true = np.asarray(y_true)
        self.cm.update(y_true, logits.argmax(-1).astype(np.uint8))
        s, n = cross_entropy_sum(logits, y_true, self.ignore_index)
        self.loss_sum, self.pixels = self.loss_sum + s, self.pixels + n
        self.soft_dice.update(logits, y_true)

    def result(self):
        """Scalar scores (Table I), per-class IoU and the confusion matrix."""
        from kseg.metrics import scores

        s = scores(self.cm.cm)
        return {
            "loss": self.loss_sum / self.pixels if self.pixels else math.nan,
            **{k: s[k] for k in ("accuracy", "f1", "dice")},
            "soft_dice": self.soft_dice.result(),
            **{k: s[k] for k in ("specificity", "sensitivity", "miou")},
            **foreground_scores(s),
            "pixels": int(self.cm.cm.sum()),
            "iou_per_class": [float(v) for v in s["iou_per_class"]],
            "confusion_matrix": self.cm.cm.tolist(),
        }


FOREGROUND = {"fg_iou": "iou", "fg_dice": "dice", "fg_precision": "precision", "fg_recall": "sensitivity"}


def foreground_scores(s):
    """Class 1's IoU, Dice, precision and recall, for a two-class (binary) set; else {}.

    The macro scores of a binary set average in the background, which is large and easy
    (a model that never finds the object still gets a background IoU near 1): the
    foreground's own scores are the ones that tell.
    """
    if len(s["iou_per_class"]) != 2:
        return {}
    return {key: float(s[f"{name}_per_class"][1]) for key, name in FOREGROUND.items()}


def evaluate_split(model, pairs, spec, stride, mode=None):
    """Scores and times of `model` on a list of Pair(image, mask) frames.

    `mode`: an InferenceMode (default whole frames) or a (grid, patch) pair. Returns a
    dict with Table I's metrics, `frames`, `pixels`, `iou_per_class`,
    `confusion_matrix`, `eval_seconds` and `predict_ms_per_frame`.
    """
    from kseg.data.io import read_image, read_mask

    if not pairs:
        raise KsegError("evaluate_split needs at least one frame")
    if spec.multilabel:
        from kseg.metrics.multilabel_scores import MultiLabelAccumulator as Accumulator
    else:
        Accumulator = SplitAccumulator
    acc = Accumulator(spec.num_classes, spec.void)
    channels = input_channels(model)  # the run's --channels
    frame_logits(model, read_image(pairs[0].image, channels), stride, mode)  # warm-up, untimed
    start = time.perf_counter()
    predict_seconds = 0.0
    for pair in pairs:
        image, mask = read_image(pair.image, channels), read_mask(pair.mask, spec)
        bands = iter_logit_bands(model, image, stride, mode)
        while True:
            t0 = time.perf_counter()
            y0, logits = next(bands, (None, None))
            predict_seconds += time.perf_counter() - t0
            if logits is None:
                break
            acc.update(logits, mask[y0:y0 + len(logits)])
    out = acc.result()
    out["frames"] = len(pairs)
    out["eval_seconds"] = time.perf_counter() - start
    out["predict_ms_per_frame"] = 1000 * predict_seconds / len(pairs)
    return out


def evaluate_run(run, splits=DEFAULT_SPLITS, data=None, patches=False, log=None, mode=None,
                 other_classes=False):
    """Evaluate a run's best model on each split; returns the eval.json dict.

    `mode`: an InferenceMode (`patches=True` is the run's patch grid, for older
    callers). Missing splits are listed under "skipped" with a reason (and passed to
    `log`); when none of `splits` is there, a KsegError (nothing to score, nothing to
    write). Each split's result records the data it was scored on. A dataset with
    other classes than the run's is refused unless `other_classes`.
    """
    from kseg.runs import open_split_pairs

    log = log or (lambda message: None)
    mode = as_mode(mode if mode is not None else run.grid() if patches else None)
    root, available = open_split_pairs(run, data, other_classes)
    if not any(available.get(split) for split in splits):
        raise KsegError(f"{root}: has no {' or '.join(splits)} split to score (it has "
                        f"{', '.join(s for s in available if available[s]) or 'none'}); choose --splits "
                        f"among those, or another --data. eval.json is left as it was.")
    grid = mode.patches
    result = {
        "run": run.name,
        "arch": run.config.get("arch"),
        "data": str(root),
        "mode": mode.name,
        "inference": mode.to_dict(),
        "grid": list(grid[0]) if grid else None,
        "patch": grid[1] if grid else None,
        "classes": list(run.spec.classes),
        "train_seconds": run.optional_state().train_seconds,
        "splits": {},
        "skipped": {},
    }
    model = None
    for split in splits:
        pairs = available.get(split) or []
        if not pairs:
            result["skipped"][split] = reason = f"not found in {root}"
            log(f"{result['run']}: {split}: {reason}, skipped")
            continue
        model = model or run.load_model("best")
        result["splits"][split] = {**evaluate_split(model, pairs, run.spec, run.stride, mode),
                                   "data": str(root)}
    return clean_json(result)


def merge_previous(run, result):
    """`result` with the splits of the run's eval.json that `result` did not score again,
    when eval.json was made in the same mode: scoring `test` keeps the `val` results (each
    split names the data it was scored on). Another mode's file is replaced whole."""
    try:
        previous = read_eval(run)
    except KsegError:  # damaged: the new file replaces it
        previous = None
    if not previous or not isinstance(previous.get("splits"), dict):
        return result
    if previous.get("inference") != result.get("inference") or previous.get("mode") != result.get("mode"):
        return result
    kept = {k: v for k, v in previous["splits"].items() if k not in result["splits"]}
    if not kept:
        return result
    for scores in kept.values():
        scores.setdefault("data", previous.get("data"))  # files of older kseg: the file's data
    return {**result, "splits": {**kept, **result["splits"]}}


def recorded_mode(result):
    """The InferenceMode an eval.json was made with (older files: from their `mode` and grid)."""
    from kseg.inference.mode import InferenceMode

    info = result.get("inference") or {}
    if result.get("mode") == "patches":
        return InferenceMode(patches=(result["grid"], result["patch"]))
    return InferenceMode(window=info.get("window"), overlap=info.get("overlap", 0.33),
                         flip=bool(info.get("tta_flip")), scales=tuple(info.get("tta_scales") or (1.0,)))


def write_eval_json(run, result):
    """eval.json in the run directory, atomically."""
    from kseg.atomic import write_json

    write_json(Path(run.path) / "eval.json", clean_json(result))


def read_eval(run):
    """The run's eval.json, or None when it was never evaluated."""
    path = Path(run.path) / "eval.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KsegError(f"{path}: unreadable ({exc}); run 'kseg eval' again") from None
    advice = "run 'kseg eval' again"
    check_fields(SavedEval, result, path, required=[f.name for f in dataclasses.fields(SavedEval)],
                 advice=advice)
    for split, scores in result["splits"].items():
        check_fields(SavedSplit, scores, f"{path}: splits.{split}", advice=advice,
                     required=[f.name for f in dataclasses.fields(SavedSplit)])
        bad = [v for v in scores["iou_per_class"] if v is not None and not _is_number(v)]
        if bad:
            raise KsegError(f"{path}: splits.{split}.iou_per_class holds {bad[0]!r:.40}, not a number "
                            f"or null; {advice}")
    return result


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass
class SavedEval:
    """What the tables and the report read of an eval.json (NaN is saved as null)."""

    run: str
    mode: str
    data: str
    classes: list
    train_seconds: float | None
    splits: dict
    skipped: dict


@dataclasses.dataclass
class SavedSplit:
    """One split's results in eval.json, as the tables read them."""

    loss: float | None
    accuracy: float | None
    f1: float | None
    dice: float | None
    soft_dice: float | None
    specificity: float | None
    sensitivity: float | None
    miou: float | None
    iou_per_class: list
    frames: int
    eval_seconds: float | None
    predict_ms_per_frame: float | None


def clean_json(obj):
    """NaN -> None all the way down, so eval.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
