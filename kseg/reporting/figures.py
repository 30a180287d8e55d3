"""The study's figures with matplotlib (Agg): sample panels and learning curves.

Functions take plain data (arrays, history rows) and a path, and write one PNG
atomically. matplotlib is imported inside them so importing kseg stays fast.
"""

import math
from pathlib import Path

import numpy as np

from kseg.data.io import colorize
from kseg.inference.outputs import overlay

# One colour per network, in run order, shared by every figure so a network keeps its
# colour from the learning curves to the tables (matplotlib's tab10, colour-blind safe).
NETWORK_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
ERROR_COLOR = (230, 25, 75)  # wrong pixels in the error map
DPI = 100
LEGEND_COLUMNS = 6


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    from kseg.atomic import atomic_path

    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return Path(path)


def network_color(index):
    return NETWORK_COLORS[index % len(NETWORK_COLORS)]


def error_map(image, truth, pred, void=None):
    """Image dimmed to grey, with wrongly labelled pixels in red; void pixels stay grey."""
    grey = np.asarray(image, np.float32).mean(-1, keepdims=True) * 0.6
    out = np.repeat(grey, 3, axis=-1)
    wrong = np.asarray(truth) != np.asarray(pred)
    if void is not None:
        wrong &= np.asarray(truth) != void
    out[wrong] = ERROR_COLOR
    return out.astype(np.uint8)


def _legend(fig, spec):
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=np.asarray(c) / 255, edgecolor="0.3", label=n)
        for n, c in zip(spec.classes, spec.colors, strict=True)
    ]
    if spec.void is not None:
        handles.append(Patch(facecolor="black", edgecolor="0.3", label="void"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), LEGEND_COLUMNS),
        frameon=False,
        fontsize=9,
    )


def _legend_rows(spec):
    return math.ceil((spec.num_classes + (spec.void is not None)) / LEGEND_COLUMNS)


def sample_panel(image, truth, predictions, spec, path, title=None):
    """Write one sample's panel (the study's figures 3 to 9) to `path`.

    Rows: ground truth (image, mask, mask over image), then one row per network
    (prediction, prediction over image, errors against the ground truth). Each
    network's row title carries its pixel accuracy on this frame (void excluded).

    Args:
        image: uint8 (H, W, 3). truth: uint8 (H, W) with spec.void for unlabeled pixels.
        predictions: {network name: uint8 (H, W)}, in display order.
        spec: the DatasetSpec (class names and colours).
    """
    plt = _pyplot()
    h, w = truth.shape
    rows = 1 + len(predictions)
    # Height from the image aspect: ~3.05 in per image column after margins, 0.3 in
    # per subplot title, plus the legend and the figure title.
    legend_in = 0.22 * _legend_rows(spec) + 0.1
    title_in = 0.3 if title else 0.0
    fig_h = rows * (3.05 * h / w + 0.3) + legend_in + title_in + 0.1
    # Constrained layout keeps titles, suptitle and the outside legend from overlapping.
    fig, axes = plt.subplots(rows, 3, figsize=(3 * 3.2, fig_h), squeeze=False, layout="constrained")
    truth_rgb = colorize(truth, spec)
    valid = truth != spec.void if spec.void is not None else np.ones_like(truth, bool)
    gt_over = overlay(image, truth_rgb, labels=truth, void=spec.void)
    cells = [[(image, "Image"), (truth_rgb, "Ground truth"), (gt_over, "Ground truth over image")]]
    for name, pred in predictions.items():
        rgb = colorize(pred, spec)
        acc = float((pred[valid] == truth[valid]).mean()) if valid.any() else float("nan")
        errors = error_map(image, truth, pred, spec.void)
        cells.append(
            [
                (rgb, f"{name}: prediction"),
                (overlay(image, rgb), f"{name}: over image"),
                (errors, f"{name}: errors (acc {acc:.1%})"),
            ]
        )
    for r, row in enumerate(cells):
        for c, (pixels, label) in enumerate(row):
            ax = axes[r][c]
            ax.imshow(pixels, interpolation="nearest")
            # The network's row title takes its curve colour, as in the learning curves.
            ax.set_title(label, fontsize=10, color=network_color(r - 1) if r else "black")
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=12)
    _legend(fig, spec)
    return _save(fig, path)


# Learning-curve panels: (history column, axis title); val columns are "val_" + name.
CURVES = (("loss", "Loss (the run's --loss)"), ("accuracy", "Pixel accuracy"), ("miou", "mIoU"))
# (history column prefix, line style, legend label) of the two curves of each network.
LINES = (("", "-", "train"), ("val_", "--", "val"))


def learning_curves(histories, path, title="Learning curves"):
    """Write loss, accuracy and mIoU per epoch, train (solid) and val (dashed).

    One legend below the panels names each network once (its colour) and the two line
    styles, so it never covers a curve, however many runs are drawn.

    Args:
        histories: {network name: list of history.csv rows (dicts)}, in display order.
            Missing or empty values are skipped, so partial histories still plot.
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    handles = [Line2D([], [], color="0.35", ls=style, label=kind) for _, style, kind in LINES]
    handles += [Line2D([], [], color=network_color(i), marker="o", markersize=4, label=name)
                for i, name in enumerate(histories)]
    columns = min(len(handles), 4)
    # 3.6 in for the panels, 0.22 in per legend row: constrained layout puts the
    # legend outside the axes, below them.
    height = 3.6 + 0.22 * math.ceil(len(handles) / columns)
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), height), squeeze=False,
                             layout="constrained")
    for i, rows in enumerate(histories.values()):
        epochs = [_num(r.get("epoch")) for r in rows]
        for ax, (key, _) in zip(axes[0], CURVES, strict=True):
            for prefix, style, _ in LINES:
                pts = [(e, _num(r.get(prefix + key))) for e, r in zip(epochs, rows, strict=True)]
                pts = [(e, v) for e, v in pts if e is not None and v is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, color=network_color(i), marker="o", markersize=3)
    for ax, (_, label) in zip(axes[0], CURVES, strict=True):
        ax.set_title(label, fontsize=11)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def _num(value):
    """A history cell (str from csv or number) -> float, or None when empty/NaN."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v
