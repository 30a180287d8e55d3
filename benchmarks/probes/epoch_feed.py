"""Paired probe of how `kseg fit` feeds Keras (benchmarks/LOG.md, run I).

    python benchmarks/probes/epoch_feed.py new,old,new,old STEPS EPOCHS [CAMVID]

Runs `kseg fit unet` on CamVid at the study's settings, each epoch capped at STEPS
batches, once per listed variant, in one process so that every variant sees the same
machine load: "new" is kseg's feed (RunBatches with steps_per_epoch: one iterator for
the whole fit), "old" hands Keras the finite dataset (a new iterator every epoch, the
feed before run I). Prints one JSON line per fit: history.csv's epoch seconds, and from
callback timestamps the stall (on_epoch_begin -> first train batch), the train steps,
validation, and test end -> epoch end.
"""

import dataclasses
import json
import sys
import tempfile
import time

import keras

from kseg.training import loop
from kseg.training.recipes import resolve

MARKS = []


class Stamp(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        MARKS.append(("begin", time.perf_counter()))

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            MARKS.append(("first", time.perf_counter()))

    def on_test_begin(self, logs=None):
        MARKS.append(("test", time.perf_counter()))

    def on_test_end(self, logs=None):
        MARKS.append(("tested", time.perf_counter()))

    def on_epoch_end(self, epoch, logs=None):
        MARKS.append(("end", time.perf_counter()))


def gaps(start, stop):
    starts = [t for k, t in MARKS if k == start]
    stops = [t for k, t in MARKS if k == stop]
    return [round(b - a, 3) for a, b in zip(starts, stops, strict=False)]


def main(variants, steps, epochs, data):
    real_callbacks, real_fit = loop.fit_callbacks, keras.Model.fit
    old = {"on": False}

    def callbacks(*args, **kwargs):
        found = real_callbacks(*args, **kwargs)  # a loop.FitCallbacks: Stamp right after the guard
        return dataclasses.replace(found, schedule=(Stamp(), *found.schedule))

    def fit(self, x, *args, steps_per_epoch=None, **kwargs):
        if old["on"]:  # the finite PatchDataset, as kseg fed it before RunBatches
            x, steps_per_epoch = x.dataset, None
        return real_fit(self, x, *args, steps_per_epoch=steps_per_epoch, **kwargs)

    loop.fit_callbacks, keras.Model.fit = callbacks, fit
    for name in variants:
        old["on"] = name == "old"
        MARKS.clear()
        cfg, explicit = resolve("unet", epochs=epochs, data=data)
        start = time.perf_counter()
        run = loop.run_fit(cfg, runs=tempfile.mkdtemp(), explicit=explicit, progress=False, max_steps=steps)
        rows = run.history()
        print(json.dumps({"variant": name, "steps": steps,
                          "epoch_seconds": [float(r["seconds"]) for r in rows],
                          "stall_s": gaps("begin", "first"), "train_s": gaps("first", "test"),
                          "val_s": gaps("test", "tested"), "end_s": gaps("tested", "end"),
                          "wall_s": round(time.perf_counter() - start, 1),
                          "loss": [float(r["loss"]) for r in rows]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]),
         sys.argv[4] if len(sys.argv) > 4 else "../shared/camvid")
