"""A run's files read back and checked before anything uses them.

config.json, state.json and history.csv are kseg's own files, but a disk, a copy or
a hand edit can damage them. Each is checked where it is read, so a damaged file is
one line naming the file and the field and what to do, never a crash later (`"stride":
"abc"` once reached `int()` inside `kseg predict`) and never a run started again from
scratch (`state.json` = `{}` once read as "epoch 0").
"""

import contextlib
import dataclasses
import json
import warnings
from pathlib import Path

from kseg.errors import KsegError
from kseg.validation import check_fields, number

CONFIG_ADVICE = "restore the file from a copy, or train the run again (kseg fit --name NEW)"
HISTORY_ADVICE = "restore the file from a copy, or start afresh with --name NEW"


@dataclasses.dataclass
class SavedConfig:
    """The keys of a run's config.json that kseg reads outside training (eval, predict,
    report, export); `kseg fit` checks the rest as FitConfig when it continues a run."""

    arch: str
    stride: int | None
    patch: int | None
    grid: list | None
    channels: int
    spec: dict
    data: str | None
    data_path: str | None
    epochs: int


@contextlib.contextmanager
def warnings_held():
    """Hold back the warnings of a checkpoint being loaded: shown when the load succeeds,
    dropped when it fails, since kseg then judges the file in one line of its own (a
    Lambda-layer model made Keras print 88 UserWarnings before it)."""
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")
        yield
    for w in held:  # reached only when the body did not raise
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def read_json(path):
    """A JSON file of a run; a missing or unparsable file is a one-line KsegError."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KsegError(f"{path} does not exist; is {Path(path).parent} a kseg run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KsegError(f"{path} is not valid JSON ({exc}); delete the run or restore the file.") from None


def check_config(config, path):
    """config.json's dict, its known keys checked (types; stride, patch, channels >= 1;
    grid two whole numbers >= 1)."""
    known = check_fields(SavedConfig, config, path, advice=CONFIG_ADVICE)
    try:
        for key in ("stride", "patch", "channels", "epochs"):
            if known.get(key) is not None:
                number(known[key], f"{path}: {key}", low=1, integer=True)
        grid = known.get("grid")
        if grid is not None and (len(grid) != 2 or not all(_whole(g) and g >= 1 for g in grid)):
            raise KsegError(f"{path}: grid must be two whole numbers >= 1 or null. Received: {grid!r}")
    except KsegError as exc:
        raise KsegError(f"{exc.message}; {CONFIG_ADVICE}") from None
    return config


def parse_history(path, columns):
    """history.csv's rows as dicts: `epoch` an int >= 1, each other cell of kseg's
    `columns` a number or empty (None); a column added by hand keeps its text. A damaged
    row is a KsegError naming the line and the column."""
    import csv

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        if "epoch" not in reader.fieldnames:
            raise KsegError(f"{path}: has no 'epoch' column (columns: {', '.join(reader.fieldnames)}); "
                            f"{HISTORY_ADVICE}")
        rows = [_row(row, path, line, columns) for line, row in enumerate(reader, start=2)]
    return rows


def _row(row, path, line, columns):
    out = {}
    for key, text in row.items():
        if key is None or text is None:  # more cells than columns, or fewer
            raise KsegError(f"{path}: line {line} does not match the header; {HISTORY_ADVICE}")
        if text == "" and key != "epoch":
            out[key] = None
            continue
        if key not in columns:  # not kseg's: kept as written, a number where it reads as one
            out[key] = _number_or_text(text)
            continue
        try:
            value = int(text) if key == "epoch" else float(text)
        except ValueError:
            raise KsegError(f"{path}: line {line}: {key} is not a number ({text!r}); "
                            f"{HISTORY_ADVICE}") from None
        if key == "epoch" and value < 1:
            raise KsegError(f"{path}: line {line}: epoch must be >= 1. Received: {text!r}; {HISTORY_ADVICE}")
        out[key] = value
    return out


def _number_or_text(text):
    try:
        return float(text)
    except ValueError:
        return text


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)
