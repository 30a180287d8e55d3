"""kseg.runs.RunDir: reading a run directory, including hand-made and damaged ones
(tests/test_resume.py checks the commit order and `recover`, tests/test_errors.py the
checkpoints that do not load)."""

import json
import math

import kseg_tiny
import pytest
from click.testing import CliRunner

from kseg.cli.main import main
from kseg.errors import KsegError
from kseg.runs import HISTORY_COLUMNS, RunDir, RunState


def test_history_round_trips_every_float_exactly(tmp_path):
    run = RunDir(tmp_path)
    rows = [{"epoch": 1, "loss": 0.1 + 0.2, "accuracy": 1 / 3, "val_loss": None, "lr": 1e-3, "seconds": 2.5,
             "not_a_column": 7},
            {"epoch": 2, "loss": math.inf, "miou": 5e-324}]
    run.write_history(rows)
    lines = run.history_path.read_text().splitlines()
    assert lines[0] == ",".join(HISTORY_COLUMNS)  # the columns, and only those, in their order
    back = run.history()
    assert back[0]["loss"] == 0.1 + 0.2 and back[0]["accuracy"] == 1 / 3 and back[0]["lr"] == 1e-3
    assert back[0]["val_loss"] is None and "not_a_column" not in back[0]
    assert back[1]["loss"] == math.inf and back[1]["miou"] == 5e-324 and back[1]["accuracy"] is None
    assert [r["epoch"] for r in back] == [1, 2] and all(isinstance(r["epoch"], int) for r in back)


def test_a_history_edited_by_hand_keeps_its_text(tmp_path):
    run = RunDir(tmp_path)
    run.history_path.write_text("epoch,loss,note\n1,0.5,warm-up\n")
    assert run.history() == [{"epoch": 1, "loss": 0.5, "note": "warm-up"}]
    assert RunDir(tmp_path / "empty").history() == []  # no history.csv: no epoch yet


def test_a_hand_made_run_has_defaults(tmp_path):
    """A run made by hand (config.json and best.keras, as some tests and users do)."""
    run = RunDir(tmp_path / "mine")
    run.path.mkdir()
    run.config_path.write_text(json.dumps({"arch": kseg_tiny.NAME}))
    assert repr(run) == f"RunDir({str(run.path)!r})" and run.name == "mine"
    assert not run.exists()
    assert run.optional_state() == RunState(status="unknown") and run.optional_env() == {}
    assert run.stride == 4  # the registry's, as config.json does not say
    assert run.grid() == ((4, 4), 128)  # the study's grid and patch
    run.config_path.write_text(json.dumps({"arch": kseg_tiny.NAME, "stride": 8, "grid": None, "patch": 64}))
    assert run.stride == 8 and run.grid(default=(2, 3)) == ((2, 3), 64)  # a crop run: the caller's grid
    run.write_env({"kseg": "x"})
    run.write_state(RunState(status="finished", epoch=2))
    assert run.exists() and run.optional_env() == {"kseg": "x"} and run.optional_state().epoch == 2


def test_missing_and_damaged_files_say_what_to_do(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(KsegError) as err:
        _ = run.config
    assert str(err.value) == f"{run.config_path} does not exist; is {tmp_path} a kseg run directory?"
    run.state_path.write_text('{"status": "running", "epoch"')  # cut short by hand
    with pytest.raises(KsegError) as err:
        _ = run.state
    assert str(err.value).startswith(f"{run.state_path} is not valid JSON (Expecting ")
    assert str(err.value).endswith("); delete the run or restore the file.")


def eval_error(run):
    """`kseg eval RUN`: exit 1, no traceback, the reason on the run's line; returns that line."""
    result = CliRunner().invoke(main, ["eval", str(run.path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: 1 run(s) not evaluated: {run.name}"
    return next(line for line in result.output.splitlines()
                if line.startswith(f"{run.name}: cannot evaluate"))


def test_eval_of_a_damaged_run_names_the_file(tmp_path):
    from kseg.data.dataset_spec import CAMVID

    run = RunDir(tmp_path / "runs" / "broken")
    run.path.mkdir(parents=True)
    run.config_path.write_text(json.dumps({"arch": kseg_tiny.NAME}))  # made by hand, without the spec
    assert eval_error(run) == (f"broken: cannot evaluate: {run.config_path} has no 'spec' (the dataset "
                               f"description kseg fit writes); restore the file, or train the run again.")
    run.config_path.write_text(json.dumps({"arch": kseg_tiny.NAME, "spec": {**CAMVID.to_dict(), "void": 3}}))
    assert eval_error(run) == (f"broken: cannot evaluate: {run.config_path} 'spec': 'void' must be in "
                               f"[11, 255] (after the 11 classes). Received: 3")
