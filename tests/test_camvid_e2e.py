"""A short real run on CamVid: fit one epoch at reduced size, evaluate on val.

The subset (2 train and 2 val frames, linked from the real dataset) is one training
step of 8 patches, and a confusion matrix summed over more than one frame; most of
the test's time is building and tracing U-Net. The full-size schedule belongs to
`kseg bench` and benchmarks/LOG.md.
"""

import json

import numpy as np
from click.testing import CliRunner

from kseg.cli import main
from kseg.data.dataset_spec import CAMVID
from kseg.data.io import read_image, read_mask
from kseg.data.readers import open_dataset
from kseg.metrics import confusion_matrix, scores
from kseg.runs import RunDir


def camvid_subset(camvid, dst, n_train=2, n_val=2):
    """A SegNet-layout folder of symlinks to the first frames of CamVid's train and val."""
    full = open_dataset(camvid)
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in (split, f"{split}annot"):
            (dst / folder).mkdir(parents=True)
        for pair in full.splits[split][:n]:
            (dst / split / pair.image.name).symlink_to(pair.image)
            (dst / f"{split}annot" / pair.mask.name).symlink_to(pair.mask)
    return dst


def test_unet_one_epoch_on_camvid_then_eval_on_val(camvid_dir, tmp_path):
    data = camvid_subset(camvid_dir, tmp_path / "camvid")
    runs = tmp_path / "runs"
    cli = CliRunner()
    fit = cli.invoke(
        main,
        [
            "fit",
            "unet",
            "--data",
            str(data),
            "--runs",
            str(runs),
            "--epochs",
            "1",
            "--patch",
            "64",
            "--grid",
            "2x2",
            "--batch-size",
            "8",
        ],
    )
    assert fit.exit_code == 0, fit.output
    run = RunDir(runs / "unet")
    assert run.config["spec"]["classes"] == list(CAMVID.classes)
    assert run.state.status == "finished"

    ev = cli.invoke(main, ["eval", "unet", "--runs", str(runs), "--splits", "val,test", "--json"])
    assert ev.exit_code == 0, ev.output
    result = json.loads((runs / "unet" / "eval.json").read_text())
    val = result["splits"]["val"]
    assert "test" in str(result.get("skipped")), "a missing test split is reported, not fatal"

    # The same numbers from the metric module on predictions made here, full frame.
    model = run.load_model()
    cm = 0
    for pair in open_dataset(data).splits["val"]:
        image = read_image(pair.image)  # (360, 480, 3)
        # 360 rows reflect-padded to 384, the next multiple of the U-Net's stride 32.
        padded = np.pad(image, ((0, 24), (0, 0), (0, 0)), mode="reflect")[None].astype("float32")
        pred = model.predict(padded, verbose=0)[0, :360].argmax(-1)  # (360, 480)
        cm = cm + confusion_matrix(read_mask(pair.mask, CAMVID), pred, CAMVID.num_classes, CAMVID.void)
    expected = scores(cm)
    assert abs(val["accuracy"] - expected["accuracy"]) < 1e-6
    assert abs(val["miou"] - expected["miou"]) < 1e-6
