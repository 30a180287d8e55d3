"""Click options that several commands share, defined once."""

import click

runs_root = click.option(
    "--runs",
    "runs_root",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding the run directories.",
)
