"""`kseg`: the group of verbs. Each verb's module is imported on first use, so `kseg --help`
does not pay for importing Keras; a verb's help is its docstring."""

import ctypes
import errno
import importlib
import os
import signal
import sys
import traceback
import warnings

import click

from kseg import __version__, quiet
from kseg.errors import KsegError, debug_requested, user_error

# command name -> "module:attribute" under kseg.cli.commands
COMMANDS = {
    "models": "models_command:models_command",
    "data": "data_command:data_command",
    "fit": "fit_command:fit_command",
    "eval": "eval_command:evaluate_command",
    "predict": "predict_command:predict_command",
    "report": "report_command:report_command",
    "bench": "bench_command:bench_command",
    "export": "export_command:export_command",
}


class LazyGroup(click.Group):
    """The group, and kseg's one error boundary: every exception of every verb ends here as
    one line (`kseg.errors.user_error`), with the traceback only under --verbose/KSEG_DEBUG."""

    def invoke(self, ctx):
        try:
            return self._invoke(ctx)
        except click.ClickException:
            quiet.silence_at_exit()  # the error line stays the last one (kseg.quiet)
            raise
        except KeyboardInterrupt:
            # Ctrl-C outside fit's clean stop (which has its own line), or landing while an
            # error is being reported: one line and 130, the shell's status for SIGINT,
            # instead of click's "Aborted!" and 1.
            quiet.silence_at_exit()
            stopped = KsegError("Stopped by SIGINT (Ctrl-C).")
            stopped.exit_code = 128 + signal.SIGINT
            raise stopped from None

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as exc:
            if isinstance(exc, KsegError) and _debug(ctx):
                _print_traceback(exc)
            raise user_error(exc) from None
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # `kseg models | head`: click's main exits quietly
            if _debug(ctx):
                _print_traceback(exc)
            raise user_error(exc) from None

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"kseg.cli.commands.{module}"), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kseg")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up logs (also KSEG_VERBOSE=1) "
              "and the traceback of an error (also KSEG_DEBUG=1).")
@click.pass_context
def main(ctx, verbose):
    """kseg: train, compare and ship semantic segmentation networks in Keras 3."""
    from kseg.training.hardware import set_onednn

    set_onednn(ctx.invoked_subcommand)  # before TensorFlow starts: it reads the variable once
    if verbose:
        os.environ["KSEG_VERBOSE"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    limit_malloc_arenas()
    # `kseg models` reports broken plugins itself; elsewhere a warning would only be noise.
    warnings.filterwarnings("ignore", message="kseg plugin", category=UserWarning)


def run():
    """The `kseg` command (its console script and `python -m kseg`): TensorFlow's start-up
    chatter silenced before anything imports it (kseg.quiet), then the group. Only the
    command does this; `import kseg` leaves the process as it was."""
    quiet.install()
    main(prog_name="kseg")


def _debug(ctx):
    # The flag of this invocation, not KSEG_VERBOSE: --verbose writes that into os.environ,
    # where it would outlive the call in a process that invokes the CLI repeatedly.
    return bool(ctx.params.get("verbose")) or debug_requested()


def _print_traceback(exc):
    """The traceback for a bug report; a KsegError raised `from None` also shows the
    exception it replaced."""
    if exc.__suppress_context__ and exc.__context__ is not None:
        traceback.print_exception(exc.__context__, file=sys.stderr)
        print("\nwhich kseg reported as:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


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
