"""One exception type for everything a user can get wrong, and the translation of
every other failure into it.

`KsegError` is a `click.ClickException`, so the CLI prints its one-line message and
exits with status 1, with no traceback. It is also a `ValueError`, so library users
can catch it without knowing about click.

`user_error(exc)` turns any exception into the one line the CLI shows: a failing disk
or file (`OSError`), an image the decoder refuses, a checkpoint Keras cannot load and
memory running out become a `KsegError` that names the file, the problem and what to
do next; anything else is a bug and becomes an `InternalError` that says so. The CLI
calls it at its one boundary (kseg/cli/main.py); the Python API may call it too.
This module imports neither Pillow nor Keras: it recognises their errors by type name
and module, so `import kseg.errors` stays cheap.
"""

import errno
import os
import sys

import click

from kseg import compat

# Environment variable that makes the CLI print tracebacks (as `kseg --verbose` does).
DEBUG_ENV = "KSEG_DEBUG"
TRACEBACK_HINT = "run again with `kseg --verbose ...` or KSEG_DEBUG=1 to see the traceback"


class KsegError(click.ClickException, ValueError):
    """A user-facing error: one line that names the file or value and the fix.

    Made while handling a Keras loading error whose text it quotes (`f"{path}: cannot
    load ({type(exc).__name__}: {exc})"`), it says what is wrong in kseg's words instead:
    Keras calls a truncated file "File not found".
    """

    def __init__(self, message):
        super().__init__(_reword(" ".join(str(message).split()), sys.exc_info()[1]))


class DataError(KsegError):
    """A dataset on disk is missing, malformed or inconsistent."""


class InternalError(click.ClickException):
    """A bug in kseg or a plugin, not a problem with the user's input: exit status 70
    (EX_SOFTWARE), so scripts can tell the two apart."""

    exit_code = 70

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


