"""Shared by the reliability tests: the CLI in-process, its one error line, file snapshots."""

import hashlib
from pathlib import Path

import kseg_tiny
from click.testing import CliRunner

from kseg.cli.main import main

TINY = kseg_tiny.NAME
FIT_ARGS = ("--patch", "32", "--grid", "2x2", "--batch-size", "2")


def fit_tiny(data_dir, runs, epochs=1):
    """A run of the tiny network on `data_dir` in `runs`; its folder."""
    result = cli("fit", TINY, "--data", data_dir, "--runs", runs, "--epochs", epochs, *FIT_ARGS)
    assert result.exit_code == 0, result.output
    return Path(runs) / TINY


def cli(*args):
    """`kseg ARGS` through click's CliRunner (stderr mixed into output)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result, named, status=1):
    """The one 'Error: ...' line of `result`: the last line, naming `named`, no traceback."""
    out = result.output
    assert result.exit_code == status, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out
    assert out.rstrip("\n").splitlines()[-1] == errors[0], out
    assert str(named) in errors[0], out
    return errors[0]


def snapshot(root):
    """{relative path: md5} of every file under `root`: to show that nothing changed."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
