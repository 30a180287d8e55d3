"""The `kseg` command line: nouns and verbs, one module per command in kseg/commands.

Commands are imported on first use, so `kseg --help` does not pay for importing Keras.
"""

import ctypes
import importlib
import os
import sys
import warnings

import click

from kseg import __version__

# command name -> "module:attribute" under kseg.commands
COMMANDS = {
    "models": "models:models",
    "data": "data:data",
    "fit": "fit:fit",
    "eval": "evaluate:evaluate",
    "predict": "predict:predict",
    "report": "report:report",
    "bench": "bench:bench",
    "export": "export:export",
}

HELP = {
    "models": "List the registered architectures.",
    "data": "Check or generate datasets.",
    "fit": "Train a network (or all of them).",
    "eval": "Evaluate runs and print the study's tables.",
    "predict": "Write colour masks and overlays for images.",
    "report": "Write a Markdown/HTML report of all runs.",
    "bench": "Measure throughput and memory against this machine's ceiling.",
    "export": "Export a run's best model.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        try:
            mod = importlib.import_module(f"kseg.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kseg.commands.{module}":
                raise
            return _missing(name)
        return getattr(mod, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, HELP[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _missing(name):
    @click.command(name)
    def cmd():
        raise click.ClickException(f"'kseg {name}' is not available in this build.")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kseg")
def main():
    """kseg: train, compare and ship semantic segmentation networks in Keras 3."""
    limit_malloc_arenas()
    # `kseg models` reports broken plugins itself; elsewhere a warning would only be noise.
    warnings.filterwarnings("ignore", message="kseg plugin", category=UserWarning)


def limit_malloc_arenas(arenas=2):
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX=2), unless the user set that.

    TensorFlow's thread pools each grow their own arena (up to 8 per core), and freed
    activation memory stays cached in all of them: `kseg fit unet` on CamVid peaked
    about 100 MB higher without the cap, at the same speed. Must run before the
    backend starts its threads; a no-op off glibc.
    """
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX in <malloc.h>
    except (OSError, AttributeError):
        pass  # musl and other C libraries have no mallopt
