"""`kseg predict`: colour masks and overlays for images, from a run's best model."""

import click

from kseg.cli import options


@click.command("predict")
@click.argument("run")
@click.argument("images", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <stem>_mask.png and <stem>_overlay.png.")
@options.runs_root
@click.option("--patches", is_flag=True, help="Predict with the study's patch grid instead of whole frames.")
def predict(run, images, out_dir, runs_root, patches):
    """Predict IMAGES (files, folders or globs) with RUN and write colour masks and overlays."""
    from kseg import api
    from kseg import output

    def done(image, mask, over):
        output.console.print(f"{image} -> {mask.name}, {over.name}", soft_wrap=True, markup=False)

    written = api.predict(run, images, out=out_dir, patches=patches, runs=runs_root, on_written=done)
    output.err_console.print(f"wrote {2 * len(written)} files to {out_dir}", soft_wrap=True, markup=False)
