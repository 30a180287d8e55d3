"""Draw docs/figures/accuracy_curves.png from the run directories of docs/accuracy.md.

    python docs/figures/accuracy_curves.py RUNS_DIR [OUT]

RUNS_DIR holds `unet-camvid20` (the 20-epoch `camvid` run) and, where it was run,
`unet-camvid20-cw4` and `unet-camvid20-cu4` (its 4-epoch continuations with class
weights and with class-uniform crops, drawn as epochs 21 on) and `dlv3p-camvid8`
(DeepLabV3+, 5 epochs of the recipe extended to 8), `dlv3p-camvid10` (DeepLabV3+,
the recipe's 10 epochs) and `dlv3p-cu10` (the same with `--class-uniform 0.5`). Runs
not under RUNS_DIR are left out. docs/figures/runs keeps the history.csv of the runs
whose directories were not kept otherwise:

    python docs/figures/accuracy_curves.py docs/figures/runs docs/figures/accuracy_curves_dlv3p10.png
"""

import sys
from pathlib import Path

from kseg.reporting.figures import learning_curves
from kseg.runs.rundir import RunDir

# (run directory, legend name, epochs to add so a continuation follows its parent)
RUNS = (("unet-camvid20", "U-Net, camvid, 20 epochs", 0),
        ("unet-camvid20-cw4", "U-Net, + 4 epochs, class weights", 20),
        ("unet-camvid20-cu4", "U-Net, + 4 epochs, class-uniform crops", 20),
        ("dlv3p-camvid8", "DeepLabV3+, camvid, 5 + 3 epochs", 0),
        ("dlv3p-camvid10", "DeepLabV3+, camvid, 10 epochs", 0),
        ("dlv3p-cu10", "DeepLabV3+, camvid, 10 epochs, class-uniform 0.5", 0))


def main(runs_dir, out=None):
    histories = {name: [{**row, "epoch": row["epoch"] + offset}
                        for row in RunDir(Path(runs_dir, run)).history()]
                 for run, name, offset in RUNS}
    histories = {name: rows for name, rows in histories.items() if rows}  # runs not made are left out
    out = Path(out) if out else Path(__file__).with_name("accuracy_curves.png")
    title = "camvid recipe, CamVid train; val = 256 px val crops"  # the legend names each network
    learning_curves(histories, out, title=title)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
