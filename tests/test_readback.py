"""Files read back are checked by their dataclass: a damaged state.json, config.json or
history.csv stops the command with one line naming the file and the field, says how to
go on, and changes no file; a run is never started again over its checkpoints.
Checkpoints kseg refuses print none of Keras' warnings; `kseg report` leaves out a run
whose best.keras is damaged, as `kseg eval` does.
"""

import json
import shutil
import warnings

import pytest
from oneline import FIT_ARGS, TINY, cli, error_line, fit_tiny, snapshot


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    return fit_tiny(data_dir, tmp_path_factory.mktemp("runs"))


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "runs" / TINY)


def fit_again(run, data_dir, *more):
    return cli("fit", TINY, "--data", data_dir, "--runs", run.parent, "--epochs", "2", *FIT_ARGS, *more)


STATES = {
    "empty": ({}, "the field 'status' is missing"),
    "list": ([], "expected a JSON object, got a list"),
    "epoch-text": ({"status": "running", "epoch": "abc"}, "epoch must be a whole number"),
    "epoch-negative": ({"status": "running", "epoch": -3}, "epoch must be in [0"),
    "status": ({"status": "happy", "epoch": 1}, "status must be one of"),
    "lr-text": ({"status": "running", "epoch": 1, "lr": "fast"}, "lr must be a finite number or null"),
    "lr-changes": ({"status": "running", "epoch": 1, "lr_changes": [{"epoch": 2}]},
                   "lr_changes[0] must be an object with epoch and lr"),
    "plateau": ({"status": "running", "epoch": 1, "plateau": {"wait": -1, "cooldown_counter": 0, "best": 1}},
                "plateau.wait must be in [0"),
}


@pytest.mark.parametrize("case", sorted(STATES))
def test_a_damaged_state_json_stops_fit_and_changes_nothing(run, data_dir, case):
    """`{}` once read as "epoch 0": the same command started afresh and replaced
    best.keras, last.keras, history.csv and config.json."""
    content, words = STATES[case]
    (run / "state.json").write_text(json.dumps(content))
    before = snapshot(run)
    line = error_line(fit_again(run, data_dir), run / "state.json")
    assert words in line and "--name NEW" in line
    assert snapshot(run) == before


def test_a_missing_state_json_beside_checkpoints_is_not_a_new_start(run, data_dir):
    (run / "state.json").unlink()
    before = snapshot(run)
    line = error_line(fit_again(run, data_dir), run)
    assert "has no state.json but holds last.keras, best.keras, history.csv" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("edit, words", [
    (lambda c: {**c, "stride": "abc"}, "stride must be a whole number or null"),
    (lambda c: {**c, "grid": [2, 0]}, "grid must be two whole numbers >= 1"),
    (lambda c: {**c, "spec": "camvid"}, "spec must be an object"),
    (lambda c: [c], "expected a JSON object, got a list"),
])
def test_a_damaged_config_json_is_one_line_in_predict_and_eval(run, data_dir, tmp_path, edit, words):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(edit(config)))
    before = snapshot(run)
    line = error_line(cli("predict", run, data_dir / "test", "--out", tmp_path / "out"), run / "config.json")
    assert words in line and "restore the file" in line
    result = cli("eval", run)
    assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output
    assert snapshot(run) == before and not (tmp_path / "out").exists()


def test_a_damaged_config_json_stops_a_resumed_fit(run, data_dir):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "augment": {"rotation": "abc"}}))
    before = snapshot(run)
    line = error_line(fit_again(run, data_dir), run / "config.json")
    assert "augment: rotation must be a finite number" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("text, words", [
    ("epoch,loss\nx,0.5\n", "line 2: epoch is not a number"),
    ("epoch,loss\n1,fast\n", "line 2: loss is not a number"),
    ("epoch,loss\n1,0.5,9\n", "line 2 does not match the header"),
    ("loss\n0.5\n", "has no 'epoch' column"),
])
def test_a_damaged_history_csv_stops_fit_in_one_line(run, data_dir, text, words):
    (run / "history.csv").write_text(text)
    before = snapshot(run)
    line = error_line(fit_again(run, data_dir), run / "history.csv")
    assert words in line
    assert snapshot(run) == before


def lambda_model(path):
    import keras

    image = keras.Input((None, None, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0)(image)
    x = keras.layers.Conv2D(12, 1, name="segmentation_output")(x)
    keras.Model(image, x, name=TINY).save(path)


@pytest.mark.parametrize("which", ["best", "last"])
def test_a_lambda_checkpoint_gives_kseg_one_line_and_no_keras_warning(run, data_dir, tmp_path, which):
    """best.keras through predict, last.keras through a resumed fit: Keras' warnings about
    the file (once 88 UserWarnings) are dropped, kseg's one line is all there is."""
    lambda_model(run / f"{which}.keras")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        if which == "best":
            result = cli("predict", run, data_dir / "test", "--out", tmp_path / "out")
        else:
            result = fit_again(run, data_dir)
    error_line(result, run / f"{which}.keras")
    assert [str(w.message)[:80] for w in shown] == []


def test_report_leaves_out_a_run_with_a_truncated_best_keras(trained, tmp_path):
    runs = tmp_path / "runs"
    for name in ("a_good", "b_broken"):
        shutil.copytree(trained, runs / name)
    best = runs / "b_broken" / "best.keras"
    best.write_bytes(best.read_bytes()[:300])
    result = cli("report", "--runs", runs, "--samples", "1")
    assert result.exit_code == 0, result.output
    assert "b_broken: cannot evaluate, left out of the report" in result.output
    assert "not a complete .keras file" in result.output
    report = (runs / "report" / "report.md").read_text()
    assert "a_good" in report and "b_broken" not in report


def test_report_goes_on_past_damaged_files_it_can_do_without(trained, tmp_path):
    """eval.json (derived: made again), history.csv (left out of the curves) and env.json
    (description only) damaged in one run: the report is written, with a line for each."""
    runs = tmp_path / "runs"
    run = shutil.copytree(trained, runs / "damaged")
    (run / "eval.json").write_text("[]")
    (run / "history.csv").write_text("epoch,loss\nx,1\n")
    (run / "env.json").write_text("[1, 2]")
    result = cli("report", "--runs", runs, "--samples", "0")
    assert result.exit_code == 0, result.output
    assert "eval.json: expected a JSON object" in result.output and "evaluating again" in result.output
    assert "left out of the learning curves" in result.output
    assert "env.json: expected a JSON object" in (runs / "report" / "report.md").read_text()
    assert isinstance(json.loads((run / "eval.json").read_text())["splits"], dict)


def test_extending_a_run_whose_last_keras_is_damaged_changes_nothing(run, data_dir):
    """Refused when the checkpoint is loaded, after config.json would once have been given
    the new --epochs: every file keeps its md5."""
    (run / "last.keras").write_bytes((run / "last.keras").read_bytes()[:300])
    before = snapshot(run)
    error_line(fit_again(run, data_dir, "--epochs", "3"), run / "last.keras")
    assert snapshot(run) == before
