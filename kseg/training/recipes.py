"""Recipes and config files: named starting points for `FitConfig`, as small JSON files.

A recipe is a flat JSON object of FitConfig fields plus an optional "description",
shipped in kseg/training/recipes/ (`study`: the defaults; `camvid`: the best kseg
knows for CamVid from scratch). `--config FILE` takes a user's file of the same form;
a run's own config.json is one, so giving it back reproduces the run. Precedence:
FitConfig defaults < recipe < config file < explicit options.
"""

import dataclasses
import json
import os
from pathlib import Path

from kseg.errors import KsegError
from kseg.training.config import FitConfig, check_types

RECIPE_DIR = Path(__file__).with_suffix("")  # kseg/training/recipes/
# Keys a run's config.json holds besides the settings; accepted and ignored.
RUN_ONLY_KEYS = ("description", "data_path", "spec", "stride", "monitor_mode")


def recipe_names():
    """The shipped recipes, e.g. ['camvid', 'study']."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def read_settings(path, what="--config"):
    """A flat JSON object of FitConfig fields; errors name the file and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise KsegError(f"{what} {path}: cannot read ({exc.strerror or exc}).") from None
    except json.JSONDecodeError as exc:
        raise KsegError(f"{what} {path}: not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise KsegError(f"{what} {path}: expected a JSON object of settings, got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(data) - names - set(RUN_ONLY_KEYS))
    if unknown:
        raise KsegError(f"{what} {path}: unknown key {unknown[0]!r}; known keys are FitConfig's fields "
                        f"(see `kseg fit --help`).")
    settings = {k: v for k, v in data.items() if k in names}
    check_types(settings, where=f"{what} {path}: ")
    return settings


def load_recipe(name):
    """Settings of a shipped recipe (by name) or a recipe file (by path)."""
    path = RECIPE_DIR / f"{name}.json"
    if not path.is_file():
        if not Path(name).is_file():
            raise KsegError(f"Unknown --recipe {name!r}. Choose one of: {', '.join(recipe_names())}, "
                            f"or give a JSON file.")
        path = Path(name)
    settings = read_settings(path, "--recipe")
    settings.setdefault("recipe", Path(name).stem)
    return settings


def resolve(arch=None, recipe=None, config=None, **options):
    """`(FitConfig, explicit)`: defaults < recipe < config file < `options` (each one set).

    `explicit` names the fields a source set on purpose: a continued run must match
    them (see kseg.training.session).
    """
    for key, value in (("recipe", recipe), ("config", config)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise KsegError(f"{key} must be a name or a JSON file's path. Received: {value!r:.80}")
    settings = {}
    if recipe:
        settings.update(load_recipe(recipe))
    if config:
        settings.update(read_settings(config))
    settings.update(options)
    if arch is not None:
        settings["arch"] = arch
    if not settings.get("arch"):
        raise KsegError("Give an architecture (see `kseg models`), or a --config that names one.")
    names = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise KsegError(f"Unknown setting {unknown[0]!r}; see `kseg fit --help` for the settings.")
    settings.setdefault("recipe", "study")
    return FitConfig(**settings).validate(), set(settings) - {"arch", "recipe"}
