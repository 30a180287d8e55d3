"""`kseg export`: a run's checkpoint as a .keras file, a TF SavedModel or ONNX."""

import os
import sys

import click

from kseg import output

FORMATS = ("keras", "tf_saved_model", "onnx")  # kseg.export.FORMATS, without importing it early


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", default="keras", show_default=True, type=click.Choice(FORMATS))
@click.option("--out", type=click.Path(), help="Output file or folder (default: RUN/export/<arch><suffix>).")
@click.option("--which", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Which checkpoint to export.")
@click.option("--size", metavar="HxW", help="Fix the input size of tf_saved_model/onnx (default: dynamic).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Reload the export and compare its logits with the checkpoint's.")
def export(run, fmt, out, which, size, check):
    """Export RUN's checkpoint; --check compares the export's logits with the checkpoint's."""
    if fmt != "keras" and "keras" not in sys.modules:
        # SavedModel and ONNX are traced by TensorFlow (see kseg/export.py).
        os.environ["KERAS_BACKEND"] = "tensorflow"
    from kseg import export as exporter
    from kseg.runs import RunDir

    run_dir = RunDir(run)
    hw = _parse_size(size) if size else None
    path = exporter.export_run(run, fmt, out, which, size=hw)
    output.console.print(f"Wrote {path} ({fmt}).", highlight=False)
    if check:
        model = run_dir.load_model(which)
        stride = run_dir.config.get("stride", 32)
        h, w = hw or (2 * stride, 3 * stride)
        diff = exporter.check_export(model, path, fmt, shape=(1, h, w, 3))
        output.console.print(f"Checked: largest logit difference {diff:.2e}.", highlight=False)


def _parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not HxW, e.g. 384x480.", param_hint="--size") from None
    return h, w
