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
    monkeypatch.setattr(registry, "_loaded", True)
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
