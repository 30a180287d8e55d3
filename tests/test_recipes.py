"""kseg.training.recipes: recipe and config files a user writes, and their one-line errors
(tests/test_api.py checks the precedence and the shipped recipes)."""

import json

import kseg_tiny
import pytest
from click.testing import CliRunner

from kseg.cli.main import main
from kseg.errors import KsegError
from kseg.training.recipes import load_recipe, read_settings, recipe_names, resolve

TINY = kseg_tiny.NAME


def test_a_recipe_file_of_ones_own(tmp_path):
    path = tmp_path / "fast.json"
    path.write_text(json.dumps({"description": "short runs", "epochs": 2, "patch": 64}))
    assert load_recipe(str(path)) == {"epochs": 2, "patch": 64, "recipe": "fast"}  # named by the file
    cfg, explicit = resolve(TINY, recipe=str(path), batch_size=4)
    assert (cfg.epochs, cfg.patch, cfg.batch_size, cfg.recipe) == (2, 64, 4, "fast")
    assert explicit == {"epochs", "patch", "batch_size"}


def test_a_runs_config_json_keys_are_accepted(tmp_path):
    """A run's config.json holds keys that are not settings; giving it back ignores them."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"arch": TINY, "epochs": 3, "data_path": "/data", "stride": 4, "spec": {},
                                "monitor_mode": "max", "description": "x"}))
    assert read_settings(path) == {"arch": TINY, "epochs": 3}
    cfg, _ = resolve(config=path)  # the architecture comes from the file
    assert (cfg.arch, cfg.epochs) == (TINY, 3)


def test_file_errors_name_the_option_and_the_file(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(KsegError) as err:
        read_settings(missing)
    assert str(err.value) == f"--config {missing}: cannot read (No such file or directory)."
    with pytest.raises(KsegError, match=rf"^--config {tmp_path}: cannot read \(Is a directory\)\.$"):
        read_settings(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 3,}')
    with pytest.raises(KsegError, match=rf"^--recipe {bad}: not valid JSON \(Expecting property name"):
        read_settings(bad, "--recipe")
    bad.write_text('"epochs"')
    with pytest.raises(KsegError, match=rf"^--config {bad}: expected a JSON object of settings, got str\.$"):
        read_settings(bad)


def test_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(KsegError) as err:
        load_recipe("camvdi")
    assert str(err.value) == (f"Unknown --recipe 'camvdi'. Choose one of: {', '.join(recipe_names())}, or "
                              f"give a JSON file.")


def test_an_architecture_is_needed_and_settings_must_exist():
    with pytest.raises(KsegError, match=r"^Give an architecture \(see `kseg models`\), or a --config that"):
        resolve(epochs=3)
    with pytest.raises(KsegError, match=r"^Unknown setting 'epoch'; see `kseg fit --help` for the settings"):
        resolve(TINY, epoch=3)


@pytest.mark.parametrize("args, error", [
    (["--recipe", "camvdi"], "Error: Unknown --recipe 'camvdi'. Choose one of: "),
    (["--config", "MISSING"], "Error: --config MISSING: cannot read (No such file or directory)."),
])
def test_the_cli_says_it_in_one_line(tmp_path, args, error):
    args = [str(tmp_path / "none.json") if a == "MISSING" else a for a in args]
    error = error.replace("MISSING", str(tmp_path / "none.json"))
    result = CliRunner().invoke(main, ["fit", TINY, *args, "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith(error)
    assert not (tmp_path / "runs").exists()
