"""Evaluate trained runs on whole splits: the study's Table I (scores) and Table II (times).

Every score of a split comes from ONE confusion matrix accumulated over all its frames
(`kseg.metrics.scores`), never from an average of per-frame scores. The loss is the
training loss (cross-entropy, void ignored) summed over all non-void pixels of the
split and divided by their count. Soft Dice is computed from the softmax
probabilities over the whole split: per class 2*sum(p*y) / (sum(p) + sum(y)), macro
averaged over the classes present in the labels (as `keras_metrics.SoftDice`).

Times: `eval_seconds` is the whole split (reading, predicting, scoring);
`predict_ms_per_frame` is the network call alone (pad, predict, crop) per frame. One
untimed warm-up frame runs first, so graph tracing is not counted as prediction.
"""

import json
import math
import time
from pathlib import Path

import numpy as np

from kseg.errors import KsegError

# Table I columns, in the study's order plus soft Dice (the study's "Dice" differs
# from its F1, so it was presumably soft; we report both, see docs/metrics.md).
METRICS = ("loss", "accuracy", "f1", "dice", "soft_dice", "specificity", "sensitivity", "miou")
SPLITS = ("train", "val", "test")
DEFAULT_SPLITS = ("val", "test")
DEFAULT_GRID = (4, 4)  # the study's grid, for runs trained on random crops


# ---------------------------------------------------------------- runs and data


def open_run(path):
    """A run directory object (`kseg.runs.RunDir`) for `path`."""
    from kseg.runs import RunDir

    return RunDir(path)


def resolve_runs(names, root, all_runs=False, log=None):
    """RUN arguments (names under `root`, or paths) -> list of runs; none given = all.

    With all runs, those without a best.keras yet (training just started) are left out
    with a line to `log`; a named run without one fails when its model is loaded.
    """
    from kseg.runs import find_runs

    root = Path(root)
    if all_runs or not names:
        runs = find_runs(root)
        for run in runs:
            if not run.best_path.is_file() and log:
                log(f"{run_name(run)}: no best.keras yet, skipped")
        runs = [r for r in runs if r.best_path.is_file()]
        if not runs:
            raise KsegError(f"{root}: no trained runs found; train one with 'kseg fit' or pass --runs DIR")
        return runs
    runs = []
    for name in names:
        path = Path(name)
        if not (path / "config.json").is_file():
            path = root / name
        if not (path / "config.json").is_file():
            raise KsegError(
                f"{name}: no run there (no config.json in {path}); see 'kseg eval --all --runs {root}'"
            )
        runs.append(open_run(path))
    return runs


def run_name(run):
    return Path(run.path).name


def optional_json(run, attr):
    """run.state / run.env as a dict, {} when the file is missing (hand-made or partial runs)."""
    try:
        return getattr(run, attr) or {}
    except KsegError:
        return {}


def data_root(run, override=None):
    """The dataset folder of a run: --data if given, else the run's config."""
    if override is not None:
        return Path(override)
    config = run.config
    for key in ("data_path", "data_root"):
        if config.get(key):
            return Path(config[key])
    data = config.get("data")
    if data in (None, "", "synthetic"):
        from kseg.data.synth import default_dataset_dir

        return Path(default_dataset_dir())
    return Path(data)


def open_split_pairs(run, override=None):
    """(root, {split: pairs}) for the run's dataset, read with the run's own spec."""
    from kseg.data.readers import open_dataset

    root = data_root(run, override)
    if not root.exists():
        raise KsegError(f"{root}: dataset of run {run_name(run)} not found; pass --data DIR")
    return root, open_dataset(root, spec=run.spec).splits


# ---------------------------------------------------------------- one split


