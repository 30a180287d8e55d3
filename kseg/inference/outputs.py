"""Colour masks, overlays, confidence maps and probabilities: what `kseg predict` writes.

Per image `<stem>`: `_mask.png` (dataset palette) and `_overlay.png` always;
`_confidence.png` (8-bit grey, 255 * the top softmax probability) with `confidence`;
`_probs.npz` (`probs`: float16 (H, W, K) softmax, `classes`) with `probs`. Outputs are
built band by band from the logits, so only `probs` ever holds (H, W, K) values.

Everything here is numpy on label maps; the network is called through
`kseg.inference.frames`, the same code `kseg eval` uses, so what a user sees is what was
scored.
"""

import glob
from pathlib import Path

import numpy as np

# colorize: class indices -> the dataset palette, one definition for masks, figures and data.
from kseg.data.io import IMAGE_SUFFIXES, colorize, display_rgb
from kseg.errors import KsegError

OVERLAY_ALPHA = 0.5  # weight of the colour mask in an overlay


def overlay(image, colors, alpha=OVERLAY_ALPHA, labels=None, void=None):
    """Alpha-blend a colour mask over an image, both uint8 (H, W, 3).

    Where `labels == void` the image shows through unchanged, so unlabeled pixels are
    not darkened towards black.
    """
    image = np.asarray(image, np.float32)
    blend = (1 - alpha) * image + alpha * np.asarray(colors, np.float32)
    if labels is not None and void is not None:
        blend = np.where((np.asarray(labels) == void)[..., None], image, blend)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


OUTPUT_SUFFIXES = ("_mask.png", "_overlay.png")
EXTRA_SUFFIXES = ("_confidence.png", "_probs.npz")
# Pillow refuses (DecompressionBombError) images over twice its MAX_IMAGE_PIXELS; kseg
# checks the header against the same limit first, so the error is one line.
MAX_PIXELS = 2 * 89_478_485


def expand_inputs(items, out_dir=None):
    """Files, folders and glob patterns -> sorted, de-duplicated list of image paths.

    A folder contributes its image files (by suffix, not recursive). The outputs kseg
    wrote into `out_dir` before (its manifest, kseg.writes) are left out, so predicting a
    folder into itself twice does not predict the first run's masks; a user's own
    `street_mask.png` there is an input like any other. Raises KsegError naming the
    first argument that matches nothing.
    """
    from kseg.writes import OutputFolder

    folder = OutputFolder(out_dir) if out_dir is not None else None

    def own_output(f):
        return folder is not None and folder.owns(f)

    paths = []
    for item in items:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not own_output(f))
            if not found:
                raise KsegError(f"{item}: folder has no images ({', '.join(IMAGE_SUFFIXES)}) "
                                f"besides kseg's own outputs")
        elif p.is_file():
            found = [p]
        elif glob.has_magic(item):
            found = sorted(Path(f) for f in glob.glob(item) if Path(f).is_file() and not own_output(Path(f)))
            if not found:
                raise KsegError(f"{item}: pattern matches no files")
        else:
            raise KsegError(f"{item}: no such file or folder")
        paths.extend(found)
    # Keep first occurrence order; a file named twice is predicted once.
    return list(dict.fromkeys(paths))


def output_names(image_path, out_dir):
    """(<stem>_mask.png, <stem>_overlay.png) in out_dir."""
    stem = Path(image_path).stem
    return tuple(Path(out_dir) / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES)


def claim_outputs(paths, out_dir, confidence=False, probs=False):
    """Every file predict_images will write, checked against the write policy (none is
    an input, none is a file kseg did not write) before the first image is predicted."""
    from kseg.writes import OutputFolder

    extra = [s for s, wanted in zip(EXTRA_SUFFIXES, (confidence, probs), strict=True) if wanted]
    names = [f"{Path(p).stem}{suffix}" for p in paths for suffix in (*OUTPUT_SUFFIXES, *extra)]
    OutputFolder(out_dir, inputs=paths).claim(names)


def check_unique_stems(paths):
    """Outputs are named by stem: two inputs with one stem would overwrite each other."""
    stems = {}
    for p in paths:
        if p.stem in stems:
            raise KsegError(f"{p}: same name as {stems[p.stem]}; outputs would overwrite each other")
        stems[p.stem] = p


def read_input_image(path, max_pixels=None, channels=3):
    """kseg.data.io.read_image (uint8 (H, W, channels)) with any failure turned into a
    one-line KsegError; `channels` is the run's (kseg.inference.frames.input_channels).

    An image over `max_pixels` (default MAX_PIXELS) is refused from its header, before
    any pixel is decoded.
    """
    from kseg.data import io

    limit = MAX_PIXELS if max_pixels is None else max_pixels
    h, w = io.image_size(path)
    if h * w > limit:
        raise KsegError(f"{path}: {w}x{h} is {h * w / 1e6:.0f} Mpixel, more than kseg decodes "
                        f"({limit / 1e6:.0f} Mpixel); split or downscale it first")
    try:
        image = io.read_image(path, channels)
    except KsegError:
        raise
    except Exception as exc:  # imageio raises many types for a bad file
        raise KsegError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if image.ndim != 3 or image.shape[-1] != channels:
        raise KsegError(f"{path}: expected an image of {channels} channels, got shape {image.shape}")
    return image


