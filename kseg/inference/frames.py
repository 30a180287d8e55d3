"""Whole frames for evaluation and prediction.

Two ways to run a network over a frame of any size:
  * padded: pad the frame to a multiple of the network's stride (reflect, or zero),
    predict once, crop the logits back (`predict_frames`). The honest way.
  * patch grid: the study's way: cut the frame into R x C cells, resize each to
    `patch`, predict, resize the logits back to the cell and stitch
    (`predict_patch_grid`); reproduces how the study scored whole frames.

`frame_logits` / `iter_logit_bands` take a `kseg.inference.mode.InferenceMode` that also
selects sliding windows (`kseg.inference.window`) and test-time augmentation
(`kseg.inference.tta`): the one path of `eval`, `predict` and `report`.

Images: uint8 or float (N, H, W, C) array or a list of (H, W, C) arrays, pixel values in
[0, 255] (the models rescale internally); C is the model's (`input_channels`), 3 for RGB.
Label maps come back as uint8 (N, H, W) and logits one frame at a time (float32 (H, W, K)),
since a whole split of logits would not fit in memory (CamVid val: 101 * 360 * 480 * 12 * 4 B = 838 MB).
"""

import weakref

import numpy as np

from kseg.data.io import grid_cells, resize_bilinear
from kseg.errors import KsegError


def pad_to_stride(image, stride, mode="reflect"):
    """Pad (H, W, C) at the bottom/right to multiples of `stride`: reflect or zero."""
    if mode not in ("reflect", "zero"):
        raise ValueError(f"pad mode must be 'reflect' or 'zero'. Received: mode={mode!r}")
    h, w = image.shape[:2]
    ph, pw = (-h) % stride, (-w) % stride
    if not (ph or pw):
        return image
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect" if mode == "reflect" else "constant")


def input_channels(model):
    """C of the model's (B, H, W, C) input: the channels its frames are read with (3: RGB).

    A run's config.json records the same number (`channels`, from `kseg fit --channels`)."""
    shape = model.input_shape
    shape = shape[0] if isinstance(shape, list) else shape
    return int(shape[-1]) if shape[-1] is not None else 3


def fixed_input_size(model):
    """(H, W) of a network built for one input size (keras-hub's SegFormer), else None."""
    shape = model.input_shape
    shape = shape[0] if isinstance(shape, list) else shape
    return None if None in shape[1:3] else (int(shape[1]), int(shape[2]))


