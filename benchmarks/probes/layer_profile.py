"""Where a train step's time goes: every layer timed on its own (TensorFlow backend).

Each layer of the network is run alone, inside a `tf.function`, on inputs of the shapes
it sees in the network, forward and backward (gradients for its inputs and weights),
and timed. The sum is close to a real train step minus the optimizer update, and the
split by layer class shows which kind of layer is slow for its FLOPs, e.g.
`python benchmarks/probes/layer_profile.py deeplabv3`.
"""

import collections
import sys
import time

import numpy as np

from kseg.bench import flops as flops_lib


def layer_times(model, input_shape, batch_size=16, steps=3):
    """`[{"name", "class", "flops", "seconds"}]`: forward+backward seconds per layer."""
    import keras
    import tensorflow as tf

    rows = []
    for call in flops_lib.layer_calls(model, input_shape):
        layer = call["layer"]
        xs = [tf.constant(np.random.default_rng(0).standard_normal((batch_size, *s[1:]), dtype=np.float32))
              for s in call["input_shapes"]]

        @tf.function
        def step(*xs, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(xs)
                y = layer(xs[0] if len(xs) == 1 else list(xs), training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            return tape.gradient(loss, list(xs) + layer.trainable_weights)

        step(*xs)
        start = time.perf_counter()
        for _ in range(steps):
            keras.ops.convert_to_numpy(step(*xs)[0])
        rows.append({"name": layer.name, "class": type(layer).__name__,
                     "flops": 3 * batch_size * flops_lib.call_flops(call),
                     "seconds": (time.perf_counter() - start) / steps})
    return rows


def by_class(rows):
    """Seconds, FLOPs and GFLOP/s per layer class, slowest first."""
    total = collections.defaultdict(lambda: [0.0, 0])
    for r in rows:
        total[r["class"]][0] += r["seconds"]
        total[r["class"]][1] += r["flops"]
    return sorted(((c, s, f, f / s / 1e9 if s else 0.0) for c, (s, f) in total.items()), key=lambda t: -t[1])


def main(argv=None):
    """`python benchmarks/probes/layer_profile.py ARCH [PATCH]`: per-class table of a train step."""
    from kseg import output, registry

    argv = sys.argv[1:] if argv is None else argv
    patch = int(argv[1]) if len(argv) > 1 else 128
    model = registry.create_model(argv[0], num_classes=11)
    rows = layer_times(model, (patch, patch, 3))
    total = sum(r["seconds"] for r in rows)
    table = [(c, s, 100 * s / total, f / 1e9, g) for c, s, f, g in by_class(rows)]
    output.print_table(f"{argv[0]}: forward+backward by layer class, batch 16, {patch}x{patch} "
                       f"(sum {total:.2f} s)", ["class", "seconds", "% time", "GFLOP", "GFLOP/s"], table)
    slow = sorted(rows, key=lambda r: -r["seconds"])[:12]
    output.print_table("Slowest layers", ["layer", "class", "seconds", "GFLOP/s"],
                       [(r["name"], r["class"], r["seconds"], r["flops"] / r["seconds"] / 1e9) for r in slow])


if __name__ == "__main__":
    main()
