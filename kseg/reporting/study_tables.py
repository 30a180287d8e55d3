"""The study's tables as data: `(columns, rows)` from eval results, for Rich, Markdown or HTML.

Table I: scores, one row per metric, one column per network (as in the study).
Table II: times: training, evaluation and prediction per frame, and the inference mode
they were measured in (whole frames, patch grid, sliding windows, test-time augmentation).
"""

import math
from pathlib import Path

from kseg.data.readers import SPLITS

# Table I columns, in the study's order plus soft Dice (the study's "Dice" differs
# from its F1, so it was presumably soft; we report both, see docs/metrics.md).
METRICS = ("loss", "accuracy", "f1", "dice", "soft_dice", "specificity", "sensitivity", "miou")
# Beside them for two-class (binary) runs: the foreground class's own scores.
FOREGROUND = ("fg_iou", "fg_dice", "fg_precision", "fg_recall")


def result_splits(results):
    """Splits evaluated in any of `results`, in train, val, test order."""
    return [s for s in SPLITS if any(s in r["splits"] for r in results)]


def table1(results, split):
    """Table I for one split: (columns, rows), one row per metric, one column per network.

    Networks sit side by side as in the study, and the table stays narrow (it fits an
    80-column terminal for up to five runs). A run without this split shows dashes.
    """
    columns = ["metric", *(r["run"] for r in results)]
    scored = [r["splits"].get(split, {}) for r in results]
    shown = METRICS + tuple(m for m in FOREGROUND if any(m in s for s in scored))
    rows = [[m, *(_num(s[m]) if m in s else None for s in scored)] for m in shown]
    return columns, rows


def per_class_table(results, split):
    """Per-class IoU for one split: one row per class, one column per network."""
    classes = results[0]["classes"] if results else []

    def iou(r, i):
        values = r["splits"][split]["iou_per_class"] if split in r["splits"] else []
        return _num(values[i]) if i < len(values) else None

    columns = ["class", *(r["run"] for r in results)]
    return columns, [[name, *(iou(r, i) for r in results)] for i, name in enumerate(classes)]


def table2(results):
    """Table II: (columns, rows): training time, then eval and predict time per split, and the mode."""
    columns = ["run", "split", "frames", "train s", "eval s", "predict ms/frame", "mode"]
    rows = []
    for r in results:
        train, mode = _num(r["train_seconds"]), mode_text(r)
        for split, s in r["splits"].items():
            rows.append([r["run"], split, s["frames"], train, _num(s["eval_seconds"]),
                         _num(s["predict_ms_per_frame"]), mode])
        if not r["splits"]:
            rows.append([r["run"], "—", None, train, None, None, mode])
    return columns, rows


def mode_text(result):
    """How frames went through the network: eval.json's `inference.describe`, else its `mode`."""
    return (result.get("inference") or {}).get("describe") or result.get("mode", "full-frame")


def _num(value):
    """JSON/None-safe float: NaN becomes None (printed as an em dash)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def eval_markdown(result, per_class=False):
    """eval.md for one run: both tables and what was evaluated."""
    from kseg.output import markdown_table

    grid = result["grid"]
    how = (f" (grid {grid[0]}x{grid[1]}, patch {result['patch']})"
           if grid and not result.get("inference") else "")
    lines = [f"# Evaluation of {result['run']} ({result['arch']})", "",
             f"Data: `{result['data']}`, {mode_text(result)}{how}", ""]
    for split in result_splits([result]):
        lines += [f"## Table I: scores on {split}", "", markdown_table(*table1([result], split))]
        if per_class:
            lines += [f"## Per-class IoU on {split}", "", markdown_table(*per_class_table([result], split))]
    lines += ["## Table II: times", "", markdown_table(*table2([result]), digits=2)]
    for split, reason in result["skipped"].items():
        lines.append(f"- {split}: {reason}, skipped")
    return "\n".join(lines).rstrip() + "\n"


def write_eval_markdown(run, result):
    """eval.md in the run directory, atomically."""
    from kseg.atomic import write_text

    write_text(Path(run.path) / "eval.md", eval_markdown(result, per_class=True))
