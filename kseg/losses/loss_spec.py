"""Loss specs: the `--loss` strings, parsed without importing Keras.

A spec is one or more terms joined by "+" or ",", each a name with an optional positive
weight after a colon (1 when left out):

    "ce"                 -> (("ce", 1.0),)
    "ce+dice"            -> (("ce", 1.0), ("dice", 1.0))
    "ce:1,lovasz:0.5"    -> (("ce", 1.0), ("lovasz", 0.5))

Names are case-insensitive and spaces around parts are ignored. Anything else (an unknown
name, a weight that is not a finite number > 0, a name given twice, an empty spec or an
empty term) raises a one-line KsegError that quotes the bad part and lists the names.
"""

import math
import re

from kseg.errors import KsegError

LOSS_NAMES = ("ce", "dice", "lovasz", "focal", "tversky")
_EXAMPLES = "e.g. 'ce', 'ce+dice' or 'ce:1,lovasz:0.5'"


def parse_loss(spec):
    """`spec` string -> tuple of (name, weight) pairs, in the order given.

    Raises KsegError naming the bad part and the allowed names.
    """
    if not isinstance(spec, str):
        raise KsegError(f"A loss spec is a string ({_EXAMPLES}). Received: {spec!r}")
    if not spec.strip():
        raise KsegError(f"Empty loss spec {spec!r}: give one or more of {', '.join(LOSS_NAMES)} "
                        f"({_EXAMPLES}).")
    terms, seen = [], set()
    for part in re.split(r"[+,]", spec):
        name, weight = _parse_term(part, spec)
        if name in seen:
            raise KsegError(f"Loss {name!r} appears twice in loss spec {spec!r}; give each term once "
                            f"with its weight ({_EXAMPLES}).")
        seen.add(name)
        terms.append((name, weight))
    return tuple(terms)


def _parse_term(part, spec):
    """'name' or 'name:weight' -> (name, float weight)."""
    text = part.strip()
    if not text:
        raise KsegError(f"Empty term in loss spec {spec!r} (a stray '+' or ','?). "
                        f"Terms are {', '.join(LOSS_NAMES)} ({_EXAMPLES}).")
    name, colon, weight_text = text.partition(":")
    name = name.strip().lower()
    if name not in LOSS_NAMES:
        raise KsegError(f"Unknown loss {name!r} in loss spec {spec!r}. Choose from: {', '.join(LOSS_NAMES)}.")
    if not colon:
        return name, 1.0
    try:
        weight = float(weight_text.strip())
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise KsegError(f"Bad weight {weight_text.strip()!r} for loss {name!r} in loss spec {spec!r}: "
                        f"expected a finite number > 0 ({_EXAMPLES}).")
    return name, weight


def as_terms(spec):
    """A spec string, or a sequence of (name, weight) pairs (as in a saved config), -> parsed terms."""
    if isinstance(spec, str):
        return parse_loss(spec)
    try:
        text = ",".join(f"{name}:{float(weight)!r}" for name, weight in spec)
    except (TypeError, ValueError):
        raise KsegError(f"Loss terms must be a spec string ({_EXAMPLES}) or (name, weight) pairs. "
                        f"Received: {spec!r}") from None
    return parse_loss(text)


def format_loss(terms):
    """Parsed terms -> the canonical spec string, e.g. 'ce:1,lovasz:0.5'."""
    return ",".join(f"{name}:{weight:g}" for name, weight in terms)
