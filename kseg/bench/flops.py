"""Analytic FLOP counts of Keras models, layer by layer.

One multiply-add is 2 FLOPs. Only layers that do dense arithmetic are counted
(convolutions of every kind and Dense); batch norm, activations, additions and
resizing are memory-bound and cost well under 1% of a segmentation network's FLOPs,
so they are left out, as in the usual "FLOPs" tables. Dilation changes which inputs a
kernel reads, not how many, so it does not enter the counts.

Training costs about 3x the forward pass: the backward pass computes a gradient for
each layer's input and one for its weights, each as costly as the forward product.
"""

import math

import keras

from kseg import compat

# Forward FLOPs for an (input shape, output shape) pair, batch dimension included.
# Shapes are channels_last; `spatial` is the product of the spatial dimensions.


def _conv(layer, x, y):
    # (B, *S_out, C_out): each output value is a dot product over k^d * C_in/groups.
    k = math.prod(layer.kernel_size)
    return 2 * math.prod(y) * k * (x[-1] // layer.groups)


def _conv_transpose(layer, x, y):
    # Each input value is scattered through a k^d * C_out kernel.
    k = math.prod(layer.kernel_size)
    return 2 * math.prod(x) * k * y[-1]


def _depthwise(layer, x, y):
    # (B, *S_out, C_in * multiplier): a k^d dot product per output value.
    return 2 * math.prod(y) * math.prod(layer.kernel_size)


def _separable(layer, x, y):
    # Depthwise k^d conv to C_in * multiplier channels, then a 1x1 conv to C_out.
    spatial = math.prod(y[:-1])
    mid = x[-1] * layer.depth_multiplier
    return 2 * spatial * mid * (math.prod(layer.kernel_size) + y[-1])


def _dense(layer, x, y):
    return 2 * math.prod(y) * x[-1]


def _counter(layer):
    # Order matters: subclasses before their bases.
    table = [
        ((keras.layers.SeparableConv1D, keras.layers.SeparableConv2D), _separable),
        ((keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D), _depthwise),
        (
            (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose),
            _conv_transpose,
        ),
        ((keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D), _conv),
        ((keras.layers.Dense,), _dense),
    ]
    for classes, fn in table:
        if isinstance(layer, classes):
            return fn
    return None


def layer_flops(model, input_shape):
    """Forward FLOPs of each counted layer of `model` for one input of `input_shape`.

    `input_shape` excludes the batch dimension, e.g. ``(128, 128, 3)``. Nested models
    are walked into; a layer called twice is counted twice. Returns a list of dicts
    ``{"name", "class", "output_shape", "flops"}`` in execution order.
    """
    return [
        {"name": c["name"], "class": type(c["layer"]).__name__, "output_shape": c["output_shape"][1:],
         "flops": call_flops(c)}
        for c in layer_calls(model, input_shape)
        if _counter(c["layer"]) is not None
    ]


def forward_flops(model, input_shape):
    """Total forward FLOPs of `model` for one input of `input_shape` (no batch dim)."""
    return sum(r["flops"] for r in layer_flops(model, input_shape))


def call_flops(call):
    """Forward FLOPs of one entry of `layer_calls` (0 for layers that are not counted)."""
    fn = _counter(call["layer"])
    return int(fn(call["layer"], call["input_shapes"][0], call["output_shape"])) if fn else 0


def layer_calls(model, input_shape):
    """Every layer call of `model` on one input of `input_shape`, in execution order.

    Runs the graph on symbolic tensors (batch 1), walking into nested models. Returns
    dicts ``{"name", "layer", "input_shapes", "output_shape"}``; names of layers inside
    a nested model are prefixed with its name and "/", shapes include the batch of 1.
    """
    if isinstance(model, keras.Sequential):
        model.build((None, *input_shape))
    spec = keras.KerasTensor((1, *input_shape), dtype="float32")
    calls = []
    _walk(_graph(model), spec, calls)
    return calls


def _graph(model):
    graph = compat.graph_of(model)
    if graph is None:
        raise ValueError(
            f"FLOP counting needs a functional or sequential model. Received: "
            f"{type(model).__name__} {model.name!r}"
        )
    return graph


def _walk(model, inputs, calls, prefix=""):
    """Run `model`'s graph on symbolic tensors, appending each layer call to `calls`."""

    def operation_fn(op):
        def run(*args, **kwargs):
            if isinstance(op, keras.Model):
                # Nested network (e.g. a backbone): walk its own graph.
                return _walk(_graph(op), args[0], calls, f"{prefix}{op.name}/")
            out = op.compute_output_spec(*args, **kwargs)
            if not isinstance(op, keras.layers.InputLayer):
                ins = args[0] if isinstance(args[0], (list, tuple)) else [args[0]]
                calls.append({"name": prefix + op.name, "layer": op, "output_shape": tuple(out.shape),
                              "input_shapes": [tuple(t.shape) for t in ins]})
            return out

        return run

    return compat.run_through_graph(model, inputs, operation_fn)
