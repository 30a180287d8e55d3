"""`kseg export`: a run's checkpoint as a .keras file, a TF SavedModel, ONNX or LiteRT."""

import os
import sys

import click

from kseg import output

# kseg.inference.exporters.FORMATS and TOLERANCE, without importing Keras for --help.
FORMATS = ("keras", "tf_saved_model", "onnx", "litert")
TOLERANCE = 1e-3


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", default="keras", show_default=True, type=click.Choice(FORMATS))
@click.option("--out", type=click.Path(), help="Output file or folder (default: RUN/export/<arch><suffix>).")
@click.option("--which", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Which checkpoint to export.")
@click.option("--size", metavar="HxW",
              help="Fix the input size of tf_saved_model/onnx/litert (default: dynamic).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Reload the export and compare its logits with the checkpoint's; fail (exit 1) "
                   "when they differ by more than --tolerance.")
@click.option("--tolerance", default=TOLERANCE, show_default=True, type=click.FloatRange(min=0),
              help="Largest logit difference --check accepts, times max(1, largest |logit|).")
def export_command(run, fmt, out, which, size, check, tolerance):
    """Export RUN's checkpoint; --check compares the export's logits with the checkpoint's."""
    if fmt != "keras" and "keras" not in sys.modules:
        # SavedModel, ONNX and LiteRT are traced by TensorFlow (see kseg/inference/exporters.py).
        os.environ["KERAS_BACKEND"] = "tensorflow"
    from kseg.inference import exporters as exporter
    from kseg.parsing import parse_hw
    from kseg.runs import RunDir

    run_dir = RunDir(run)
    hw = parse_hw(size, "--size") if size else None
    path = exporter.export_run(run, fmt, out, which, size=hw)
    output.console.print(f"Wrote {path} ({fmt}).", highlight=False)
    if check:
        model = run_dir.load_model(which)
        h, w = hw or (2 * run_dir.stride, 3 * run_dir.stride)
        shape = (1, h, w, model.input_shape[-1])  # the run's --channels
        diff = exporter.verify_export(model, path, fmt, shape=shape, tolerance=tolerance)
        output.console.print(f"Checked: largest logit difference {diff:.2e}.", highlight=False)