class SplitAccumulator:
    """Sums over a split: confusion matrix, cross-entropy and soft-Dice terms.

    `update(logits, y_true)` takes one frame or batch: logits float (..., K), labels
    (...) with void = `ignore_index`.
    """

    def __init__(self, num_classes, ignore_index=None):
        from kseg.metrics.confusion import ConfusionAccumulator
        from kseg.metrics.soft_dice import SoftDiceAccumulator

        self.cm = ConfusionAccumulator(num_classes, ignore_index)
        self.soft_dice = SoftDiceAccumulator(num_classes, ignore_index)
        self.ignore_index = ignore_index
        self.loss_sum, self.pixels = 0.0, 0

    def update(self, logits, y_true):
        from kseg.metrics.loss import cross_entropy_sum

        logits = np.asarray(logits, np.float32)
        y_true = np.asarray(y_true)
        self.cm.update(y_true, logits.argmax(-1).astype(np.uint8))
        s, n = cross_entropy_sum(logits, y_true, self.ignore_index)
        self.loss_sum, self.pixels = self.loss_sum + s, self.pixels + n
        self.soft_dice.update(logits, y_true)

    def result(self):
        """Scalar scores (Table I), per-class IoU and the confusion matrix."""
        from kseg.metrics.scores import scores

        s = scores(self.cm.cm)
        out = {
            "loss": self.loss_sum / self.pixels if self.pixels else math.nan,
            "accuracy": s["accuracy"],
            "f1": s["f1"],
            "dice": s["dice"],
            "soft_dice": self.soft_dice.result(),
            "specificity": s["specificity"],
            "sensitivity": s["sensitivity"],
            "miou": s["miou"],
            "pixels": int(self.cm.cm.sum()),
            "iou_per_class": [float(v) for v in s["iou_per_class"]],
            "confusion_matrix": self.cm.cm.tolist(),
        }
        return out


def frame_logits(model, image, stride, patches=None):
    """float32 (H, W, K) logits of one uint8 (H, W, 3) frame, as `kseg predict` sees it.

    `patches=None`: the whole frame padded to `stride`; else `(grid, patch)`: the
    study's patch grid, stitched.
    """
    from kseg.data import frames

    if patches is None:
        return next(frames.iter_frame_logits(model, [image], stride))
    grid, patch = patches
    return next(frames.iter_patch_grid_logits(model, [image], grid=tuple(grid), patch=patch))


def evaluate_split(model, pairs, spec, stride, patches=None):
    """Scores and times of `model` on a list of Pair(image, mask) frames.

    Returns a dict with METRICS, `frames`, `pixels`, `iou_per_class`,
    `confusion_matrix`, `eval_seconds` and `predict_ms_per_frame`.
    """
    from kseg.data.io import read_image, read_mask

    if not pairs:
        raise KsegError("evaluate_split needs at least one frame")
    acc = SplitAccumulator(spec.num_classes, spec.void)
    frame_logits(model, read_image(pairs[0].image), stride, patches)  # warm-up, untimed
    start = time.perf_counter()
    predict_seconds = 0.0
    for pair in pairs:
        image, mask = read_image(pair.image), read_mask(pair.mask, spec)
        t0 = time.perf_counter()
        logits = frame_logits(model, image, stride, patches)
        predict_seconds += time.perf_counter() - t0
        acc.update(logits, mask)
    out = acc.result()
    out["frames"] = len(pairs)
    out["eval_seconds"] = time.perf_counter() - start
    out["predict_ms_per_frame"] = 1000 * predict_seconds / len(pairs)
    return out


# ---------------------------------------------------------------- one run


def run_grid(run):
    """(grid, patch) for --patches: the run's own, or the study's 4x4 when it trained on crops."""
    config = run.config
    grid = config.get("grid") or DEFAULT_GRID
    return tuple(int(g) for g in grid), int(config.get("patch") or 128)


def evaluate_run(run, splits=DEFAULT_SPLITS, data=None, patches=False, log=None):
    """Evaluate a run's best model on each split; returns the eval.json dict.

    Missing splits are listed under "skipped" with a reason (and passed to `log`),
    not raised.
    """
    log = log or (lambda message: None)
    spec = run.spec
    root, available = open_split_pairs(run, data)
    stride = stride_of(run)
    grid = run_grid(run) if patches else None
    model = None
    result = {
        "run": run_name(run),
        "arch": run.config.get("arch"),
        "data": str(root),
        "mode": "patches" if patches else "full-frame",
        "grid": list(grid[0]) if grid else None,
        "patch": grid[1] if grid else None,
        "classes": list(spec.classes),
        "train_seconds": optional_json(run, "state").get("train_seconds"),
        "splits": {},
        "skipped": {},
    }
    for split in splits:
        pairs = available.get(split) or []
        if not pairs:
            reason = f"not found in {root}"
            result["skipped"][split] = reason
            log(f"{result['run']}: {split}: {reason}, skipped")
            continue
        if model is None:
            model = load_model(run)
        result["splits"][split] = evaluate_split(model, pairs, spec, stride, grid)
    return result


