"""`kseg fit --tensorboard`: Keras' TensorBoard logs in <run>/tensorboard/, continued on resume."""

from pathlib import Path

import kseg_tiny
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.runs import RunDir

pytestmark = pytest.mark.slow  # three short training runs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from kseg.data import synth

    root = tmp_path_factory.mktemp("data")
    synth.write_synthetic(root, n_train=2, n_val=1, n_test=0, size=(64, 64))
    return root


def fit(data_dir, runs, *args):
    argv = ["fit", kseg_tiny.NAME, "--data", str(data_dir), "--runs", str(runs), "--patch", "32",
            "--grid", "2x2", "--batch-size", "4", *args]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return RunDir(Path(runs) / kseg_tiny.NAME)


def scalars(folder):
    """{event file name: [(tag, step, value)]} of the event files in `folder`."""
    import tensorflow as tf

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        rows = []
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.tag.startswith("epoch_"):  # tf.summary.scalar stores a rank-0 tensor
                    rows.append((v.tag, event.step, float(tf.make_ndarray(v.tensor))))
        found[path.name] = rows
    return found


def epochs_of(files, tag):
    return sorted(step for rows in files.values() for t, step, _ in rows if t == tag)


def test_tensorboard_logs_epochs_and_a_resumed_run_continues_them(data_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: pip install 'kseg[tensorboard]' "
                        "(make test installs it through the dev extra)")
    run = fit(data_dir, tmp_path, "--epochs", "2", "--tensorboard")
    train, val = run.path / "tensorboard" / "train", run.path / "tensorboard" / "validation"
    first = scalars(train)
    history = run.history()
    # Steps are kseg's epoch numbers, as in history.csv, and the values are its values.
    assert epochs_of(first, "epoch_loss") == [1, 2]
    assert epochs_of(scalars(val), "epoch_loss") == [1, 2]
    logged = {(t, s): v for rows in first.values() for t, s, v in rows}
    for row in history:
        assert logged[("epoch_loss", row["epoch"])] == pytest.approx(row["loss"], rel=1e-5)
        assert logged[("epoch_accuracy", row["epoch"])] == pytest.approx(row["accuracy"], rel=1e-5)
        assert logged[("epoch_learning_rate", row["epoch"])] == pytest.approx(row["lr"], rel=1e-6)
    before = {p.name: p.read_bytes() for p in train.iterdir()}

    fit(data_dir, tmp_path, "--epochs", "4")  # extends the run; --tensorboard comes from config.json
    after = scalars(train)
    assert {p.name: p.read_bytes() for p in train.iterdir() if p.name in before} == before  # untouched
    new = {name: rows for name, rows in after.items() if name not in before}
    assert len(new) == 1 and epochs_of(new, "epoch_loss") == [3, 4]  # one new file, epochs 3 and 4
    assert epochs_of(after, "epoch_loss") == [1, 2, 3, 4]
    assert epochs_of(scalars(val), "epoch_loss") == [1, 2, 3, 4]


def test_without_the_flag_nothing_is_written(data_dir, tmp_path):
    run = fit(data_dir, tmp_path, "--epochs", "1")
    assert not (run.path / "tensorboard").exists()


def test_a_missing_tensorboard_package_is_named_before_training(data_dir, tmp_path, monkeypatch):
    import importlib.util

    from kseg.training import callbacks

    real = importlib.util.find_spec
    monkeypatch.setattr(callbacks.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    argv = ["fit", kseg_tiny.NAME, "--data", str(data_dir), "--runs", str(tmp_path), "--tensorboard"]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 1
    assert "--tensorboard needs tensorboard: pip install tensorboard" in result.output
    assert not (tmp_path / kseg_tiny.NAME / "state.json").exists()
