"""kseg.training.callbacks, called directly: the guard's stops, what RunRecorder commits for
an epoch (and refuses to), and the --tensorboard check (tests/test_resume.py and
tests/test_signals.py check the same through real `kseg fit` processes)."""

import importlib.util
import math
import signal
from types import SimpleNamespace

import keras
import kseg_tiny
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli.main import main
from kseg.errors import KsegError
from kseg.runs import RunDir, RunState
from kseg.training import callbacks
from kseg.training.callbacks import GuardCallback, Interrupted, NonFiniteLoss, RunRecorder


def test_the_guard_stops_after_the_step_a_signal_arrived_in():
    flag = SimpleNamespace(signum=None)
    guard = GuardCallback(signals=flag)
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(0, {"loss": 0.5})  # no signal, a finite loss: go on
    flag.signum = signal.SIGTERM
    with pytest.raises(Interrupted) as err:
        guard.on_train_batch_end(1, {"loss": 0.5})
    assert err.value.signum == signal.SIGTERM and str(err.value) == "SIGTERM"
    with pytest.raises(Interrupted):  # also while validating
        guard.on_test_batch_end(0, {})


@pytest.mark.parametrize("loss", [math.nan, math.inf, np.float32("-inf")])
def test_the_guard_stops_on_a_loss_that_is_not_finite(loss):
    guard = GuardCallback()
    guard.on_epoch_begin(1)
    with pytest.raises(NonFiniteLoss) as err:
        guard.on_train_batch_end(2, {"loss": loss})
    assert str(err.value) == f"the training loss became {float(loss)} at epoch 2, step 3"
    guard.on_train_batch_end(2, {})  # no loss logged: nothing to check


@pytest.fixture
def recorder(tmp_path):
    """A RunRecorder on an empty run directory, for a tiny compiled model, monitor val_accuracy."""
    keras.utils.set_random_seed(0)
    model = kseg_tiny.tiny_test(num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    run = RunDir(tmp_path)
    rec = RunRecorder(run, RunState(monitor="val_accuracy"), [], "val_accuracy", "max")
    rec.set_model(model)
    return rec


def epoch(rec, e, **logs):
    rec.on_epoch_begin(e)
    rec.on_epoch_end(e, {"loss": 0.5, "val_loss": 0.6, **logs})


def test_best_keras_is_the_best_epochs_and_a_missing_value_is_no_improvement(recorder):
    run = recorder.run
    epoch(recorder, 0)  # val_accuracy not logged: last.keras only
    assert run.last_path.is_file() and not run.best_path.exists()
    assert (run.state.epoch, run.state.best_epoch) == (1, None)
    epoch(recorder, 1, val_accuracy=0.5)
    epoch(recorder, 2, val_accuracy=0.4)  # worse ("max"): best.keras stays epoch 2's
    epoch(recorder, 3, val_accuracy=math.nan)  # NaN never counts as better
    state = run.state
    assert (state.epoch, state.best_epoch, state.best_value) == (4, 2, 0.5)
    assert [r["epoch"] for r in run.history()] == [1, 2, 3, 4]
    assert run.history()[2]["val_accuracy"] == 0.4 and run.history()[0]["val_accuracy"] is None
    names = sorted(p.name for p in run.path.iterdir())
    assert names == ["best.keras", "history.csv", "last.keras", "state.json"]  # no pending file left


def test_a_val_loss_that_is_not_finite_commits_nothing(recorder):
    run = recorder.run
    epoch(recorder, 0, val_accuracy=0.5)
    files = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(NonFiniteLoss, match=r"^val_loss became nan at epoch 2$"):
        epoch(recorder, 1, val_loss=math.nan, val_accuracy=0.9)
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == files  # not a byte changed
    assert run.state.epoch == 1


def test_tensorboard_without_its_package_is_refused_before_training(monkeypatch, data_dir, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        real(name, *a))
    message = ("--tensorboard needs tensorboard: pip install tensorboard (or pip install "
               "'kseg[tensorboard]'), or drop --tensorboard.")
    with pytest.raises(KsegError) as err:
        callbacks.require_tensorboard()
    assert str(err.value) == message
    args = ["fit", kseg_tiny.NAME, "--data", str(data_dir), "--runs", str(tmp_path), "--patch", "32",
            "--grid", "2x2", "--tensorboard"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.output.strip().splitlines() == [f"Error: {message}"]
    assert not (tmp_path / kseg_tiny.NAME / "last.keras").exists()
