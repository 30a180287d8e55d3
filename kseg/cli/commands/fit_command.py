"""`kseg fit`: train registered networks, one after the other, into run directories."""

import click

from kseg import output
from kseg.cli import options
from kseg.errors import KsegError


@click.command("fit")
@click.argument("archs", nargs=-1, metavar="[ARCH]...")
@click.option("--all", "all_models", is_flag=True,
              help="Train every registered model, one after the other (the keras.applications pairs, "
                   "unet-resnet50 ..., only by name).")
@click.option("--recipe", metavar="NAME|FILE",
              help="Start from a recipe: a shipped name (study, camvid) or a JSON file.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Settings from a JSON file (e.g. a run's config.json); options override it.")
@click.option("--crops", is_flag=True, help="Random native-resolution crops instead of the grid.")
@options.config_options
@options.runs_root
@click.option("--name", help="Run directory name (default: the architecture).")
@click.option("--resume", is_flag=True, help="Continue a run (also one that failed); interrupted runs "
              "continue anyway.")
@click.option("--live/--plain", default=None, help="Progress bar or one line per epoch (default: bar on a "
              "terminal).")
@click.option("--dry-run", is_flag=True, help="Check the settings and the data, print what the run would do "
              "(network, data, batches, hardware, fresh or continued), and write nothing.")
def fit_command(archs, all_models, recipe, config_file, crops, runs_root, name, resume, live, dry_run,
                **settings):
    """Train each ARCH (or --all) in turn, with the same settings; writes runs/<name>/ and resumes
    interrupted runs."""
    from kseg import api, registry

    if all_models and archs:
        raise KsegError("Give architectures (see `kseg models`) or --all, not both.")
    if not all_models and not archs and not config_file:
        raise KsegError("Give an architecture (see `kseg models`), --all, or a --config that names one.")
    if (all_models or len(archs) > 1) and (name or settings["model_kwargs"]):
        raise KsegError("--name and --model-arg apply to one architecture; train the others in a "
                        "second `kseg fit`.")
    if len(set(archs)) < len(archs):
        raise KsegError(f"{_first_repeat(archs)!r} is named twice; each architecture trains once.")
    for a in archs:
        registry.get_entry(a)  # a misspelt second name fails now, not after the first has trained
    settings["model_kwargs"] = settings["model_kwargs"] or None
    settings = {k: v for k, v in settings.items() if v is not None}  # None: not given
    if crops:
        settings["grid"] = None  # random crops (over any --grid): an explicit value, unlike no --grid
    for a in registry.core_models() if all_models else (archs or [None]):
        try:
            done = api.fit(a, runs=runs_root, name=name, resume=resume, recipe=recipe, config=config_file,
                           progress=live, dry_run=dry_run, **settings)
        except KsegError as exc:
            if (all_models or len(archs) > 1) and "already finished" in exc.message:  # go on with the rest
                output.console.print(f"{a}: {exc.message.split(';')[0]}; skipped.", highlight=False,
                                     soft_wrap=True)
                continue
            raise
        if dry_run:
            _print_plan(done)  # a FitPlan
        else:
            _summary(done)  # a RunDir


def _first_repeat(names):
    return next(n for i, n in enumerate(names) if n in names[:i])


def _print_plan(plan):
    for line in plan.lines():
        output.console.print(line, highlight=False, markup=False, soft_wrap=True)


def _summary(run):
    state = run.state
    best = (f"{state.monitor} {state.best_value:.4f} at epoch {state.best_epoch}"
            if state.best_value is not None else "no best yet")
    output.console.print(f"[bold]{run.path}[/]: {state.epoch} epochs, best {best}, "
                         f"{state.train_seconds:.1f}s training.", highlight=False, soft_wrap=True)
