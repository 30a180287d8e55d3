"""Ctrl-C during `kseg fit`, through the real CLI in a subprocess.

The README promises: Ctrl-C stops training after the current step, the unfinished
epoch is dropped, the exit status is 130, one line says how to continue, and the same
command continues the run; a second Ctrl-C stops at once, the directory still
consistent. The runs train the tiny model of tests/kseg_tiny.py on the embedded
synthetic scenes (no --data), in a private KSEG_CACHE.
"""

import dataclasses
import signal
import subprocess
import time

import kseg_tiny
import pytest
from click.testing import CliRunner
from processes import child_env, tiny_cli

from kseg.cli.main import main
from kseg.runs import RunDir
from kseg.training.callbacks import StopSignals

TINY = kseg_tiny.NAME
# 32 frames x 4 cells / batch 2: 64 steps an epoch; 50 epochs never end before the signal.
SETTINGS = ["--patch", "32", "--grid", "2x2", "--batch-size", "2", "--epochs", "50"]


def argv(runs, settings=SETTINGS):
    return ["fit", TINY, "--runs", str(runs), *settings]


@pytest.fixture
def spawn():
    """`spawn(runs, cache)`: `kseg fit` in its own process (kseg_tiny.main() is the real CLI
    with the tiny model); killed at the end of the test if a failed assert left it running."""
    procs = []

    def start(runs, cache):
        procs.append(subprocess.Popen(tiny_cli(*argv(runs)), env=child_env(KSEG_CACHE=str(cache)),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for_epoch(run, proc, timeout=300):
    """Block until the run has committed an epoch (training has started and is running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.state_path.exists() and run.state.epoch >= 1:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no epoch committed after {timeout}s")


def one_error_line(stderr):
    """The single 'Error: ...' line of stderr, its last line; no traceback."""
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and stderr.rstrip("\n").splitlines()[-1] == errors[0], stderr
    assert "Aborted" not in stderr, stderr  # click's own Ctrl-C text would mean kseg missed it
    return errors[0]


def assert_consistent(run):
    """state.json committed `epoch` epochs, history has exactly those rows, no leftovers."""
    state = run.state
    assert state.status == "interrupted", state
    assert [r["epoch"] for r in run.history()] == list(range(1, state.epoch + 1))
    assert not [p.name for p in run.path.glob(".*.*")], "a pending checkpoint or temporary file is left"
    assert run.load_model("last").name == TINY
    return state


def resume_one_more_epoch(run, cache, monkeypatch):
    """The same command, with --epochs one past the interruption: continues, does not restart."""
    monkeypatch.setenv("KSEG_CACHE", str(cache))
    done = run.state.epoch
    settings = [*SETTINGS[:-1], str(done + 1)]
    result = CliRunner().invoke(main, argv(run.path.parent, settings))
    assert result.exit_code == 0, result.output
    assert f"Resuming {run.path} after epoch {done}/{done + 1} (was interrupted)" in result.output
    assert [r["epoch"] for r in run.history()] == list(range(1, done + 2))
    assert run.state.status == "finished" and run.state.sessions == 2


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_130_and_the_run_continues(spawn, tmp_path, monkeypatch):
    run, cache = RunDir(tmp_path / "runs" / TINY), tmp_path / "cache"
    proc = spawn(run.path.parent, cache)
    wait_for_epoch(run, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = one_error_line(err)
    state = assert_consistent(run)
    assert line.startswith(f"Error: Stopped by SIGINT after epoch {state.epoch}/50")
    assert "Run the same command again to continue" in line and str(run.path) in line
    assert state.message == "stopped by SIGINT"
    assert f"epoch {state.epoch}/50  loss" in out  # the plain progress lines went to stdout
    resume_one_more_epoch(run, cache, monkeypatch)


@pytest.mark.slow
def test_two_ctrl_c_in_quick_succession_stop_with_130(spawn, tmp_path, monkeypatch):
    """Whichever way the two signals land (the second one may come in while the first is
    being handled, or be merged with it by the OS), the process ends with 130 and one
    line, and the run continues."""
    run, cache = RunDir(tmp_path / "runs" / TINY), tmp_path / "cache"
    proc = spawn(run.path.parent, cache)
    wait_for_epoch(run, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Stopped" in one_error_line(err)
    assert_consistent(run)
    resume_one_more_epoch(run, cache, monkeypatch)


def test_the_second_sigint_raises_keyboard_interrupt_at_once():
    """The mechanism behind 'a second Ctrl-C stops at once': the first SIGINT only sets
    the flag that GuardCallback reads after each step, the second raises where the
    process is, without waiting for the step to end."""
    previous = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        signal.raise_signal(signal.SIGINT)
        assert signals.signum == signal.SIGINT  # no exception: training ends its step first
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_keyboard_interrupt_inside_training_is_one_line_and_130(tmp_path, monkeypatch):
    """Two Ctrl-C mid-epoch, the second landing before the step ends (raised from a
    callback, so it lands there for sure): exit 130, one line, and the directory says
    `interrupted` with the epochs committed before it."""
    import keras

    from kseg.data.synth import write_synthetic

    write_synthetic(tmp_path / "data", n_train=2, n_val=1, n_test=0, size=(64, 64))

    class SecondCtrlC(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 6:  # epoch 2 (4 steps an epoch), step 2
                signal.raise_signal(signal.SIGINT)  # sets StopSignals' flag
                signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt, here and now

    from kseg.training import loop

    made = loop.fit_callbacks

    def with_ctrl_c(*args):  # kseg's callbacks, with SecondCtrlC after the guard
        found = made(*args)
        return dataclasses.replace(found, extra=(SecondCtrlC(), *found.extra))

    monkeypatch.setattr(loop, "fit_callbacks", with_ctrl_c)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["fit", TINY, "--data", str(tmp_path / "data"), "--runs", str(runs),
                                       *SETTINGS[:-1], "3"])
    assert result.exit_code == 130, result.output
    line = one_error_line(result.output)
    assert line.startswith("Error: Stopped at once by a second SIGINT after epoch 1/3;"), line
    assert "Run the same command again to continue" in line
    state = assert_consistent(RunDir(runs / TINY))
    assert state.epoch == 1 and state.message == "stopped at once by a second SIGINT"


def test_ctrl_c_in_any_other_verb_is_one_line_and_130(monkeypatch, tmp_path):
    """Outside fit's clean stop, the CLI boundary turns KeyboardInterrupt into one line and
    130, not click's 'Aborted!' and 1."""
    from kseg.data import check

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "check_dataset", interrupted)
    result = CliRunner().invoke(main, ["data", "check", str(tmp_path)])
    assert result.exit_code == 130, result.output
    assert one_error_line(result.output) == "Error: Stopped by SIGINT (Ctrl-C)."
