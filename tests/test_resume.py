"""Crash safety of `kseg fit`: SIGKILL, SIGTERM, torn commits and resumed schedules.

The reference is one uninterrupted run; every interrupted-and-resumed run must end
with exactly its history (same rows, same numbers: CPU training here is
deterministic) and a loadable best.keras.
"""

import shutil
import signal
import subprocess
import time

import kseg_tiny
import pytest
from click.testing import CliRunner
from processes import child_env, tiny_cli

from kseg.cli import main
from kseg.runs import HISTORY_COLUMNS, RunDir, RunState

TINY = kseg_tiny.NAME
EPOCHS = 6
# Batch 1 gives 8 steps per epoch; lr 0.05 with patience 1 makes val_loss bounce and
# the plateau halve the rate mid-run, so a resume that lost its counters shows. The
# resumed commands repeat --lr on purpose: that must not undo the plateau's reductions.
SETTINGS = ["--patch", "32", "--grid", "2x2", "--batch-size", "1", "--lr", "0.05",
            "--plateau-patience", "1", "--plateau-factor", "0.5"]  # fmt: skip


# A step schedule instead of the plateau: the rate depends on the global step alone.
COSINE = ["--patch", "32", "--grid", "2x2", "--batch-size", "1", "--lr", "0.05", "--schedule", "cosine",
          "--warmup", "1.5"]  # fmt: skip


def argv(data_dir, runs, epochs=EPOCHS, settings=SETTINGS):
    return ["fit", TINY, "--data", str(data_dir), "--runs", str(runs), "--epochs", str(epochs), *settings]


def fit(data_dir, runs, epochs=EPOCHS, settings=SETTINGS):
    return CliRunner().invoke(main, argv(data_dir, runs, epochs, settings), catch_exceptions=False)


def spawn(data_dir, runs, settings=SETTINGS):
    """A real `kseg fit` process, with the tiny model registered (tests/kseg_tiny.py)."""
    return subprocess.Popen(
        tiny_cli(*argv(data_dir, runs, settings=settings)),
        env=child_env(KSEG_CACHE=str(runs / "cache")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(run, n, proc, timeout=120):
    """Poll history.csv until it has `n` rows; returns the rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = run.history() if run.history_path.exists() else []
        if len(rows) >= n:
            return rows
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {n} history rows after {timeout}s")


def numbers(rows):
    return [[r[k] for k in HISTORY_COLUMNS if k != "seconds"] for r in rows]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    result = fit(data_dir, runs)
    assert result.exit_code == 0, result.output
    rows = RunDir(runs / TINY).history()
    assert len({r["lr"] for r in rows}) > 1, "the plateau never fired; the resume tests would be weaker"
    return rows


def assert_complete(run, reference):
    rows = run.history()
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert numbers(rows) == numbers(reference)
    state = run.state
    assert state.status == "finished" and state.epoch == EPOCHS
    assert not [p.name for p in run.path.glob(".*.*")]  # no pending checkpoint or temporary left
    assert run.load_model("best").output_shape[-1] == 11


@pytest.mark.slow
def test_sigterm_then_sigkill_then_resume_gives_the_uninterrupted_history(data_dir, tmp_path, reference):
    run = RunDir(tmp_path / TINY)
    # 1. SIGTERM: a clean stop at the end of a step, status "interrupted", exit 143.
    proc = spawn(data_dir, tmp_path)
    wait_for_rows(run, 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Stopped by SIGTERM" in err
    state = run.state
    assert state.status == "interrupted" and state.message == "stopped by SIGTERM"
    assert len(run.history()) == state.epoch >= 1

    # A checkpoint of another class count in place of last.keras is refused, by name.
    broken = tmp_path / "broken"
    shutil.copytree(run.path, broken / TINY)
    kseg_tiny.tiny_test(num_classes=5).save(broken / TINY / "last.keras")
    result = fit(data_dir, broken)
    assert result.exit_code == 1 and "last.keras does not fit" in result.output

    # 2. The same command continues it; SIGKILL it about the middle of an epoch.
    proc = spawn(data_dir, tmp_path)
    rows = wait_for_rows(run, state.epoch + 2, proc)
    time.sleep(rows[-1]["seconds"] / 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = run.state
    assert state.status == "running" and 1 <= state.epoch < EPOCHS
    # history.csv is written just before the commit, so it may lead it by one row.
    assert len(run.history()) in (state.epoch, state.epoch + 1)

    # 3. And again: it ends exactly like the run that was never stopped.
    proc = spawn(data_dir, tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"after epoch {state.epoch}/{EPOCHS}" in out
    assert_complete(run, reference)


@pytest.mark.slow
def test_a_step_schedule_survives_sigkill(data_dir, tmp_path):
    """Cosine with warmup, killed mid-epoch and resumed: the uninterrupted history, lr included."""
    assert fit(data_dir, tmp_path / "reference", settings=COSINE).exit_code == 0
    reference = RunDir(tmp_path / "reference" / TINY).history()
    assert len({r["lr"] for r in reference}) >= 4  # warmup, then cosine: the rate keeps moving
    run = RunDir(tmp_path / TINY)
    proc = spawn(data_dir, tmp_path, COSINE)
    rows = wait_for_rows(run, 2, proc)
    time.sleep(rows[-1]["seconds"] / 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= run.state.epoch < EPOCHS
    proc = spawn(data_dir, tmp_path, COSINE)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_complete(run, reference)
    assert run.state.schedule["schedule"] == "cosine"


def test_recover_finishes_committed_and_drops_uncommitted_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    run.write_state(RunState(status="running", epoch=3, best_epoch=3))
    for name in ("last.keras", "best.keras"):
        (tmp_path / name).write_text("epoch 2")
    # Killed between the commit of epoch 3 and the renames:
    run.pending_path("last", 3).write_text("epoch 3")
    run.pending_path("best", 3).write_text("epoch 3")
    # ...and leftovers of an epoch that never committed and of a killed atomic write:
    run.pending_path("last", 4).write_text("epoch 4")
    (tmp_path / "..last.e0005.x1y2z3.keras").write_text("half of epoch 5")
    run.recover()
    assert run.last_path.read_text() == "epoch 3" and run.best_path.read_text() == "epoch 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "last.keras", "state.json"]

    # Epoch 3 committed without a new best: its pending best copy must not win.
    run.write_state(RunState(status="running", epoch=3, best_epoch=1))
    run.pending_path("best", 3).write_text("epoch 3 again")
    run.recover()
    assert run.best_path.read_text() == "epoch 3"


def test_resume_without_a_run_is_an_error(data_dir, tmp_path):
    result = CliRunner().invoke(main, [*argv(data_dir, tmp_path), "--resume"])
    assert result.exit_code == 1 and "Nothing to resume" in result.output
