"""The write policy (kseg/writes.py): kseg writes only files it created.

Each case refuses in one line and leaves every file as it was (md5 before and after):
an output that is an input, a user's file in an output folder, a user's dataset under
`kseg data synth`, a user's folder under `kseg fit --name`, a missing split under
`kseg eval` (eval.json stays), a dataset of other classes without --other-classes.
"""

import json
import shutil

import pytest
from oneline import FIT_ARGS, TINY, cli, error_line, fit_tiny, snapshot

from kseg.writes import MANIFEST


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A run of one epoch; tests that write into a run use a copy (`own_run`)."""
    return fit_tiny(data_dir, tmp_path_factory.mktemp("runs"))


@pytest.fixture
def own_run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "runs" / TINY)


# --- predict, report, export: output folders ----------------------------------------------


def test_predict_into_its_input_folder_keeps_the_users_mask(trained, data_dir, tmp_path):
    """pin/ holds street.png and the user's street_mask.png: the prediction of street.png
    would be street_mask.png, an input; refused, nothing written."""
    pin = tmp_path / "pin"
    pin.mkdir()
    shutil.copy(data_dir / "test" / "test_0000.png", pin / "street.png")
    shutil.copy(data_dir / "testannot" / "test_0000.png", pin / "street_mask.png")
    before = snapshot(pin)
    line = error_line(cli("predict", trained, pin, "--out", pin), pin / "street_mask.png")
    assert "also an input" in line and "choose another --out" in line
    assert snapshot(pin) == before and not (pin / MANIFEST).exists()


def test_predict_never_replaces_a_file_it_did_not_write(trained, data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "test_0000_overlay.png").write_bytes(b"the user's own picture")
    before = snapshot(out)
    line = error_line(cli("predict", trained, data_dir / "test", "--out", out), out / "test_0000_overlay.png")
    assert "kseg did not write it" in line
    assert snapshot(out) == before  # not even test_0000_mask.png, claimed before any image


def test_predict_writes_again_over_its_own_outputs(trained, data_dir, tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        result = cli("predict", trained, data_dir / "test", "--out", out)
        assert result.exit_code == 0, result.output
    assert json.loads((out / MANIFEST).read_text()) == ["test_0000_mask.png", "test_0000_overlay.png"]


def test_report_never_replaces_a_users_report(trained, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "report.md").write_text("my own notes")
    line = error_line(cli("report", "--runs", trained.parent, "--out", out, "--samples", "0"),
                      out / "report.md")
    assert "kseg did not write it" in line
    assert (out / "report.md").read_text() == "my own notes" and not (out / "report.html").exists()


def test_export_never_writes_over_an_input_or_a_users_file(trained, tmp_path):
    before = snapshot(trained)
    assert "also an input" in error_line(cli("export", trained, "--out", trained / "best.keras"),
                                         trained / "best.keras")
    mine = tmp_path / "model.keras"
    mine.write_bytes(b"mine")
    assert "kseg did not write it" in error_line(cli("export", trained, "--out", mine), mine)
    assert mine.read_bytes() == b"mine" and snapshot(trained) == before


# --- data synth and fit: folders kseg fills -----------------------------------------------


def test_synth_refuses_a_users_dataset(data_dir, tmp_path):
    """A dataset the user made (no manifest) and one kseg made that the user added a frame
    to: kseg.json, the list files and the frames stay as they are."""
    argv = ("--train", "2", "--val", "1", "--test", "0", "--size", "48x64")
    users = shutil.copytree(data_dir, tmp_path / "users", ignore=shutil.ignore_patterns(MANIFEST))
    grown = shutil.copytree(data_dir, tmp_path / "grown")
    shutil.copy(grown / "train" / "train_0000.png", grown / "train" / "mine.png")
    for root, named in ((users, "kseg.json"), (grown, "train/mine.png")):
        before = snapshot(root)
        line = error_line(cli("data", "synth", root, *argv), root)
        assert "holds files kseg did not write" in line and named in line
        assert snapshot(root) == before


def test_synth_fills_a_new_folder_and_its_own_again(tmp_path):
    argv = ("--train", "1", "--val", "1", "--test", "0", "--size", "48x64")
    for _ in range(2):
        result = cli("data", "synth", tmp_path / "s", *argv)
        assert result.exit_code == 0, result.output


def test_fit_never_fills_a_users_folder_or_one_outside_runs(data_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    line = error_line(cli("fit", TINY, "--data", data_dir, "--runs", tmp_path, "--name", "mine",
                          "--epochs", "1", *FIT_ARGS), "notes.txt")
    assert "is not a kseg run" in line and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    runs = tmp_path / "runs"
    line = error_line(cli("fit", TINY, "--data", data_dir, "--runs", runs, "--name", "../escape",
                          "--epochs", "1", *FIT_ARGS), "--name")
    assert not (tmp_path / "escape").exists() and not runs.exists()


# --- eval.json --------------------------------------------------------------------------


@pytest.fixture
def no_test(data_dir, tmp_path):
    """The dataset without its test split."""
    root = shutil.copytree(data_dir, tmp_path / "no_test")
    shutil.rmtree(root / "test")
    shutil.rmtree(root / "testannot")
    (root / "test.txt").unlink()
    return root


def test_eval_of_a_missing_split_leaves_eval_json_as_it_was(own_run, no_test):
    assert cli("eval", own_run, "--data", no_test, "--splits", "val").exit_code == 0
    before = (own_run / "eval.json").read_bytes()
    result = cli("eval", own_run, "--data", no_test, "--splits", "test")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "has no test split" in result.output and "eval.json is left as it was" in result.output
    assert (own_run / "eval.json").read_bytes() == before


def test_eval_json_keeps_each_splits_results_and_their_data(own_run, data_dir):
    for split in ("val", "test"):
        assert cli("eval", own_run, "--splits", split, "--data", data_dir).exit_code == 0
    saved = json.loads((own_run / "eval.json").read_text())
    assert sorted(saved["splits"]) == ["test", "val"]
    assert {s["data"] for s in saved["splits"].values()} == {str(data_dir)}
    assert saved["splits"]["val"]["frames"] == 1


def test_eval_on_a_dataset_of_other_classes_needs_other_classes(own_run, data_dir, tmp_path):
    other = shutil.copytree(data_dir, tmp_path / "other")
    spec = json.loads((other / "kseg.json").read_text())
    spec["classes"][0] = "Cloud"
    (other / "kseg.json").write_text(json.dumps(spec))
    result = cli("eval", own_run, "--data", other, "--splits", "val")
    assert result.exit_code == 1 and "--other-classes" in result.output, result.output
    assert not (own_run / "eval.json").exists()
    result = cli("eval", own_run, "--data", other, "--splits", "val", "--other-classes")
    assert result.exit_code == 0, result.output


def test_bench_json_never_replaces_a_users_file(tmp_path):
    mine = tmp_path / "results.json"
    mine.write_text('{"mine": true}')
    line = error_line(cli("bench", TINY, "--quick", "--json", mine), mine)  # refused before measuring
    assert "kseg did not write it" in line and mine.read_text() == '{"mine": true}'


def test_a_resumed_run_deletes_only_kseg_temporaries(tmp_path):
    """RunDir.recover() removes what a killed atomic write left, not a user's hidden file."""
    from kseg.runs import RunDir, RunState

    run = RunDir(tmp_path)
    run.write_state(RunState(status="running", epoch=0))
    for name in (".gitignore", MANIFEST, ".state.k2j4x9q1.json", "..last.e0001.x1y2z3.keras"):
        (tmp_path / name).write_text("x")
    run.recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", MANIFEST, "state.json"]
