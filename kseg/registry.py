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
BUILTIN_MODULES = ("kseg.models.unet", "kseg.models.deeplabv3", "kseg.models.deeplabv3plus",
                   "kseg.models.applications", "kseg.models.lraspp", "kseg.models.ddrnet")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: callable
    description: str
    # Every input side must be a multiple of this; full frames are padded to it.
    stride: int
    # "builtin", or the name of the distribution that registered the model.
    source: str = "builtin"
    # A family of many variants (the keras.applications encoder-decoder pairs): listed and
    # built by name like any model, left out of `kseg fit --all` and `kseg bench`'s default.
    family: str | None = None


_REGISTRY = {}
_LOAD_ERRORS = {}  # entry-point name -> one-line reason it failed to load or was refused
_FAILED_IMPORTS = set()  # entry-point names whose import raised
_loaded = False
_builtins_loaded = False
_current_source = "builtin"
_current_plugin = None  # the entry point being imported by load_plugins, if any


def register_model(name, stride=32, description=None, family=None):
    """Register `builder(num_classes, input_shape, **kwargs) -> keras.Model` as `name`.

    Returns the builder unchanged. The description defaults to the first line of its
    docstring. A name is taken once: kseg's built-in networks are registered first and
    keep their names; a plugin that registers a taken name is refused (the reason is in
    `plugin_errors()`), and any other second registration raises KsegError.
    """

    def decorator(builder):
        if _current_plugin is None and not _is_builtin(builder):
            _load_builtins()  # so that a built-in name is taken before user code asks for it
        doc = (builder.__doc__ or "").strip().splitlines()
        entry = ModelEntry(
            name=name,
            builder=builder,
            description=description or (doc[0] if doc else ""),
            stride=stride,
            source=_current_source,
            family=family,
        )
        taken = _REGISTRY.get(name)
        if taken is not None and not _same_function(taken.builder, builder):
            reason = f"model name {name!r} is already registered by {taken.source}"
            if _current_plugin is None:
                raise KsegError(f"{reason}; register {builder.__module__}.{builder.__qualname__} "
                                f"under another name.")
            _record_error(_current_plugin, _current_source, f"{reason}; this registration was refused")
            return builder
        _REGISTRY[name] = entry
        return builder

    return decorator


def load_plugins():
    """Import kseg's built-in networks, then every other module of the `kseg.models`
    entry-point group, once, in the order of their names.

    A plugin is isolated: whatever its import raises (SystemExit included, but not
    KeyboardInterrupt) is recorded in `plugin_errors()` and warned about by name, the
    models it registered before failing are dropped, and the other plugins still load.
    """
    global _loaded, _current_source, _current_plugin
    if _loaded:
        return
    _loaded = True
    _load_builtins()
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(entry_points, key=lambda ep: (_dist_name(ep) != "kseg", ep.name)):
        dist = _dist_name(ep)
        _current_source = "builtin" if dist == "kseg" else dist
        _current_plugin = ep.name
        before = set(_REGISTRY)
        try:
            ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not take kseg down
            for name in set(_REGISTRY) - before:
                del _REGISTRY[name]
            reason = _import_failure(exc)
            _FAILED_IMPORTS.add(ep.name)
            _record_error(ep.name, dist, reason)
            warnings.warn(f"kseg plugin {ep.name!r} ({dist}) failed to load: {reason}", stacklevel=2)
        finally:
            _current_source, _current_plugin = "builtin", None


def _load_builtins():
    """Import kseg's own networks (directly: a source tree that was never installed has
    no entry points), before any plugin can take their names."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _is_builtin(builder):
    return getattr(builder, "__module__", "").startswith("kseg.")


def _same_function(a, b):
    # The same function defined again (a module reloaded, a notebook cell run twice).
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None), getattr(b, "__qualname__", None))


def _dist_name(ep):
    return getattr(ep.dist, "name", None) or "unknown"


def _import_failure(exc):
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) while being imported"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _record_error(plugin, dist, reason):
    earlier = _LOAD_ERRORS.get(plugin)
    _LOAD_ERRORS[plugin] = f"{earlier}; {reason}" if earlier else f"{dist}: {reason}"


def plugin_errors():
    """`{entry-point name: reason}` for plugins that failed to import or were refused a name."""
    load_plugins()
    return dict(_LOAD_ERRORS)


def list_models(pattern="*"):
    """Sorted names of registered models that match the fnmatch `pattern`."""
    load_plugins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def core_models():
    """The registered names outside a family, sorted: what `kseg fit --all` trains and
    `kseg bench` measures when no network is named."""
    return [n for n in list_models() if n not in _REGISTRY or _REGISTRY[n].family is None]


def get_entry(name):
    """The `ModelEntry` for `name`; unknown names fail with the list of known ones."""
    load_plugins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _FAILED_IMPORTS:
        raise KsegError(f"Model {name!r} is not available: plugin {name!r} failed to import: "
                        f"{_LOAD_ERRORS[name]}. Fix or uninstall the plugin.")
    known = ", ".join(sorted(_REGISTRY)) or "none"
    failed = "; ".join(f"plugin {n!r} failed to import: {_LOAD_ERRORS[n]}" for n in sorted(_FAILED_IMPORTS))
    raise KsegError(f"Unknown model {name!r}. Known models: {known}." + (f" ({failed})" if failed else ""))


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
