"""kseg.training.progress: the epoch lines and the live bar, in this process on a Rich console
that records what it writes (tests/test_terminal.py runs `kseg fit` on a pseudo-terminal)."""

import io
import re

import keras
import numpy as np
import pytest
from rich.console import Console

from kseg.training.progress import RichProgress, epoch_line

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_epoch_line_shows_the_logged_values_in_a_fixed_order():
    logs = {"val_miou": 0.25, "lr": 0.001, "loss": 0.51234, "soft_dice": np.float32(0.5), "accuracy": None,
            "miou": 0.125, "val_loss": 0.75, "other": 3.0}
    assert epoch_line(3, 20, logs, seconds=12.345) == (
        "epoch 3/20  loss 0.5123  miou 0.1250  soft_dice 0.5000  val_loss 0.7500  val_miou 0.2500  "
        "lr 0.001  12.3s")
    assert epoch_line(1, 1, {}) == "epoch 1/1"


def terminal(width=120):
    """A console that believes it is a terminal and keeps what it writes."""
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def tiny_fit(progress, epochs=2, fail_at=None):
    """3 steps an epoch of a one-layer model, with `progress` as its only callback."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    y = np.array([0, 1, 0, 1, 0, 1])
    callbacks = [progress]
    if fail_at is not None:
        class Fail(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if (self._epoch, batch) == fail_at:
                    raise RuntimeError("boom")

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

        callbacks.insert(0, Fail())
    return model.fit(x, y, batch_size=2, epochs=epochs, validation_data=(x, y), callbacks=callbacks,
                     verbose=0, shuffle=False)


def test_a_terminal_gets_a_live_bar_per_epoch_and_a_line_for_each_finished_one():
    console = terminal()
    bar = RichProgress(console=console)
    assert bar.live  # chosen from the console: a terminal
    history = tiny_fit(bar)
    text = console.file.getvalue()
    # The cursor hidden while the bar draws, shown again at the end.
    assert "\x1b[?25l" in text and text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l")
    screen = ANSI.sub("", text)
    for epoch in (1, 2):  # the bar full after the last step, with the running loss and accuracy
        row = rf"epoch {epoch}/2\s+━+ 3/3 \d:\d\d:\d\d loss \d\.\d{{4}}  accuracy \d\.\d{{4}}"
        assert re.search(row, screen), screen
    lines = [line for line in screen.splitlines() if re.match(r"epoch \d/2  loss", line)]
    expected = [epoch_line(e + 1, 2, {k: v[e] for k, v in history.history.items()}) for e in (0, 1)]
    assert lines == expected  # printed above the bar, the full line, val metrics included
    assert bar.progress is None  # stopped when training ended


def test_a_pipe_gets_the_plain_lines_only():
    console = Console(file=io.StringIO(), width=60)  # not a terminal: a pipe or a log file
    bar = RichProgress(console=console)
    assert not bar.live
    history = tiny_fit(bar)
    expected = [epoch_line(e + 1, 2, {k: v[e] for k, v in history.history.items()}) for e in (0, 1)]
    assert console.file.getvalue().splitlines() == expected  # not wrapped at 60 columns, no escape codes


def test_no_bar_when_asked_for_none_on_a_terminal():
    """`kseg fit --plain`, `kseg.fit(progress=False)`: plain lines even on a terminal."""
    console = terminal()
    bar = RichProgress(live=False, console=console)
    history = tiny_fit(bar, epochs=1)
    expected = epoch_line(1, 1, {k: v[0] for k, v in history.history.items()})
    assert console.file.getvalue().splitlines() == [expected]


def test_a_failed_fit_leaves_the_terminal_usable_after_close():
    console = terminal()
    bar = RichProgress(console=console)
    with pytest.raises(RuntimeError, match="boom"):
        tiny_fit(bar, fail_at=(1, 1))
    # Keras does not call on_train_end after an exception; kseg's loop calls close().
    bar.close()
    bar.close()  # twice is harmless (the loop's finally after a normal end)
    text = console.file.getvalue()
    assert text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l")
    screen = ANSI.sub("", text).replace("\r", "\n")
    assert re.search(r"^epoch 1/2  loss", screen, re.M) and not re.search(r"^epoch 2/2  loss", screen, re.M)
