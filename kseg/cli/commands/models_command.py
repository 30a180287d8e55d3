"""`kseg models`: what is registered, where it came from, and how big it is."""

import click
from rich.markup import escape

from kseg import output, registry


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-params", is_flag=True, help="Skip building each model to count parameters (the "
              "keras.applications pairs are counted only when PATTERN is given, e.g. 'unet-*').")
def models_command(pattern, as_json, no_params):
    """List registered models (PATTERN filters names, e.g. 'unet*')."""
    # Counting builds the model, 1-2 s each: the 39 pairs of a family would take a minute.
    core = set(registry.core_models())
    infos = [registry.model_info(n, count_params=not no_params and (pattern != "*" or n in core))
             for n in registry.list_models(pattern)]
    errors = registry.plugin_errors()
    if as_json:
        output.print_json({"models": infos, "plugin_errors": errors})
        return
    rows = [(i["name"], i["source"], i.get("params"), i["stride"], i["description"]) for i in infos]
    output.print_table("Models", ["name", "source", "parameters", "stride", "description"], rows)
    for name, reason in errors.items():
        # escape: the reason is the plugin's text, where "[/...]" would be read as Rich markup;
        # soft_wrap: one line per plugin in a pipe or a log too, not folded at 80 columns.
        output.err_console.print(f"[yellow]plugin {escape(repr(name))} failed to load:[/] {escape(reason)}",
                                 soft_wrap=True)
