"""The model registry: a dict, a decorator, and an entry-point loader.

Architectures arrive through the entry-point group ``kseg.models``. Each entry point
names a module; importing it runs its ``@register_model`` decorators. kseg's own
networks are declared the same way in setup.cfg, so built-ins and plugins share one
code path.
"""

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import warnings

from kseg.errors import KsegError

ENTRY_POINT_GROUP = "kseg.models"
# Modules of the built-in networks, imported directly when kseg runs from a source
# tree that was never installed (no entry points exist then).
BUILTIN_MODULES = ("kseg.models.unet", "kseg.models.deeplabv3")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: callable
    description: str
    # Every input side must be a multiple of this; full frames are padded to it.
    stride: int
    # "builtin", or the name of the distribution that registered the model.
    source: str = "builtin"


_REGISTRY = {}
_LOAD_ERRORS = {}  # entry-point name -> one-line reason it failed to load
_loaded = False
_current_source = "builtin"


def register_model(name, stride=32, description=None):
    """Register `builder(num_classes, input_shape, **kwargs) -> keras.Model` as `name`.

    Returns the builder unchanged. The description defaults to the first line of its
    docstring.
    """

    def decorator(builder):
        doc = (builder.__doc__ or "").strip().splitlines()
        entry = ModelEntry(
            name=name,
            builder=builder,
            description=description or (doc[0] if doc else ""),
            stride=stride,
            source=_current_source,
        )
        _REGISTRY[name] = entry
        return builder

    return decorator


def load_plugins():
    """Import every module of the `kseg.models` entry-point group, once.

    A plugin that fails to import is recorded in `plugin_errors()` and warned about
    by name; the others still load.
    """
    global _loaded, _current_source
    if _loaded:
        return
    _loaded = True
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    names = {ep.value for ep in entry_points}
    for module in BUILTIN_MODULES:
        if module not in names:
            importlib.import_module(module)
    for ep in sorted(entry_points, key=lambda ep: ep.name):
        dist = getattr(ep.dist, "name", None) or "unknown"
        _current_source = "builtin" if dist == "kseg" else dist
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            _LOAD_ERRORS[ep.name] = f"{dist}: {reason}"
            warnings.warn(f"kseg plugin {ep.name!r} ({dist}) failed to load: {reason}", stacklevel=2)
        finally:
            _current_source = "builtin"


def plugin_errors():
    """`{entry-point name: reason}` for plugins that failed to import."""
    load_plugins()
    return dict(_LOAD_ERRORS)


def list_models(pattern="*"):
    """Sorted names of registered models that match the fnmatch `pattern`."""
    load_plugins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name):
    """The `ModelEntry` for `name`; unknown names fail with the list of known ones."""
    load_plugins()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KsegError(f"Unknown model {name!r}. Known models: {known}.")
    return _REGISTRY[name]


def create_model(name, num_classes=12, input_shape=(None, None, 3), **kwargs):
    """Build the registered model `name`; it returns logits unless told otherwise."""
    entry = get_entry(name)
    return entry.builder(num_classes=num_classes, input_shape=input_shape, **kwargs)


def model_info(name, count_params=True):
    """A dict for `kseg models`: name, source, stride, description, parameters."""
    entry = get_entry(name)
    info = {
        "name": entry.name,
        "source": entry.source,
        "stride": entry.stride,
        "description": entry.description,
    }
    if count_params:
        info["params"] = int(create_model(name).count_params())
    return info
