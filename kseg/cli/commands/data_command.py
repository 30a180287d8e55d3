"""`kseg data check` and `kseg data synth`."""

import click

from kseg import output
from kseg.errors import KsegError


@click.group("data")
def data_command():
    """Check or generate datasets."""


@data_command.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False),
              help="Dataset description JSON (default: DIR/kseg.json, CamVid, or inferred).")
@click.option("--channels", default=3, show_default=True, type=click.IntRange(min=1),
              help="Channels every image must hold, as `kseg fit --channels`.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def check(directory, spec_file, channels, as_json):
    """Validate a dataset (default: the embedded synthetic scenes)."""
    from kseg.data.check import check_dataset, summary_tables
    from kseg.data.synth import default_dataset_dir
    from kseg.data.trainable import report_lines

    summary = check_dataset(directory or default_dataset_dir(), spec_file, channels=channels)
    for line in summary["warnings"]:  # on stderr, so that --json stays one JSON document
        output.err_console.print(f"Warning: {line}", soft_wrap=True, markup=False, highlight=False)
    if as_json:
        output.print_json(summary)
        return
    for title, columns, rows in summary_tables(summary):
        output.print_table(title, columns, rows, digits=2)
    for line in report_lines(summary):
        output.console.print(line, highlight=False, markup=False, soft_wrap=True)
    output.console.print("[green]OK[/]: every pair decodes, sizes match, mask values are valid.")


def _size(ctx, param, value):
    from kseg.parsing import parse_hw

    return parse_hw(value, "--size", minimum=32)


@data_command.command("synth")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--train", "n_train", default=32, show_default=True, type=click.IntRange(0))
@click.option("--val", "n_val", default=8, show_default=True, type=click.IntRange(0))
@click.option("--test", "n_test", default=8, show_default=True, type=click.IntRange(0))
@click.option("--size", default="240x320", show_default=True, callback=_size, help="HxW.")
@click.option("--seed", default=0, show_default=True, type=int)
def synth(directory, n_train, n_val, n_test, size, seed):
    """Write synthetic road scenes in the CamVid layout to DIRECTORY."""
    from pathlib import Path

    from kseg.data.synth import write_synthetic

    if n_train + n_val + n_test == 0:
        raise KsegError("nothing to write: --train, --val and --test are all 0")
    root = write_synthetic(Path(directory), n_train, n_val, n_test, size, seed)
    output.console.print(f"wrote {n_train} train, {n_val} val, {n_test} test frames "
                         f"({size[0]}x{size[1]}) to {root}")
