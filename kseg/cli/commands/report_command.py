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
@click.option("--patches", is_flag=True, help="Evaluate and predict with the study's patch grid.")
@options.inference_options
def report_command(runs_root, out_dir, samples, patches, window, overlap, tta):
    """Write report.md and report.html (runs without eval.json are evaluated first).

    With --patches, --window or --tta, runs evaluated another way are evaluated again in
    that mode, and the sample panels are predicted in it.
    """
    from kseg import output
    from kseg.reporting.report_page import build_report

    given = patches or window is not None or tta is not None
    inference = {"patches": patches, "window": window, "overlap": overlap, "tta": tta} if given else None
    path = build_report(
        runs_root,
        out_dir,
        samples,
        log=lambda line: output.err_console.print(line, soft_wrap=True, markup=False),
        inference=inference,
    )
    output.console.print(f"wrote {path} and {path.with_suffix('.html')}", soft_wrap=True, markup=False)
