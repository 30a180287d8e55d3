"""Training progress: one line per finished epoch, and a live bar for the running one.

The bar is drawn when kseg's console is a terminal or a Jupyter notebook (Rich renders
it there as a live widget): it counts the epoch's steps and shows the running loss and
metrics. A finished epoch's bar is replaced by its plain line, printed above the live
area, so the live area stays one row high (a table of every epoch's bar would outgrow
the terminal in a long run, and the full metrics of a finished epoch would squeeze the
bar and step count out of a shared row). In a log file, a pipe or click's CliRunner
there is no bar: the plain lines only.
"""

import keras
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from kseg import output

SHOWN = ("loss", "accuracy", "miou", "soft_dice", "fg_iou")  # fg_iou: two-class runs only


def epoch_line(epoch, epochs, logs, seconds=None):
    """'epoch 3/20  loss 0.512  accuracy 0.811 ...  val_loss ...' from a logs dict."""
    parts = [f"epoch {epoch}/{epochs}"]
    for key in SHOWN + tuple(f"val_{k}" for k in SHOWN):
        if logs.get(key) is not None:
            parts.append(f"{key} {float(logs[key]):.4f}")
    if logs.get("lr") is not None:
        parts.append(f"lr {logs['lr']:.2g}")
    if seconds is not None:
        parts.append(f"{seconds:.1f}s")
    return "  ".join(parts)


class RichProgress(keras.callbacks.Callback):
    """Shows training progress on `output.console`; `live=None`: a bar in a terminal or notebook."""

    def __init__(self, live=None, console=None):
        super().__init__()
        self.console = console or output.console
        self.live = (self.console.is_terminal or self.console.is_jupyter) if live is None else live
        self.progress = None
        self.task = None

    def on_train_begin(self, logs=None):
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, min_width=11)),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                # The rest of the row; cut with an ellipsis rather than wrapped or widened.
                TextColumn("{task.fields[metrics]}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                                          ratio=1)),
                console=self.console,
                expand=True,
            )
            self.progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.progress:
            steps = self.params.get("steps")
            desc = f"epoch {self._epoch}/{self.params.get('epochs')}"
            self.task = self.progress.add_task(desc, total=steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        if self.progress:
            text = "  ".join(f"{k} {float(logs[k]):.4f}" for k in SHOWN if k in (logs or {}))
            # Drawn at once after the last step: the full bar shows while validation runs.
            last = batch + 1 == self.params.get("steps")
            self.progress.update(self.task, completed=batch + 1, metrics=text, refresh=last)

    def on_epoch_end(self, epoch, logs=None):
        # RunRecorder runs first and has committed the epoch; show what it recorded.
        line = epoch_line(epoch + 1, self.params.get("epochs"), logs or {})
        if self.progress:
            self.progress.remove_task(self.task)  # the line below takes its place...
            self.progress.refresh()  # ...at once: Live prints above what it drew last
        self.console.print(line, highlight=False, soft_wrap=True)  # above the bar while it is live

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Stop the live display (also called when training ends by an exception)."""
        if self.progress:
            self.progress.stop()
            self.progress = None
