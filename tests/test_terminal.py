"""`kseg fit`'s progress in a real terminal (a pseudo-terminal) and in a pipe.

On a terminal kseg draws a Rich progress bar for the running epoch that redraws itself
in place (cursor hidden, the line erased and rewritten, the epoch's step count), and
prints each finished epoch's full line above it; in a pipe or a log file there are the
plain lines only, without escape codes.
"""

import os
import re
import select
import subprocess
import time

import kseg_tiny
import pytest
from click.testing import CliRunner
from processes import child_env, tiny_cli

from kseg.cli.main import main

TINY = kseg_tiny.NAME
EPOCHS = 3
# 2 frames x 4 cells / batch 2: 4 steps an epoch.
SETTINGS = ["--patch", "32", "--grid", "2x2", "--batch-size", "2", "--epochs", str(EPOCHS)]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A finished epoch's line, val metrics included (a bar row has the bar after "epoch k/3").
PLAIN_EPOCH = re.compile(r"epoch (\d+)/3  loss \d\.\d{4}  accuracy .* val_soft_dice \d\.\d{4}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from kseg.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, n_train=2, n_val=1, n_test=0, size=(64, 64))
    return root


def run_in_terminal(args, timeout=300):
    """Run the kseg CLI (with the tiny model) with stdout and stderr on a pseudo-terminal;
    returns (exit status, everything it wrote, as text)."""
    master, slave = os.openpty()
    env = {k: v for k, v in child_env(TERM="xterm-256color", COLUMNS="120", LINES="40").items()
           if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JPY_PARENT_PID")}
    proc = subprocess.Popen(tiny_cli(*args),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)  # the child holds it now; reading the master ends with EIO when it exits
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                pytest.fail(f"kseg fit did not finish in {timeout}s:\n{b''.join(chunks).decode()[-3000:]}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_the_bar_redraws_itself_in_a_terminal(data_dir, tmp_path):
    status, text = run_in_terminal(["fit", TINY, "--data", str(data_dir), "--runs", str(tmp_path), *SETTINGS])
    assert status == 0, text
    assert "Traceback" not in text, text
    # Rich's live display: cursor hidden while it draws, shown again at the end...
    assert "\x1b[?25l" in text and text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l"), repr(text[-2000:])
    # ...and redrawn in place: back to column 0 and erase the line, then the bar again.
    assert text.count("\r\x1b[2K") >= 2, repr(text[-2000:])
    screen = ANSI.sub("", text)
    for epoch in range(1, EPOCHS + 1):  # a bar per epoch, from 0 to its 4 steps, then the running loss
        assert re.search(rf"epoch {epoch}/{EPOCHS}\s+━+ 0/4", screen), screen[-3000:]  # an empty bar
        assert re.search(rf"epoch {epoch}/{EPOCHS}\s+━+ 4/4 \d:\d\d:\d\d loss \d\.\d{{4}}", screen), screen
    # Each finished epoch's full line (val metrics too: not cut to the terminal's width).
    assert [int(e) for e in PLAIN_EPOCH.findall(screen)] == list(range(1, EPOCHS + 1)), screen
    assert f"{tmp_path / TINY}: {EPOCHS} epochs" in screen  # the summary after the bar


def test_a_pipe_gets_plain_epoch_lines(data_dir, tmp_path):
    """CliRunner's output is not a terminal, like a pipe or a log file: one plain line
    per epoch, no escape codes, no carriage returns."""
    result = CliRunner().invoke(main, ["fit", TINY, "--data", str(data_dir), "--runs", str(tmp_path),
                                       *SETTINGS])
    assert result.exit_code == 0, result.output
    assert [int(e) for e in PLAIN_EPOCH.findall(result.output)] == list(range(1, EPOCHS + 1))
    assert "\x1b[" not in result.output and "\r" not in result.output and "━" not in result.output
