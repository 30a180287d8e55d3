"""Colour masks and overlays for images: what `kseg predict` writes.

Everything here is numpy on label maps; the network is called through
`kseg.inference.frames`, the same code `kseg eval` uses, so what a user sees is what was
scored.
"""

import glob
from pathlib import Path

import numpy as np

# colorize: class indices -> the dataset palette, one definition for masks, figures and data.
from kseg.data.io import IMAGE_SUFFIXES, colorize
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


def expand_inputs(items, out_dir=None):
    """Files, folders and glob patterns -> sorted, de-duplicated list of image paths.

    A folder contributes its image files (by suffix, not recursive). Files that look
    like kseg's own outputs inside `out_dir` are left out, so predicting a folder into
    itself twice does not predict the first run's masks. Raises KsegError naming the
    first argument that matches nothing.
    """
    out = Path(out_dir).resolve() if out_dir is not None else None

    def own_output(f):
        return out is not None and f.name.endswith(OUTPUT_SUFFIXES) and f.parent.resolve() == out

    paths = []
    for item in items:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not own_output(f))
            if not found:
                raise KsegError(f"{item}: folder has no images ({', '.join(IMAGE_SUFFIXES)}) "
                                f"besides kseg's own *_mask.png / *_overlay.png")
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


def check_unique_stems(paths):
    """Outputs are named by stem: two inputs with one stem would overwrite each other."""
    stems = {}
    for p in paths:
        if p.stem in stems:
            raise KsegError(f"{p}: same name as {stems[p.stem]}; outputs would overwrite each other")
        stems[p.stem] = p


def read_input_image(path):
    """kseg.data.io.read_image with any failure turned into a one-line KsegError."""
    from kseg.data import io

    try:
        image = io.read_image(path)
    except KsegError:
        raise
    except Exception as exc:  # imageio raises many types for a bad file
        raise KsegError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if image.ndim != 3 or image.shape[-1] != 3:
        raise KsegError(f"{path}: expected an RGB image, got shape {image.shape}")
    return image


def predict_images(model, paths, spec, out_dir, stride, patches=None, on_written=None):
    """Predict each image and write its colour mask and overlay, one image at a time.

    Files are written as soon as each image is done, so an unreadable image later in
    the list raises KsegError (naming it) while earlier outputs stay on disk.
    Returns a list of (image, mask_path, overlay_path).
    """
    import imageio.v3 as iio

    from kseg.atomic import atomic_path
    from kseg.inference.frames import predict_labels

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        image = read_input_image(path)
        labels = predict_labels(model, image, stride, patches)
        colors = colorize(labels, spec)
        mask_path, overlay_path = output_names(path, out_dir)
        for target, pixels in ((mask_path, colors), (overlay_path, overlay(image, colors))):
            with atomic_path(target) as tmp:
                iio.imwrite(tmp, pixels)
        written.append((Path(path), mask_path, overlay_path))
        if on_written is not None:
            on_written(*written[-1])
    return written
