"""`kseg report`: one Markdown/HTML page with both tables, the figures, configs and environments."""

import click

from kseg.cli import options


@click.command("report")
@options.runs_root
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Output folder (default: <runs>/report).",
)
@click.option(
    "--samples",
    default=3,
    show_default=True,
    type=click.IntRange(0, 50),
    help="Number of sample panels (frames from test, else val).",
)
def report(runs_root, out_dir, samples):
    """Write report.md and report.html (runs without eval.json are evaluated first)."""
    from kseg import output
    from kseg.reporting.report import build_report

    path = build_report(
        runs_root,
        out_dir,
        samples,
        log=lambda line: output.err_console.print(line, soft_wrap=True, markup=False),
    )
    output.console.print(f"wrote {path} and {path.with_suffix('.html')}", soft_wrap=True, markup=False)
