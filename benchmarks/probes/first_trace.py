"""Paired probe: a fit's start-up with and without building the training state first
(benchmarks/LOG.md, run J).

    python benchmarks/probes/first_trace.py ARCH new,old,new,old [--model-arg K=V ...]

Runs `kseg fit ARCH` for one epoch of one step (batch 2, 64 px, float32) on the
embedded synthetic scenes, once per listed variant, in one process so that both see
the same machine load: "new" is kseg's fit (`loop.build_training_state` creates the
optimizer's and the metrics' variables before `fit`), "old" skips it (Keras then
creates them in the train step's first trace, and TensorFlow traces the step again).
Prints one JSON line per fit: the fit's wall seconds, history.csv's epoch seconds and
how many times the train step was traced.
"""

import json
import sys
import tempfile
import time

from keras.src.backend.tensorflow import trainer

from kseg.data.synth import write_synthetic
from kseg.training import loop
from kseg.training.recipes import resolve

TRACES = []


def main(arch, variants, model_args):
    data = tempfile.mkdtemp()
    write_synthetic(data, n_train=1, n_val=1, n_test=0, size=(64, 64), seed=0)
    real_step, real_build = trainer.TensorFlowTrainer.train_step, loop.build_training_state

    def counted(self, batch):
        TRACES.append(1)
        return real_step(self, batch)

    trainer.TensorFlowTrainer.train_step = counted
    for name in variants:
        loop.build_training_state = real_build if name == "new" else (lambda model, patch: None)
        TRACES.clear()
        cfg, explicit = resolve(arch, epochs=1, data=data, patch=64, grid=(1, 1), batch_size=2,
                                precision="float32", model_kwargs=model_args)
        start = time.perf_counter()
        run = loop.run_fit(cfg, runs=tempfile.mkdtemp(), explicit=explicit, progress=False)
        print(json.dumps({"arch": arch, "variant": name, "fit_s": round(time.perf_counter() - start, 1),
                          "epoch_s": float(run.history()[0]["seconds"]), "train_traces": len(TRACES)}),
              flush=True)


if __name__ == "__main__":
    pairs = dict(a.split("=", 1) for a in sys.argv[3:])
    main(sys.argv[1], sys.argv[2].split(","), {k: int(v) if v.isdigit() else v for k, v in pairs.items()})
