"""TensorFlow's fused batch-norm kernel behind Keras' BatchNormalization, while training.

Keras 3 runs BatchNormalization on TensorFlow as separate ops: it casts bfloat16
activations to float32, takes their moments, normalises and casts back, a pass over the
tensor for each. TensorFlow's FusedBatchNormV3 (oneDNN on a CPU, cuDNN on a GPU) does it
in one kernel, reading bfloat16 directly. On kseg's U-Net train step (128 px, batch 16)
that is 1.22x the patches per second in mixed_bfloat16 and 1.07x in float32; DeepLabV3
gains 1.09x (benchmarks/LOG.md).

Only the `call` of each layer of the model being trained is replaced. Its weights, its
config and the `.keras` files it is saved to stay those of keras.layers.BatchNormalization,
so checkpoints load in a bare `import keras` with no custom objects. Inference (training
False) keeps Keras' own code.
"""

import keras

from kseg import compat

FUSED_DTYPES = ("float16", "bfloat16", "float32")  # what FusedBatchNormV3 takes as x


def fuse_batch_norms(model):
    """Route every eligible BatchNormalization in `model` through the fused kernel.

    Eligible: TensorFlow backend, no batch renormalisation, not synchronized across
    replicas (the kernel sees one replica's batch). Returns how many layers were switched.
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and compat.batch_norm_fusable(layer):
            count += compat.replace_call(layer, _fused_call)
    return count


def _layers(layer):
    """`layer` and every layer nested in it (functional sub-models included)."""
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _layers(child)


def _fused_call(layer, keras_call, inputs, training=None, mask=None):
    """BatchNormalization.call for NHWC inputs in training; anything else goes to Keras."""
    if not _kernel_serves(layer, inputs, training, mask):
        return keras_call(inputs, training=training, mask=mask)
    import tensorflow as tf

    channels = inputs.shape[-1]
    scale = tf.cast(layer.gamma, tf.float32) if layer.scale else tf.ones((channels,))
    offset = tf.cast(layer.beta, tf.float32) if layer.center else tf.zeros((channels,))
    empty = tf.constant([], tf.float32)
    # y: (N, H, W, C) in the input's dtype; mean, variance: (C,) float32.
    y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=layer.epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    # The kernel returns the unbiased variance (n / (n - 1)); Keras averages the biased one.
    n = tf.cast(tf.size(inputs) // channels, tf.float32)
    _update_moving(layer.moving_mean, mean, layer.momentum)
    _update_moving(layer.moving_variance, variance * (n - 1.0) / n, layer.momentum)
    return tf.cast(y, layer.compute_dtype)


def _kernel_serves(layer, inputs, training, mask):
    """True for a training call on 4-D channels-last inputs of a dtype the kernel takes."""
    rank = len(inputs.shape)
    return (bool(training) and layer.trainable and mask is None and rank == 4
            and layer.axis in (-1, rank - 1)
            and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES)


def _update_moving(variable, value, momentum):
    """Keras' moving average: variable <- variable * momentum + value * (1 - momentum)."""
    variable.assign(variable * momentum + keras.ops.cast(value, variable.dtype) * (1 - momentum))
