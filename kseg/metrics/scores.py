"""Scores as pure functions of one confusion matrix (rows = true, columns = predicted).

Per class c, with N = cm.sum():

    TP = cm[c, c]                      (diagonal)
    FP = colsum[c] - TP                (predicted c, truly something else)
    FN = rowsum[c] - TP                (truly c, predicted something else)
    TN = N - TP - FP - FN
    row_sum + col_sum = 2*TP + FP + FN

    precision   = TP / (TP + FP)          = TP / colsum
    sensitivity = TP / (TP + FN)          = TP / rowsum        (recall)
    specificity = TN / (TN + FP)          = TN / (N - rowsum)
    f1          = 2 PR / (P + R)          = 2TP / (2TP + FP + FN)
    dice        = 2TP / (rowsum + colsum) = 2TP / (2TP + FP + FN)
    iou         = TP / (TP + FP + FN)     = TP / (rowsum + colsum - TP)

Hard Dice *is* F1 per class (same fraction, written two ways); both are kept because
papers report both. The study's F1 and Dice differ, so its Dice was presumably the soft
Dice on probabilities (see `kseg.metrics.keras_metrics.SoftDice` and docs/metrics.md).

Absent classes. A class is *present* when it occurs in the labels or the predictions
(rowsum + colsum > 0). Absent classes score NaN and are left out of macro averages; no
division by zero ever happens (denominators are tested before dividing). For a present
class a 0/0 (e.g. precision of a class that is never predicted) counts as 0, the
zero_division=0 convention of scikit-learn: the model earned nothing on that class.

Averages:
    macro    : mean over present classes of the per-class score (the headline mIoU).
    micro    : the formula applied to TP, FP, FN, TN summed over classes. Each
               mislabelled pixel is one FP (for its predicted class) and one FN (for its
               true class), so micro precision = micro recall = micro F1 = accuracy.
    weighted : sum over classes of (rowsum / N) * score, i.e. weighted by the true-class
               pixel frequency (frequency-weighted IoU of Long et al., FCN).
"""

import numpy as np

from kseg.errors import KsegError

SCORE_NAMES = ("precision", "sensitivity", "specificity", "f1", "dice", "iou")


def _ratio(num, den, present):
    """num / den per class: NaN where absent, 0 where present but den == 0. No warnings."""
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    out[~present] = np.nan
    return out


def _safe(num, den):
    """Scalar num / den, NaN when den == 0 (an empty matrix)."""
    return float(num) / float(den) if den > 0 else float("nan")


def per_class_counts(cm):
    """(tp, fp, fn, tn) float64 arrays (K,) from a (K, K) confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    row, col = cm.sum(axis=1), cm.sum(axis=0)
    fp, fn = col - tp, row - tp
    tn = cm.sum() - tp - fp - fn
    return tp, fp, fn, tn


def _check_cm(cm):
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise KsegError(f"a confusion matrix must be square (K, K), got shape {cm.shape}")
    if cm.size and cm.min() < 0:
        raise KsegError("a confusion matrix holds counts; it has negative entries")
    return cm


def _micro(tp, fp, fn, tn):
    """Each formula applied to counts summed over classes (scalars)."""
    TP, FP, FN, TN = tp.sum(), fp.sum(), fn.sum(), tn.sum()
    return {
        "precision": _safe(TP, TP + FP),
        "sensitivity": _safe(TP, TP + FN),
        "specificity": _safe(TN, TN + FP),
        "f1": _safe(2 * TP, 2 * TP + FP + FN),
        "dice": _safe(2 * TP, 2 * TP + FP + FN),
        "iou": _safe(TP, TP + FP + FN),
    }


def scores(cm):
    """All scores of a confusion matrix (rows = true, columns = predicted).

    Returns a dict with:
        "accuracy": pixel accuracy, trace / total (NaN for an empty matrix);
        "miou": macro IoU, the headline number;
        "present": bool (K,), class occurs in labels or predictions;
        "support": int64 (K,), true pixels per class; "pixels": total counted;
        and for each name in precision, sensitivity, specificity, f1, dice, iou:
        `name` (macro over present classes), `name_micro`, `name_weighted`
        (weights = true-class pixel frequency), `name_per_class` (float64 (K,), NaN
        for absent classes).
    """
    cm = _check_cm(cm)
    tp, fp, fn, tn = per_class_counts(cm)
    row, col = tp + fn, tp + fp
    total = float(cm.sum())
    present = (row + col) > 0
    per_class = {
        "precision": _ratio(tp, col, present),
        "sensitivity": _ratio(tp, row, present),
        "specificity": _ratio(tn, tn + fp, present),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, present),
        "dice": _ratio(2 * tp, row + col, present),
        "iou": _ratio(tp, row + col - tp, present),
    }
    micro = _micro(tp, fp, fn, tn)
    # A class with no true pixels has weight 0 (its score may be NaN): select, then sum.
    weights = row / total if total > 0 else np.zeros_like(row)
    counted = weights > 0
    out = {
        "accuracy": _safe(tp.sum(), total),
        "present": present,
        "support": row.astype(np.int64),
        "pixels": int(total),
    }
    for name, values in per_class.items():
        out[name] = float(values[present].mean()) if present.any() else float("nan")
        out[f"{name}_micro"] = micro[name]
        weighted = (weights[counted] * values[counted]).sum() if counted.any() else np.nan
        out[f"{name}_weighted"] = float(weighted)
        out[f"{name}_per_class"] = values
    out["miou"] = out["iou"]
    return out
