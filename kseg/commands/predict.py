"""`kseg predict`: colour masks and overlays for images, from a run's best model."""

from pathlib import Path

import click

from kseg.commands import options


@click.command("predict")
@click.argument("run")
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for <stem>_mask.png and <stem>_overlay.png.",
)
@options.runs_root
@click.option("--patches", is_flag=True, help="Predict with the study's patch grid instead of whole frames.")
def predict(run, images, out_dir, runs_root, patches):
    """Predict IMAGES (files, folders or globs) with RUN and write colour masks and overlays."""
    from kseg import evaluate as ev
    from kseg import output
    from kseg import predict as pr
    from kseg.errors import KsegError

    paths = pr.expand_inputs(images, out_dir)
    stems = {}
    for p in paths:
        if p.stem in stems:
            raise KsegError(f"{p}: same name as {stems[p.stem]}; outputs would overwrite each other")
        stems[p.stem] = p
    (run,) = ev.resolve_runs([run], runs_root)
    model = ev.load_model(run)
    stride = ev.stride_of(run)
    grid = ev.run_grid(run) if patches else None

    def done(image, mask, over):
        output.console.print(f"{image} -> {mask.name}, {over.name}", soft_wrap=True, markup=False)

    written = pr.predict_images(model, paths, run.spec, Path(out_dir), stride, grid, on_written=done)
    output.err_console.print(f"wrote {2 * len(written)} files to {out_dir}", soft_wrap=True, markup=False)
