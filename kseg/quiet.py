"""Keep TensorFlow's native start-up chatter off the terminal unless asked for.

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
"""

import atexit
import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

QUIET_MODULES = ("tensorflow",)


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
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if verbose():
            return self.loader.exec_module(module)
        with native_stderr_silenced():
            return self.loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level modules in QUIET_MODULES, once each."""

    def find_spec(self, name, path=None, target=None):
        if name not in QUIET_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
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
    """Silence the native start-up lines of later imports (no-op when verbose or installed)."""
    if verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