# errno -> (the problem, what to do next)
_DISK_FULL = "free some space, then run the same command again (what was written before is intact)"
_OS_PROBLEMS = {
    errno.ENOSPC: ("no space left on device", _DISK_FULL),
    errno.EDQUOT: ("disk quota exceeded", _DISK_FULL),
    errno.EACCES: ("permission denied", "choose a location you may read or write, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a location you may read or write, or fix its "
                  "permissions"),
    errno.EROFS: ("read-only file system", "choose a location on a writable disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EEXIST: ("exists and is in the way (a file where a folder is needed?)",
                   "remove it or choose another path"),
    errno.EISDIR: ("is a folder, not a file", "give a file name"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EIO: ("input/output error", "the disk or network file system is failing; check it"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or close other programs"),
    errno.ENFILE: ("too many open files in the system", "close other programs"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.ELOOP: ("too many levels of symbolic links", "fix the link"),
    errno.ENOMEM: ("out of memory", "lower --batch-size or --patch, or close other programs"),
}
_KERAS_LOAD_HINT = "replace it with a good copy, or train again"


def user_error(exc):
    """The one-line `click.ClickException` to show for `exc` (never raises).

    `KsegError` and other click exceptions come back as they are (a third-party message
    quoted in them is reworded, see `_reword`); OSError, image decoding, Keras loading
    and out-of-memory errors become a `KsegError` naming the file; anything else an
    `InternalError`.
    """
    if isinstance(exc, click.ClickException):
        if isinstance(exc, KsegError):
            exc.message = _reword(exc.message, exc.__context__)
        return exc
    exc = _first_of_chain(exc)
    message = describe(exc)
    if message is not None:
        return KsegError(message)
    return InternalError(f"internal error: {_one_line(exc)}{_where(exc)}. This is a bug in kseg "
                         f"or a plugin, not in your input; {TRACEBACK_HINT} and report it.")


def describe(exc):
    """One line for a failure the user or the machine can fix, or None for a bug."""
    if isinstance(exc, OSError) and not _is_image_error(exc) and _errno_of(exc) is not None:
        return describe_os_error(exc)
    if _is_image_error(exc):
        path = getattr(exc, "filename", None) or _filename_in_traceback(exc)
        return f"{_name(path)}: cannot decode image ({_one_line(exc)}); replace or remove the file"
    reason = keras_load_reason(exc)
    if reason is not None:
        return f"{_name(_filename_in_traceback(exc))}: {reason}; {_KERAS_LOAD_HINT}"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return (f"out of memory ({_one_line(exc)[:200]}); lower --batch-size or --patch, "
                f"or close other programs")
    if isinstance(exc, OSError):  # an OSError without errno, e.g. from h5py or a C library
        path = getattr(exc, "filename", None) or _filename_in_traceback(exc)
        return f"{_name(path)}: {_one_line(exc)}"
    return None


def describe_os_error(exc):
    """`path: problem; what to do` for an OSError (ENOSPC, EACCES, EROFS, ENOTDIR ...)."""
    code = _errno_of(exc)
    problem, todo = _OS_PROBLEMS.get(code, (exc.strerror or os.strerror(code or 0) or str(exc), None))
    path = exc.filename if exc.filename is not None else _filename_in_traceback(exc)
    if exc.filename2 is not None:
        path = f"{os.fsdecode(exc.filename)} -> {os.fsdecode(exc.filename2)}"
    text = f"{_name(path)}: {problem}"
    return f"{text}; {todo}" if todo else text


def keras_load_reason(exc, path=None):
    """Why Keras could not load a model file, in words for a user; None if `exc` is not
    a loading error. Keras says "File not found" for a file that exists but is not a
    zip, so the reason is decided here from the file itself when `path` is known."""
    failure = compat.keras_load_failure(exc)
    if failure is None:
        return None
    kind, detail = failure
    if kind == "not_a_zip":
        path = path or detail
        if path is not None and not os.path.exists(path):
            return "file not found"
        return "not a complete .keras file (truncated, damaged or another format)"
    if kind == "not_keras":
        return "not a Keras model file (a .keras file is expected)"
    if kind == "unsafe":
        return ("holds Python code (e.g. a Lambda layer) that Keras' safe mode refuses to load; "
                "use a model built from Keras layers only")
    return f"uses a layer or object kseg does not know ({detail})"


def debug_requested():
    """True when KSEG_DEBUG asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _reword(message, context):
    """Replace a third-party error quoted verbatim in `message` by its translation."""
    if context is None:
        return message
    quoted = " ".join(f"{type(context).__name__}: {context}".split())
    reason = keras_load_reason(context)
    if reason is None or quoted not in message:
        return message
    message = message.replace(quoted, reason)
    if message.rstrip(").").endswith(reason.rstrip(").")):  # the wrapper gave no advice of its own
        message = f"{message}; {_KERAS_LOAD_HINT}"
    return message


def _first_of_chain(exc):
    """The first failure of a chain (an error while cleaning up after a full disk is
    another full-disk error; the first one names the file that did not fit)."""
    while (isinstance(exc, OSError) and isinstance(exc.__context__, OSError)
           and not exc.__suppress_context__ and _errno_of(exc.__context__) == _errno_of(exc)):
        exc = exc.__context__
    return exc


def _errno_of(exc):
    return exc.errno if isinstance(getattr(exc, "errno", None), int) else None


def _is_image_error(exc):
    module = type(exc).__module__ or ""
    return module.startswith("PIL.") or type(exc).__name__ in ("DecompressionBombError",
                                                               "UnidentifiedImageError")


def _filename_in_traceback(exc):
    """Best effort: the file a failing library call was working on, read from the
    innermost frame that names one (`filepath`, `filename`, `path`, or a ZipFile)."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        local = frame.f_locals
        owner = local.get("self")
        candidates = [getattr(owner, "filename", None) if type(owner).__name__ == "ZipFile" else None,
                      local.get("filepath"), local.get("filename"), local.get("path")]
        for value in candidates:
            if isinstance(value, (str, os.PathLike)) and str(value):
                return value
    return None


def _name(path):
    return os.fsdecode(path) if path is not None else "(file not known)"


def _one_line(exc):
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(exc):
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
