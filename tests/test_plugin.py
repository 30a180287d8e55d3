"""The example plugin, installed for real, shows up in `kseg models` and trains."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_reliability import FakeEntryPoint, plugins  # noqa: F401  (plugins: a fixture)

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "kseg-fcn"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip-install the example plugin into a private folder and return its PYTHONPATH env."""
    target = tmp_path_factory.mktemp("site")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(target),
        str(PLUGIN),
    ]
    build = tmp_path_factory.mktemp("build")
    subprocess.run(cmd, check=True, capture_output=True, cwd=build, timeout=300)
    assert list(target.glob("kseg_fcn-*.dist-info/entry_points.txt")), "pip installed no entry points"
    env = dict(os.environ, PYTHONPATH=str(target), KERAS_BACKEND="tensorflow")
    return env


def kseg_cli(env, *args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "kseg", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_plugin_appears_in_kseg_models(plugin_site, tmp_path):
    done = kseg_cli(plugin_site, "models", "fcn", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (info,) = json.loads(done.stdout)["models"]
    assert info["name"] == "fcn" and info["source"] == "kseg-fcn"
    assert info["params"] > 0 and info["description"].startswith("FCN-8s")


def test_plugin_trains_with_kseg_fit(plugin_site, tmp_path):
    from kseg.data.synth import write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, n_train=1, n_val=1, n_test=0, size=(64, 64), seed=0)
    done = kseg_cli(
        plugin_site,
        "fit",
        "fcn",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "1",
        "--patch",
        "64",
        "--grid",
        "1x1",
        "--runs",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "runs" / "fcn"
    assert json.loads((run / "config.json").read_text())["arch"] == "fcn"
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # header + one epoch
    assert (run / "best.keras").stat().st_size > 0


def test_plugin_absent_without_install(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.pop("PYTHONPATH", None)
    done = kseg_cli(env, "models", "fcn", "--json", "--no-params", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["models"] == []


@pytest.mark.usefixtures("plugins")  # a fresh registry that loads the entry points again
def test_a_broken_plugin_is_reported_on_stderr_and_the_builtins_still_listed(monkeypatch):
    """An entry point whose import raises: `kseg models` exits 0, lists the built-in
    networks on stdout, and names the plugin and its error on stderr, in one line."""
    import importlib.metadata

    from click.testing import CliRunner

    from kseg.cli.main import main

    def broken():  # a path with brackets: not Rich markup in kseg's message
        open("/nonexistent/kseg-broken/weights[/v2].pth")

    entry_point = FakeEntryPoint("kseg_broken", "kseg-broken", broken)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [entry_point])
    result = CliRunner().invoke(main, ["models", "--no-params"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("unet", "deeplabv3", "deeplabv3plus"):
        assert f" {name} " in result.stdout and " builtin " in result.stdout, result.stdout
    assert "kseg_broken" not in result.stdout and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("plugin 'kseg_broken' failed to load: kseg-broken: FileNotFoundError: "), line
    assert line.endswith("No such file or directory: '/nonexistent/kseg-broken/weights[/v2].pth'"), line
