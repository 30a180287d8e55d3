"""Keep TensorFlow's native start-up chatter off the `kseg` command's terminal unless asked for.

Installed by the command's entry point only (`kseg.cli.main.run`, also `python -m kseg`),
never by `import kseg`: a notebook or an application that imports kseg keeps its
import system, its stderr and TensorFlow's own messages.

Importing TensorFlow writes absl lines to file descriptor 2 before Python's logging
exists ("All log messages before absl::InitializeLog()", the oneDNN and CUDA notices),
and TF_CPP_MIN_LOG_LEVEL does not reach them. So the first `import tensorflow` runs
with fd 2 pointed at /dev/null, and TF_CPP_MIN_LOG_LEVEL=3 hides the later C++ ERROR
line about cuInit on machines without a GPU. Python's own warnings and kseg's messages
are untouched. `KSEG_VERBOSE=1` (or `kseg --verbose`) leaves everything as it is.

After kseg has reported an error, its one line must stay the last one: TensorFlow logs
from its finalisers while the interpreter shuts down ("Error occurred when finalizing
GeneratorDataset iterator" after a Ctrl-C mid-epoch), whatever TF_CPP_MIN_LOG_LEVEL
says, so `silence_at_exit` points fd 2 at /dev/null once the process exits.

The same hook keeps JAX out of the TensorFlow and PyTorch backends' imports: where
jax is installed (the jax extra), `tensorflow.lite.python.util` and Keras'
`orbax_checkpoint` callback import it eagerly, for features kseg never uses (JAX to
LiteRT, Orbax checkpoints), and that costs 133 MB of resident memory and 0.7 s in every
kseg process. jax is hidden only while those two top-level modules execute, and never
from Keras when its backend is jax; a later `import jax` works as usual.
"""

import atexit
import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import sys

QUIET_MODULES = ("tensorflow",)  # native start-up lines silenced
JAX_FREE_MODULES = ("tensorflow", "keras")  # imported with jax hidden (unless the backend is jax)


def verbose():
    return os.environ.get("KSEG_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_silenced():
    """Point fd 2 at /dev/null for the block (C/C++ writes), then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, name):
        self.loader, self.name = loader, name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        hide = self.name in JAX_FREE_MODULES and not (self.name == "keras" and keras_backend() == "jax")
        quiet = self.name in QUIET_MODULES and not verbose()
        with _jax_hidden() if hide else contextlib.nullcontext():
            with native_stderr_silenced() if quiet else contextlib.nullcontext():
                return self.loader.exec_module(module)


def keras_backend():
    """The backend Keras will pick, found as Keras finds it (keras/src/backend/config.py):
    $KERAS_BACKEND, else "backend" in $KERAS_HOME/keras.json (~/.keras), else tensorflow."""
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    user = os.path.expanduser("~")
    base = user if os.access(user, os.W_OK) else "/tmp"
    home = os.environ.get("KERAS_HOME") or os.path.join(base, ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


@contextlib.contextmanager
def _jax_hidden():
    """`import jax` raises ImportError inside the block, unless jax is imported already."""
    if "jax" in sys.modules:
        yield
        return
    sys.modules["jax"] = None  # the import system's "not importable" marker
    try:
        yield
    finally:
        if sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level modules in QUIET_MODULES and JAX_FREE_MODULES, once each."""

    def find_spec(self, name, path=None, target=None):
        if name not in QUIET_MODULES + JAX_FREE_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, name)
        return spec


_SILENCED_AT_EXIT = []


def silence_at_exit():
    """Point fd 2 at /dev/null when the process exits (after the error line is out);
    once per process, and never when verbose."""
    if verbose() or _SILENCED_AT_EXIT:
        return
    _SILENCED_AT_EXIT.append(True)
    atexit.register(_silence_fd2)


def _silence_fd2():
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def install():
    """Silence the native start-up lines of later imports (unless verbose) and keep jax out
    of them; once per process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose() else "3")
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