def check_input_array(image, channels, where="image"):
    """An array given to kseg.predict, as the network takes it: uint8 or float (H, W,
    channels), finite. A grey (H, W) array is (H, W, 1) for a run of one channel; any
    other shape or channel count is a KsegError naming `where` and the run's channels."""
    array = np.asarray(image)
    if array.dtype.kind not in "uif" or array.size == 0:
        raise KsegError(f"{where}: expected an image array of numbers, got dtype {array.dtype} and "
                        f"shape {array.shape}")
    if array.ndim == 2 and channels == 1:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] != channels:
        grey = " (a grey image)" if array.ndim == 2 else ""
        raise KsegError(f"{where}: shape {array.shape}{grey} does not fit the run, which takes "
                        f"(H, W, {channels}) images (its --channels {channels}); convert it first")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise KsegError(f"{where}: holds NaN or infinite values")
    return array


def softmax(logits):
    """float32 softmax over the last axis."""
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def frame_outputs(model, image, stride, mode=None, probs=False, threshold=None, multilabel=False):
    """(labels uint8 (H, W), confidence uint8 (H, W), probs float16 (H, W, K) or None).

    Confidence is 255 * the largest softmax probability. Where rounding to float16 ties
    the predicted class with another, its probability is raised one float16 step, so
    argmax(probs) is always the label map (without a binary run's `threshold`, which
    labels foreground where its probability >= threshold, frames.labels_from_logits).
    `multilabel`: labels hold one bit per class, probs are sigmoids, and confidence is
    the least certain class's max(p, 1 - p).
    """
    from kseg.inference.frames import iter_logit_bands, labels_from_logits

    labels, conf, p16 = [], [], []
    for _, logits in iter_logit_bands(model, image, stride, mode):
        p = 1 / (1 + np.exp(-logits)) if multilabel else softmax(logits)  # (h, W, K)
        labels.append(labels_from_logits(logits, threshold, multilabel))
        top = np.maximum(p, 1 - p).min(-1) if multilabel else p.max(-1)
        conf.append(np.rint(255 * top).astype(np.uint8))
        if probs:
            exact = threshold is None and not multilabel
            p16.append(_argmax_safe_float16(p, labels[-1]) if exact else p.astype(np.float16))
    return np.concatenate(labels), np.concatenate(conf), np.concatenate(p16) if probs else None


def _argmax_safe_float16(p, labels):
    q = p.astype(np.float16)
    bad = q.argmax(-1) != labels
    if bad.any():
        rows, idx = q[bad], labels[bad].astype(np.intp)
        rows[np.arange(len(rows)), idx] = np.nextafter(rows.max(-1), np.float16(2))
        q[bad] = rows
    return q


def predict_images(model, paths, spec, out_dir, stride, mode=None, on_written=None, confidence=False,
                   probs=False, threshold=None):
    """Predict each image and write its outputs, one image at a time.

    `mode`: an InferenceMode (default whole frames) or a (grid, patch) pair. Always a
    colour mask and an overlay (a multi-label run: also `<stem>_<class>.png` per class);
    `confidence` adds `<stem>_confidence.png`, `probs` `<stem>_probs.npz`. Files are
    written as soon as each image is done, so an unreadable image later in the list
    raises KsegError (naming it) while earlier outputs stay on disk. Returns a list of
    (image, mask_path, overlay_path).
    """
    import imageio.v3 as iio

    from kseg.atomic import atomic_path
    from kseg.inference.frames import input_channels

    channels = input_channels(model)
    out_dir = Path(out_dir)
    claim_outputs(paths, out_dir, confidence, probs)
    written = []
    for path in paths:
        image = read_input_image(path, channels=channels)
        labels, conf, p16 = frame_outputs(model, image, stride, mode, probs, threshold, spec.multilabel)
        colors = colorize(labels, spec)
        mask_path, overlay_path = output_names(path, out_dir)
        pngs = [(mask_path, colors), (overlay_path, overlay(display_rgb(image), colors))]
        if spec.multilabel:  # one 0/255 mask per class, as the class folders hold them
            pngs += [(out_dir / f"{Path(path).stem}_{name}.png", ((labels >> c) & 1) * 255)
                     for c, name in enumerate(spec.classes)]
        if confidence:
            pngs.append((out_dir / f"{Path(path).stem}_confidence.png", conf))
        for target, pixels in pngs:
            with atomic_path(target) as tmp:
                iio.imwrite(tmp, pixels)
        if probs:
            with atomic_path(out_dir / f"{Path(path).stem}_probs.npz") as tmp:
                np.savez_compressed(tmp, probs=p16, classes=np.array(spec.classes))
        written.append((Path(path), mask_path, overlay_path))
        if on_written is not None:
            on_written(*written[-1])
    return written