def check_input_size(model, frame_hw, stride, mode):
    """KsegError unless `mode` feeds a fixed-size network (`fixed_input_size`) its size.

    Whole frames feed it the frame padded to the stride, windows their tiles (smaller
    for a frame side shorter than the window), the patch grid its patch, and TTA
    scales resized copies, so only tiles or patches of its size fit.
    """
    from kseg.inference.window import tile_side

    fixed = fixed_input_size(model)
    if fixed is None:
        return
    h, w = frame_hw
    if mode.patches is not None:
        fed = (mode.patches[1],) * 2
    elif mode.window is not None:
        fed = (tile_side(mode.window, stride, h), tile_side(mode.window, stride, w))
    else:
        fed = (-(-h // stride) * stride, -(-w // stride) * stride)
    if fed == fixed and mode.scales == (1.0,):
        return
    fix = f"--window {fixed[0]}" if fixed[0] == fixed[1] else "tiles of that size"
    if mode.scales != (1.0,):
        fix += " and no TTA scales (they resize the input)"
    raise KsegError(f"This network takes {fixed[0]}x{fixed[1]} inputs only (it was built for one size), but "
                    f"{mode.describe()} feed it {fed[0]}x{fed[1]} for a {h}x{w} frame: use {fix}.")


def _predict(model, x):
    """float32 logits (B, H, W, K) of a (B, H, W, 3) batch; K = 2 for a binary network."""
    import keras

    x = np.asarray(x, np.float32)
    if keras.backend.backend() != "tensorflow":
        return two_class_logits(np.asarray(model.predict_on_batch(x), np.float32))
    return two_class_logits(np.asarray(_graph_call(model)(x), np.float32))


def two_class_logits(logits):
    """A binary network's one sigmoid logit z (..., 1) as the two-class logits [0, z]
    (softmax: [1 - sigmoid(z), sigmoid(z)], argmax: z > 0); other logits unchanged.
    Every score, mask and file after the network then treats it as a two-class run."""
    if logits.shape[-1] != 1:
        return logits
    return np.concatenate([np.zeros_like(logits), logits], axis=-1)


_GRAPH_CALLS = weakref.WeakKeyDictionary()


def _graph_call(model):
    """The model as a TF graph traced once per input shape, with concrete sizes.

    Keras 3.15's bilinear UpSampling2D breaks in a graph traced for unknown sizes
    (it compares a symbolic size with 0 in Python), which predict_on_batch does on a
    second frame size; an eager call avoids that but is 1.45x slower (measured: U-Net
    on a 384x480 frame, 1.21 s eager, 0.80 s in a graph).
    """
    if model not in _GRAPH_CALLS:
        import tensorflow as tf

        # The function refers to the model weakly: a strong reference from the cached
        # value would keep its weak key, and so every model ever predicted, alive.
        ref = weakref.ref(model)
        _GRAPH_CALLS[model] = tf.function(lambda v: ref()(v, training=False), reduce_retracing=False)
    return _GRAPH_CALLS[model]


def iter_frame_logits(model, images, stride, batch_size=1, pad_mode="reflect"):
    """Yield float32 (H, W, K) logits per frame, predicted on stride-padded frames."""
    batch, shapes = [], []

    def flush():
        out = _predict(model, np.stack(batch))  # (B, Hp, Wp, K)
        for logits, (h, w) in zip(out, shapes, strict=True):
            yield logits[:h, :w]
        batch.clear()
        shapes.clear()

    for image in images:
        padded = pad_to_stride(np.asarray(image, np.float32), stride, pad_mode)
        if batch and (padded.shape != batch[0].shape or len(batch) == batch_size):
            yield from flush()
        batch.append(padded)
        shapes.append(image.shape[:2])
    if batch:
        yield from flush()


def predict_frames(model, images, stride, batch_size=1, pad_mode="reflect"):
    """uint8 (N, H, W) label maps; frames padded to `stride`, logits cropped back.

    Args:
        model: a keras model returning (B, H, W, K) logits or probabilities.
        images: (N, H, W, 3) array or list of (H, W, 3) arrays in [0, 255].
        stride: the network's output stride (kseg.registry.get_entry(name).stride).
        batch_size: frames per predict call (frames of equal size are batched).
        pad_mode: "reflect" (default; no artificial edges) or "zero".
    """
    maps = [np.argmax(z, axis=-1).astype(np.uint8)
            for z in iter_frame_logits(model, images, stride, batch_size, pad_mode)]
    return _stack(maps)


def iter_patch_grid_logits(model, images, grid=(4, 4), patch=128):
    """Yield float32 (H, W, K) logits per frame, by the study's patch-and-stitch."""
    for image in images:
        h, w = image.shape[:2]
        cells = grid_cells(h, w, grid)
        x = np.stack([resize_bilinear(image[y0:y1, x0:x1], (patch, patch))
                      for y0, y1, x0, x1 in cells])  # (R*C, p, p, 3)
        out = _predict(model, x)  # (R*C, p, p, K)
        logits = np.empty((h, w, out.shape[-1]), np.float32)
        for (y0, y1, x0, x1), z in zip(cells, out, strict=True):
            logits[y0:y1, x0:x1] = resize_bilinear(z, (y1 - y0, x1 - x0))
        yield logits


def predict_patch_grid(model, images, grid=(4, 4), patch=128):
    """uint8 (N, H, W) label maps by the study's grid: cells resized to `patch`,
    predicted, logits resized back bilinearly and stitched."""
    return _stack([np.argmax(z, axis=-1).astype(np.uint8)
                   for z in iter_patch_grid_logits(model, images, grid, patch)])


def as_mode(mode):
    """An InferenceMode from None (whole frames), a (grid, patch) pair (the patch grid) or itself."""
    from kseg.inference.mode import InferenceMode

    if mode is None:
        return InferenceMode()
    if isinstance(mode, InferenceMode):
        return mode
    return InferenceMode(patches=mode)


def iter_logit_bands(model, image, stride, mode=None):
    """Yield (y0, float32 (h, W, K) logits) bands of one (H, W, 3) frame, top to bottom.

    Whole frames and the patch grid come as one band; sliding windows as the rows each
    finished tile row frees (`kseg.inference.window`), so a large image never holds
    (H, W, K) logits at once. Test-time augmentation wraps every network call.
    """
    from kseg.inference.tta import tta_predict
    from kseg.inference.window import iter_window_bands

    mode = as_mode(mode)
    check_input_size(model, image.shape[:2], stride, mode)
    if mode.patches is not None:
        grid, patch = mode.patches
        yield 0, next(iter_patch_grid_logits(model, [image], grid=grid, patch=patch))
        return

    def predict(x):  # (B, h, w, 3) -> (B, h, w, K), flips and scales averaged
        return tta_predict(lambda v: _predict(model, v), x, stride, mode.flip, mode.scales)

    if mode.window is None:
        yield 0, predict(np.asarray(image, np.float32)[None])[0]
        return
    yield from iter_window_bands(predict, image, stride, mode.window, mode.overlap, mode.batch_size)


def frame_logits(model, image, stride, mode=None):
    """float32 (H, W, K) logits of one (H, W, 3) frame: what `eval`, `predict` and `report` see.

    `mode`: a `kseg.inference.mode.InferenceMode` (whole frame padded to `stride` by
    default; sliding windows, test-time augmentation, or the study's patch grid), or a
    `(grid, patch)` pair for the patch grid.
    """
    bands = [z for _, z in iter_logit_bands(model, image, stride, mode)]
    return bands[0] if len(bands) == 1 else np.concatenate(bands)


def predict_labels(model, image, stride, mode=None, threshold=None, multilabel=False):
    """uint8 (H, W) label map of one (H, W, 3) frame (see `frame_logits`), band by band;
    `threshold`, `multilabel`: see `labels_from_logits`."""
    return np.concatenate([labels_from_logits(z, threshold, multilabel)
                           for _, z in iter_logit_bands(model, image, stride, mode)])


def labels_from_logits(logits, threshold=None, multilabel=False):
    """uint8 label map of float (..., K) logits: the argmax, or for two classes with a
    `threshold` in (0, 1), 1 (foreground) where softmax(logits)[..., 1] >= threshold;
    `multilabel`: bit c set where sigmoid(z_c) >= threshold (default 0.5).

    p1 = sigmoid(z1 - z0), so p1 >= t is z1 - z0 >= log(t / (1 - t)): no softmax needed.
    """
    if multilabel:
        t = 0.5 if threshold is None else threshold
        on = logits >= np.log(t / (1.0 - t))  # (..., K)
        return (on.astype(np.uint8) << np.arange(logits.shape[-1], dtype=np.uint8)).sum(-1).astype(np.uint8)
    if threshold is None:
        return np.argmax(logits, axis=-1).astype(np.uint8)
    margin = logits[..., 1] - logits[..., 0]
    return (margin >= np.log(threshold / (1.0 - threshold))).astype(np.uint8)


def _stack(maps):
    # Frames of different sizes cannot share an array: return a list then.
    if maps and all(m.shape == maps[0].shape for m in maps):
        return np.stack(maps)
    return maps
