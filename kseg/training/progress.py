"""Training progress: a Rich bar per epoch with live loss and metrics, or plain lines.

The bar is drawn when kseg's console is a terminal or a Jupyter notebook (Rich renders
it there as a live widget); in a log file, a pipe or click's CliRunner each epoch
prints one plain line instead.
"""

import keras
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from kseg import output

SHOWN = ("loss", "accuracy", "miou", "soft_dice")


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
                TextColumn("{task.fields[metrics]}"),
                console=self.console,
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
            self.progress.update(self.task, completed=batch + 1, metrics=text)

    def on_epoch_end(self, epoch, logs=None):
        # RunRecorder runs first and has committed the epoch; show what it recorded.
        line = epoch_line(epoch + 1, self.params.get("epochs"), logs or {})
        if self.progress:
            metrics = line.split("  ", 1)[1] if "  " in line else ""
            self.progress.update(self.task, metrics=metrics)
        else:
            self.console.print(line, highlight=False, soft_wrap=True)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Stop the live display (also called when training ends by an exception)."""
        if self.progress:
            self.progress.stop()
            self.progress = None
