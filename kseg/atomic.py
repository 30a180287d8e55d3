"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or a kill at any moment leaves either the old file or the new one, never a
truncated one. `os.replace` is atomic on POSIX and Windows within one file system.
A failed write (a full disk, a read-only folder) leaves the old file too, removes the
temporary one, and raises the OSError with the target's name in `filename` (a failing
`write()` or `fsync()` carries no file name of its own), so the one line the CLI prints
names the file that did not fit.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path`.

    For writers that want a file name (``model.save(tmp)``). The temporary name keeps
    the suffix, since Keras checks it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal mode
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            exc.filename = os.fspath(path)
        raise
    finally:
        with contextlib.suppress(OSError):  # the disk may be gone; the temp file is not ours to keep
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def cache_dir():
    """kseg's cache of generated data: $KSEG_CACHE, else ~/.cache/kseg."""
    return Path(os.environ.get("KSEG_CACHE") or Path.home() / ".cache" / "kseg")


def cached_folder(final, fill):
    """The folder `final`, made on first use by `fill(tmp)` into a temporary sibling that
    is then renamed: a crash or a concurrent first use never leaves a half-written one."""
    final = Path(final)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def json_default(value):
    """`json.dumps(default=...)` for kseg's files and `--json` output: numpy arrays and
    scalars as lists/numbers, paths as strings; anything else is a bug, so it raises."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())
