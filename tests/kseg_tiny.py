"""Tiny registered models for fast training tests (also usable from a subprocess).

`PYTHONPATH=tests python -c "import kseg_tiny; kseg_tiny.main()" fit tiny_test ...`
runs the real `kseg` CLI with these models registered.
"""

import kseg

NAME = "tiny_test"
OTHER = "tiny_other"


def _tiny(name, num_classes, input_shape, width, activation):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)  # (B, H, W, width)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="segmentation_output")(x)  # logits
    if activation == "softmax":
        x = keras.layers.Softmax(name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, x, name=name)


@kseg.register_model(NAME, stride=4)
def tiny_test(num_classes=12, input_shape=(None, None, 3), width=8, activation=None):
    """Two 3x3 convs and the 1x1 head: enough to learn colours, fast on a CPU."""
    return _tiny(NAME, num_classes, input_shape, width, activation)


@kseg.register_model(OTHER, stride=4)
def tiny_other(num_classes=12, input_shape=(None, None, 3), width=4, activation=None):
    """The same, narrower, under another name."""
    return _tiny(OTHER, num_classes, input_shape, width, activation)


def main():
    from kseg.cli.main import run

    run()


if __name__ == "__main__":
    main()