def load_model(run):
    try:
        return run.load_model("best")
    except KsegError:
        raise
    except Exception as exc:
        raise KsegError(f"{run.best_path}: cannot load model ({type(exc).__name__}: {exc})") from None


def stride_of(run):
    """The stride full frames are padded to: config["stride"], else the registry's."""
    if run.config.get("stride"):
        return int(run.config["stride"])
    from kseg.registry import get_entry

    return get_entry(run.config["arch"]).stride


# ---------------------------------------------------------------- tables


def result_splits(results):
    """Splits evaluated in any of `results`, in train, val, test order."""
    return [s for s in SPLITS if any(s in r["splits"] for r in results)]


def table1(results, split):
    """Table I for one split: (columns, rows), one row per metric, one column per network.

    Networks sit side by side as in the study, and the table stays narrow (it fits an
    80-column terminal for up to five runs). A run without this split shows dashes.
    """
    columns = ["metric", *(r["run"] for r in results)]
    rows = [
        [m, *(_num(r["splits"][split][m]) if split in r["splits"] else None for r in results)]
        for m in METRICS
    ]
    return columns, rows


def per_class_table(results, split):
    """Per-class IoU for one split: one row per class, one column per network."""
    classes = results[0]["classes"] if results else []
    columns = ["class", *(r["run"] for r in results)]
    rows = [
        [
            name,
            *(
                _num(_at(r["splits"][split]["iou_per_class"], i)) if split in r["splits"] else None
                for r in results
            ),
        ]
        for i, name in enumerate(classes)
    ]
    return columns, rows


def _at(values, i):
    return values[i] if i < len(values) else None


def table2(results):
    """Table II: (columns, rows): training time, then eval and predict time per split."""
    columns = ["run", "split", "frames", "train s", "eval s", "predict ms/frame"]
    rows = []
    for r in results:
        for split, s in r["splits"].items():
            rows.append(
                [
                    r["run"],
                    split,
                    s["frames"],
                    _num(r["train_seconds"]),
                    _num(s["eval_seconds"]),
                    _num(s["predict_ms_per_frame"]),
                ]
            )
        if not r["splits"]:
            rows.append([r["run"], "—", None, _num(r["train_seconds"]), None, None])
    return columns, rows


def _num(value):
    """JSON/None-safe float: NaN becomes None (printed as an em dash)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def markdown(result, per_class=False):
    """eval.md for one run: both tables and what was evaluated."""
    from kseg.output import markdown_table

    lines = [
        f"# Evaluation of {result['run']} ({result['arch']})",
        "",
        f"Data: `{result['data']}`, {result['mode']}"
        + (
            f" (grid {result['grid'][0]}x{result['grid'][1]}, patch {result['patch']})"
            if result["grid"]
            else ""
        ),
        "",
    ]
    for split in result_splits([result]):
        lines += [f"## Table I: scores on {split}", "", markdown_table(*table1([result], split))]
        if per_class:
            lines += [f"## Per-class IoU on {split}", "", markdown_table(*per_class_table([result], split))]
    lines += ["## Table II: times", "", markdown_table(*table2([result]), digits=2)]
    for split, reason in result["skipped"].items():
        lines.append(f"- {split}: {reason}, skipped")
    return "\n".join(lines).rstrip() + "\n"


def write_eval(run, result):
    """Write eval.json and eval.md into the run directory, atomically."""
    from kseg.atomic import write_json, write_text

    path = Path(run.path)
    write_json(path / "eval.json", clean_json(result))
    write_text(path / "eval.md", markdown(result, per_class=True))


def read_eval(run):
    """The run's eval.json, or None when it was never evaluated."""
    path = Path(run.path) / "eval.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KsegError(f"{path}: unreadable ({exc}); run 'kseg eval' again") from None


def clean_json(obj):
    """NaN -> None all the way down, so eval.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
