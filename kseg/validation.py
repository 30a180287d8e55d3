"""Values checked against a dataclass's annotations: the one way kseg checks what it reads.

Settings a user types (`FitConfig`, a config file, `AugmentConfig`) and files kseg reads
back (`state.json` as `RunState`, a run's `config.json`) are plain JSON values until
they are checked here. `check_fields(cls, data, where)` refuses a value that is not a
JSON object, a missing required field and a value whose type does not fit the field's
annotation (`int | None` takes a whole number or null), with one line naming `where`
(the file or the option) and the field. Numbers must be finite: `inf` and `nan` fit no
setting kseg has (a JSON file can hold them as `Infinity` / `NaN`).
"""

import dataclasses
import math
import numbers
import typing

from kseg.errors import KsegError

# What each annotated type accepts; tuples (grid, scale) also come as text ("4x4", "0.5:2").
TYPE_WORDS = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text",
              tuple: "text or a list", list: "a list", dict: "an object", type(None): "null"}


def check_fields(cls, data, where, required=(), advice=""):
    """`data` (a dict) checked against the fields of dataclass `cls`; returns the known keys.

    Unknown keys are dropped (a newer kseg may add fields). `where` starts each message
    (`runs/unet/state.json`), `advice` ends it (what to do next).
    """
    tail = f"; {advice}" if advice else ""
    if not isinstance(data, dict):
        raise KsegError(f"{where}: expected a JSON object, got {json_kind(data)}{tail}")
    missing = [name for name in required if name not in data]
    if missing:
        raise KsegError(f"{where}: the field {missing[0]!r} is missing{tail}")
    kinds = field_kinds(cls)
    known = {key: value for key, value in data.items() if key in kinds}
    for key, value in known.items():
        allowed = kinds[key]
        if not any(fits(value, kind) for kind in allowed):
            wanted = " or ".join(TYPE_WORDS.get(kind, kind.__name__) for kind in allowed)
            raise KsegError(f"{where}: {key} must be {wanted}. Received: {short(value)}{tail}")
    return known


def field_kinds(cls):
    """{field name: tuple of accepted types}, from annotations such as `int | None`."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        out[field.name] = tuple(typing.get_origin(k) or k for k in (typing.get_args(kind) or (kind,)))
    return out


def fits(value, kind):
    """Does `value` (a JSON value or a Python one) fit the type `kind`?"""
    if kind is bool or isinstance(value, bool):  # bool is an int to Python, not to a user
        return kind is bool and isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    if kind is tuple:
        return isinstance(value, (tuple, list, str))
    return isinstance(value, kind)


def number(value, name, low=None, high=None, low_open=False, integer=False):
    """`value` as a finite number (an int with `integer`) in [low, high] (low excluded with
    `low_open`), else a KsegError naming `name` and the range."""
    kind = int if integer else float
    if not fits(value, kind):
        raise KsegError(f"{name} must be {TYPE_WORDS[kind]}. Received: {short(value)}")
    below = value <= low if low_open else value < low if low is not None else False
    if below or (high is not None and value > high):
        left = "(" if low_open else "["
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise KsegError(f"{name} must be in {span}. Received: {short(value)}")
    return value


def json_kind(value):
    """A JSON value's kind in words: 'a list', 'text', 'null' ..."""
    for kind, words in ((bool, "true or false"), (dict, "an object"), (list, "a list"), (str, "text"),
                        (numbers.Number, "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return words
    return type(value).__name__


def short(value, limit=80):
    """repr(value), cut to `limit` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
