"""Sliding windows, test-time augmentation and the inference mode, on models built here.

A model of 3x3 convs has a receptive field of a few pixels and no global context, so a
tile's logits equal the whole frame's except within that radius of the tile's own
edges, where the blend weight is small; a 1x1-conv model is pointwise and flip-symmetric.
"""

import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.inference.frames import frame_logits, iter_logit_bands, predict_labels
from kseg.inference.mode import InferenceMode, make_mode, parse_tta


def conv_model(kernel=3, depth=3, classes=4, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    for i in range(depth - 1):
        x = keras.layers.Conv2D(8, kernel, padding="same", activation="tanh", name=f"conv{i}")(x)
    x = keras.layers.Conv2D(classes, kernel, padding="same", name="segmentation_output")(x)
    return keras.Model(inputs, x)


@pytest.fixture(scope="module")
def local_model():
    return conv_model(kernel=3)  # receptive radius 3


@pytest.fixture(scope="module")
def pointwise_model():
    return conv_model(kernel=1)


def image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


@pytest.mark.parametrize("size", [(40, 56), (64, 64), (5, 63)])
def test_window_no_larger_than_a_tile_is_the_whole_frame(local_model, size):
    x = image(*size)
    full = frame_logits(local_model, x, 4)
    win = frame_logits(local_model, x, 4, InferenceMode(window=64))
    assert win.shape == (*size, 4)
    np.testing.assert_array_equal(win, full)


def test_windows_equal_whole_frame_away_from_tile_edges(local_model, pointwise_model):
    x = image(150, 230, seed=1)  # not multiples of the window nor of the stride
    mode = InferenceMode(window=64, overlap=0.33, batch_size=3)
    bands = list(iter_logit_bands(local_model, x, 4, mode))
    assert len(bands) > 1 and all(len(z) <= 64 for _, z in bands)  # streamed, one tile high at most
    assert [y for y, _ in bands] == sorted(y for y, _ in bands)
    assert sum(len(z) for _, z in bands) == 150
    win, full = np.concatenate([z for _, z in bands]), frame_logits(local_model, x, 4)
    assert win.shape == full.shape == (150, 230, 4)
    # Away from the image's borders (where the whole frame sees its reflect padding to
    # the stride and a flush tile the convs' zeros): near a tile's inner edge its logits
    # differ, but its blend weight there is a few percent at most (measured: 0.6%).
    r, scale = 4, np.abs(full).max()
    assert np.abs(win - full)[r:-r, r:-r].max() < 0.02 * scale
    assert (win.argmax(-1) == full.argmax(-1))[r:-r, r:-r].mean() > 0.99
    # A pointwise model has no context to lose: windows blend to the whole frame exactly.
    np.testing.assert_allclose(frame_logits(pointwise_model, x, 4, mode), frame_logits(pointwise_model, x, 4),
                               rtol=1e-5, atol=1e-5)


def test_window_seams_are_smooth(local_model):
    # Hard seams would cut a tile where the next begins; blending keeps every pixel a
    # weighted mean of the tiles that cover it (so between their values).
    from kseg.inference.window import ramp, starts, tile_side

    w = ramp(64)
    assert w.min() > 0 and w.argmax() in (31, 32) and np.allclose(w, w[::-1])
    assert tile_side(512, 32, 100) == 128 and tile_side(500, 32, 4096) == 512
    assert starts(230, 64, 42) == [0, 42, 84, 126, 166] and starts(40, 64, 42) == [0]


def test_flip_tta_is_no_tta_on_a_flip_symmetric_model(pointwise_model, local_model):
    x = image(48, 72, seed=2)
    plain = frame_logits(pointwise_model, x, 4)
    np.testing.assert_allclose(frame_logits(pointwise_model, x, 4, InferenceMode(flip=True)), plain,
                               rtol=1e-5, atol=1e-5)
    scaled = frame_logits(local_model, x, 4, make_mode(tta="scales=0.75:1:1.25"))
    assert scaled.shape == plain.shape[:2] + (4,)
    assert np.abs(scaled - frame_logits(local_model, x, 4)).max() > 1e-3
    both = frame_logits(local_model, image(150, 100), 4, make_mode(window=64, tta="flip,scales=0.5:1"))
    assert both.shape == (150, 100, 4) and np.isfinite(both).all()


def test_mode_parsing_and_errors():
    assert parse_tta("flip,scales=0.75:1:1.25") == (True, (0.75, 1.0, 1.25))
    assert parse_tta(None) == (False, (1.0,)) and parse_tta("scales=2") == (False, (2.0,))
    mode = make_mode(window=512, tta="flip")
    assert mode.name == "window" and mode.describe() == "window 512 (overlap 0.33), TTA flip, scales 1"
    assert InferenceMode(patches=([2, 2], 32)).patches == ((2, 2), 32)
    assert mode.to_dict()["window"] == 512 and mode == make_mode(window=512, tta="flip")
    for bad, match in [(lambda: parse_tta("flop"), "flop"), (lambda: parse_tta("scales=a"), "scales"),
                       (lambda: InferenceMode(overlap=1.0), "overlap"),
                       (lambda: InferenceMode(patches=((2, 2), 32), window=64), "--patches")]:
        with pytest.raises(KsegError, match=match):
            bad()


def test_labels_band_by_band_and_large_image_refused(local_model, tmp_path):
    import imageio.v3 as iio

    from kseg.inference.outputs import read_input_image

    x = image(130, 90)
    mode = InferenceMode(window=32)
    np.testing.assert_array_equal(predict_labels(local_model, x, 4, mode),
                                  frame_logits(local_model, x, 4, mode).argmax(-1))
    path = tmp_path / "big.png"
    iio.imwrite(path, x)
    with pytest.raises(KsegError, match=r"big.png: 90x130 is 0 Mpixel, more than kseg decodes") as err:
        read_input_image(path, max_pixels=1000)
    assert "\n" not in str(err.value)


def test_a_fixed_size_network_gets_windows_of_its_size_or_a_clear_error():
    # A network built for 32x32 inputs only (as keras-hub's SegFormer): whole frames,
    # other windows and TTA scales would feed it other sizes, which Keras rejects deep in
    # the graph; kseg names the size and the option that fits instead.
    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    frame = image(40, 48)
    expected = r"takes 32x32 inputs only.*feed it 64x64 for a 40x48 frame: use --window 32\."
    with pytest.raises(KsegError, match=expected):
        frame_logits(model, frame, 32)
    with pytest.raises(KsegError, match="feed it 64x64"):
        frame_logits(model, frame, 32, InferenceMode(window=64))
    with pytest.raises(KsegError, match="no TTA scales"):
        frame_logits(model, frame, 32, InferenceMode(window=32, scales=(1.0, 1.5)))
    logits = frame_logits(model, frame, 32, InferenceMode(window=32, flip=True))
    assert logits.shape == (40, 48, 4) and np.isfinite(logits).all()
