"""The registry: decorator, lookup, filtering and plugin loading through entry points."""

import importlib.metadata

import pytest

import kseg
from kseg import registry
from kseg.errors import KsegError


@pytest.fixture
def scratch_registry(monkeypatch):
    """An empty, already-loaded registry, so tests can add entries freely."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOAD_ERRORS", {})
    monkeypatch.setattr(registry, "_FAILED_IMPORTS", set())
    monkeypatch.setattr(registry, "_loaded", True)
    monkeypatch.setattr(registry, "_builtins_loaded", True)
    return registry._REGISTRY


def test_decorator_returns_builder_unchanged_and_records_docstring(scratch_registry):
    def build(num_classes, input_shape):
        """A one-line description.

        More text that is not part of it.
        """
        return ("built", num_classes, input_shape)

    assert kseg.register_model("toy", stride=8)(build) is build
    entry = registry.get_entry("toy")
    assert (entry.description, entry.stride, entry.source) == ("A one-line description.", 8, "builtin")
    assert kseg.create_model("toy", num_classes=3) == ("built", 3, (None, None, 3))


def test_list_models_filters_with_fnmatch(scratch_registry):
    for name in ("unet", "unet_small", "deeplabv3"):
        kseg.register_model(name)(lambda **kw: None)
    assert kseg.list_models() == ["deeplabv3", "unet", "unet_small"]
    assert kseg.list_models("unet*") == ["unet", "unet_small"]
    assert kseg.list_models("nothing*") == []


def test_unknown_model_lists_the_known_ones(scratch_registry):
    kseg.register_model("alpha")(lambda **kw: None)
    kseg.register_model("beta")(lambda **kw: None)
    with pytest.raises(KsegError, match=r"Unknown model 'gamma'\. Known models: alpha, beta\."):
        kseg.create_model("gamma")


class FakeEntryPoint:
    """Just what load_plugins reads from an importlib.metadata.EntryPoint."""

    def __init__(self, name, value, dist, load):
        self.name, self.value, self.load = name, value, load
        self.dist = type("Dist", (), {"name": dist})()


def test_broken_plugin_is_reported_by_name_and_others_still_load(monkeypatch, scratch_registry):
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "BUILTIN_MODULES", ())

    def good():
        kseg.register_model("good_net")(lambda **kw: None)

    def broken():
        raise ImportError("needs a package that is not installed")

    eps = [
        FakeEntryPoint("bad", "bad_mod", "kseg-bad", broken),
        FakeEntryPoint("good", "good_mod", "kseg-good", good),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    with pytest.warns(UserWarning, match="'bad' \\(kseg-bad\\) failed to load"):
        assert kseg.list_models() == ["good_net"]
    assert registry.get_entry("good_net").source == "kseg-good"
    assert registry.plugin_errors() == {"bad": "kseg-bad: ImportError: needs a package that is not installed"}


def test_builtins_come_through_the_entry_point_group():
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="kseg.models")}
    assert names.get("unet") == "kseg.models.unet"
    assert names.get("deeplabv3") == "kseg.models.deeplabv3"
    for name in ("unet", "deeplabv3"):
        assert registry.get_entry(name).source == "builtin"


def test_a_name_is_taken_once_but_the_same_function_may_register_again(scratch_registry):
    def first(**kw):
        """One."""

    kseg.register_model("once")(first)
    kseg.register_model("once")(first)  # a module reloaded, a notebook cell run twice
    with pytest.raises(KsegError, match=r"'once' is already registered by builtin; register .*other"):
        kseg.register_model("once")(lambda **kw: None)
    assert registry.get_entry("once").builder is first


def test_a_plugin_is_isolated_from_sys_exit_and_refused_a_taken_name(monkeypatch, scratch_registry):
    monkeypatch.setattr(registry, "_loaded", False)
    kseg.register_model("unet")(lambda **kw: "builtin")

    def exits():
        raise SystemExit(2)

    def hijacks():
        kseg.register_model("unet")(lambda **kw: "hijacked")
        kseg.register_model("own_net")(lambda **kw: "own")

    eps = [FakeEntryPoint("a_exit", "m1", "kseg-exit", exits),
           FakeEntryPoint("a_hijack", "m2", "kseg-hijack", hijacks)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    with pytest.warns(UserWarning, match="'a_exit'"):
        assert kseg.list_models() == ["own_net", "unet"]
    assert kseg.create_model("unet") == "builtin" and kseg.create_model("own_net") == "own"
    errors = registry.plugin_errors()
    assert errors["a_exit"] == "kseg-exit: called sys.exit(2) while being imported"
    assert errors["a_hijack"] == ("kseg-hijack: model name 'unet' is already registered by builtin; "
                                  "this registration was refused")


def test_asking_for_a_model_of_a_failed_plugin_names_the_failure(monkeypatch, scratch_registry):
    monkeypatch.setattr(registry, "_loaded", False)

    def broken():
        raise ImportError("needs torchvision")

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [FakeEntryPoint("badplug", "m", "kseg-bad", broken)])
    with pytest.warns(UserWarning):
        with pytest.raises(KsegError, match=r"plugin 'badplug' failed to import: kseg-bad: ImportError: "
                                            r"needs torchvision"):
            registry.get_entry("badplug")
    with pytest.raises(KsegError, match=r"Unknown model 'other'.*plugin 'badplug' failed to import"):
        registry.get_entry("other")
