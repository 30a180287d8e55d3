"""Parsers for the small text values users type: sizes, ranges, key=value pairs.

One parser per shape, shared by the command line, recipe files and the Python API;
each error names the option and shows the form it expects.
"""

import json
import math

from kseg.errors import KsegError


def parse_hw(value, name="--size", minimum=1):
    """'384x480' (or (384, 480)) -> (384, 480); both sides >= `minimum`."""
    try:
        if isinstance(value, str):
            h, w = (int(v) for v in value.lower().split("x"))
        else:
            h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise KsegError(f"{name} must look like 384x480. Received: {value!r}") from None
    if min(h, w) < minimum:
        raise KsegError(f"{name} needs both sides >= {minimum}. Received: {value!r}")
    return h, w


def parse_range(value, name="--scale"):
    """'0.5:2.0' (or [0.5, 2.0]) -> (0.5, 2.0), with 0 < low <= high."""
    try:
        parts = value.split(":") if isinstance(value, str) else list(value)
        low, high = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise KsegError(f"{name} must look like 0.5:2.0. Received: {value!r}") from None
    if not 0 < low <= high < math.inf:
        raise KsegError(f"{name} needs 0 < low <= high, both finite. Received: {value!r}")
    return low, high


def parse_key_values(items, name="--model-arg"):
    """['depth=3', 'dropout=0.1', 'name=x'] -> {'depth': 3, 'dropout': 0.1, 'name': 'x'} (JSON values)."""
    out = {}
    for item in items:
        if not isinstance(item, str):
            raise KsegError(f"{name} must be key=value text. Received: {item!r}")
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KsegError(f"{name} must be key=value. Received: {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare word is a string
    return out
