"""`kseg fit`: train one registered network, or all of them, into run directories."""

import click
from click.core import ParameterSource

from kseg import output
from kseg.commands import options
from kseg.errors import KsegError

# CLI parameter -> FitConfig field, for options whose names differ.
FIELD = {"model_args": "model_kwargs", "crops": "grid"}


@click.command("fit")
@click.argument("arch", required=False)
@click.option("--all", "all_models", is_flag=True, help="Train every registered model, one after the other.")
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    help="Dataset folder (default: the embedded synthetic scenes).",
)
@click.option("--epochs", default=20, show_default=True, type=int)
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@click.option("--patch", default=128, show_default=True, type=int, help="Patch side in pixels.")
@click.option(
    "--grid", default="4x4", show_default=True, help="Cut each frame into RxC cells, each resized to a patch."
)
@click.option("--crops", is_flag=True, help="Random native-resolution crops instead of the grid.")
@click.option(
    "--split",
    default="val",
    show_default=True,
    type=click.Choice(["val", "80/20"]),
    help="Validate on val/, or on a seeded 20% of the training patches (the study's).",
)
@click.option("--class-weights", is_flag=True, help="Weight the loss by median frequency balancing.")
@click.option("--augment", is_flag=True, help="Random flips, shifts, rotations and scaling.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--monitor",
    default="val_accuracy",
    show_default=True,
    help="What best.keras maximises (minimises for losses).",
)
@click.option(
    "--plateau-patience",
    default=10,
    show_default=True,
    type=int,
    help="Epochs without val_loss progress before the LR drops.",
)
@click.option(
    "--plateau-factor", default=0.1, show_default=True, type=float, help="LR multiplier on a plateau."
)
@click.option(
    "--precision",
    default="float32",
    show_default=True,
    type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16"]),
)
@click.option(
    "--jit/--no-jit", default=None, help="XLA-compile the train step (default: Keras' auto: on with a GPU)."
)
@click.option(
    "--deterministic/--no-deterministic",
    default=None,
    help="Deterministic TF ops (default: on without a GPU or --jit, off with one).",
)
@click.option(
    "--distribute", is_flag=True, help="Train under kseg.distribute's strategy (all local accelerators)."
)
@click.option(
    "--init-from", type=click.Path(exists=True), help="Start from a checkpoint (.keras or run directory)."
)
@click.option(
    "--frame-cache",
    "frame_cache_mb",
    default=64,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="MIB",
    help="Decoded frames kept in memory; the rest are decoded per batch (more: faster loading).",
)
@click.option(
    "--model-arg", "model_args", multiple=True, metavar="KEY=VALUE", help="Builder argument (repeatable)."
)
@options.runs_root
@click.option("--name", help="Run directory name (default: the architecture).")
@click.option(
    "--resume", is_flag=True, help="Continue a run (also one that failed); interrupted runs continue anyway."
)
@click.option(
    "--live/--plain", default=None, help="Progress bar or one line per epoch (default: bar on a terminal)."
)
@click.pass_context
def fit(ctx, arch, all_models, runs_root, name, resume, live, model_args, grid, crops, **settings):
    """Train ARCH (or --all) on patches; writes runs/<name>/ and resumes interrupted runs."""
    from kseg import registry, train
    from kseg.fitconfig import FitConfig, parse_grid, parse_model_args

    if all_models == bool(arch):
        raise KsegError("Give an architecture (see `kseg models`) or --all, not both.")
    if all_models and (name or model_args):
        raise KsegError("--name and --model-arg apply to one architecture; drop them with --all.")
    explicit = set()
    for param, source in ((p, ctx.get_parameter_source(p)) for p in ctx.params):
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            explicit.add(FIELD.get(param, param))
    base = dict(settings, grid=None if crops else parse_grid(grid), model_kwargs=parse_model_args(model_args))
    archs = registry.list_models() if all_models else [arch]
    for a in archs:
        cfg = FitConfig(arch=a, **base)
        try:
            run = train.fit(cfg, runs=runs_root, name=name, resume=resume, explicit=explicit, progress=live)
        except KsegError as exc:
            if all_models and "already finished" in exc.message:
                output.console.print(
                    f"{a}: {exc.message.split(';')[0]}; skipped.", highlight=False, soft_wrap=True
                )
                continue
            raise
        _summary(run)


def _summary(run):
    state = run.state
    best = state.get("best_value")
    best_text = (
        f"{state['monitor']} {best:.4f} at epoch {state['best_epoch']}" if best is not None else "no best yet"
    )
    output.console.print(
        f"[bold]{run.path}[/]: {state['epoch']} epochs, best {best_text}, "
        f"{state['train_seconds']:.1f}s training.",
        highlight=False,
        soft_wrap=True,
    )
