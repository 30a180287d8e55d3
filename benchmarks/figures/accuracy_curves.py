"""Draw the learning-curve figures of docs/accuracy.md from run directories.

    python benchmarks/figures/accuracy_curves.py RUNS_DIR [FIGURE]

FIGURE names one entry of FIGURES (default: all of them); each is written to docs/figures/
from the runs of its list found under RUNS_DIR, and one whose runs are all
missing is skipped. The U-Net runs of `accuracy_curves.png` were not kept;
docs/figures/runs keeps the history.csv of the DeepLabV3+ and DeepLabV3 runs, so

    python benchmarks/figures/accuracy_curves.py docs/figures/runs

redraws `accuracy_curves_dlv3p10.png`, `accuracy_curves_dlv3p16.png`,
`accuracy_curves_dlv3p28.png` and `accuracy_curves_dlv3_study.png`.
"""

import sys
from pathlib import Path

from kseg.reporting.figures import learning_curves
from kseg.runs.rundir import RunDir

OUT = Path(__file__).resolve().parents[2] / "docs" / "figures"  # where docs/accuracy.md shows them

CAMVID_VAL = "camvid recipe, CamVid train; val = 256 px val crops"
# figure -> (title, ((run directory, legend name, epochs to add so a continuation
# follows its parent), ...))
DLV3P_10 = (("dlv3p-camvid10", "DeepLabV3+, camvid, 10 epochs", 0),
            ("dlv3p-cu10", "DeepLabV3+, camvid, 10 epochs, class-uniform 0.5", 0))
DLV3P_16 = ("dlv3p-camvid16", "DeepLabV3+, camvid, 16 epochs (fused batch norm)", 0)
FIGURES = {
    "accuracy_curves.png": (CAMVID_VAL, (
        ("unet-camvid20", "U-Net, camvid, 20 epochs", 0),
        ("unet-camvid20-cw4", "U-Net, + 4 epochs, class weights", 20),
        ("unet-camvid20-cu4", "U-Net, + 4 epochs, class-uniform crops", 20),
        ("dlv3p-camvid8", "DeepLabV3+, camvid, 5 + 3 epochs", 0))),
    "accuracy_curves_dlv3p10.png": (CAMVID_VAL, DLV3P_10),
    "accuracy_curves_dlv3p16.png": (CAMVID_VAL, (*DLV3P_10, DLV3P_16)),
    "accuracy_curves_dlv3p28.png": (CAMVID_VAL, (
        DLV3P_16, ("dlv3p-cont12", "DeepLabV3+, + 12 epochs from its best.keras, LR 5e-4, poly", 16))),
    "accuracy_curves_dlv3_study.png": (
        "study recipe, CamVid train; val = the 4x4 grid of 128 px patches of val/", (
            ("dlv3-study", "DeepLabV3, study recipe", 0),)),
}


def draw(runs_dir, figure):
    title, runs = FIGURES[figure]
    histories = {name: [{**row, "epoch": row["epoch"] + offset}
                        for row in RunDir(Path(runs_dir, run)).history()]
                 for run, name, offset in runs}
    histories = {name: rows for name, rows in histories.items() if rows}  # runs not made are left out
    if not histories:
        return None
    return learning_curves(histories, OUT / figure, title=title)


def main(runs_dir, figure=None):
    for name in [figure] if figure else FIGURES:
        print(draw(runs_dir, name) or f"{name}: none of its runs is under {runs_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
