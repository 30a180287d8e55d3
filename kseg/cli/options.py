"""Click options that several commands share, defined once; `kseg fit`'s come from FitConfig."""

import click

runs_root = click.option(
    "--runs",
    "runs_root",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding the run directories.",
)

KINDS = {int: int, float: float, str: str}


def config_options(command):
    """Add one option per FitConfig field, from the field's own flag, help and default.

    Every option defaults to None, meaning "not given": the value then comes from the
    recipe, the config file or FitConfig's default, and the options the user did give
    are exactly those that are not None. The help shows FitConfig's default.
    """
    from kseg.training.config import fields

    for field in reversed(fields()):
        meta, flag = field.metadata, field.metadata["flag"]
        default = field.default if field.default_factory is dataclass_missing() else field.default_factory()
        shown = _shown(default)
        help_text = f"{meta['help']} [default: {shown}]" if shown else meta["help"]
        name = field.name
        if meta["kind"] == "flag":
            decl = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
        elif meta["kind"] == "multi":
            decl = click.option(flag, name, multiple=True, default=None, metavar=meta.get("metavar"),
                                help=help_text)
        else:
            decl = click.option(flag, name, default=None, type=KINDS[meta["kind"]],
                                metavar=meta.get("metavar"), help=help_text)
        command = decl(command)
    return command


def dataclass_missing():
    import dataclasses

    return dataclasses.MISSING


def _shown(default):
    if default is None or default == {}:
        return ""
    if isinstance(default, tuple):
        return "x".join(str(v) for v in default)
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


# -- inference: one set of options for eval, predict and report ---------------------------

window = click.option("--window", type=click.IntRange(min=1), default=None, metavar="PIXELS",
                      help="Sliding windows of PIXELS x PIXELS (rounded up to the stride), blended "
                           "smoothly; bounded memory for large images. Default: whole frames.")
overlap = click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=0.33,
                       show_default=True, help="Overlap of neighbouring windows, as a fraction of a window.")
tta = click.option("--tta", default=None, metavar="SPEC",
                   help="Test-time augmentation: 'flip', 'scales=0.75:1:1.25' or 'flip,scales=...'; "
                        "logits averaged over the passes.")


def inference_options(command):
    """--window, --overlap and --tta (see kseg.inference.mode.InferenceMode)."""
    return window(overlap(tta(command)))
