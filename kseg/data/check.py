"""Validate a dataset before any model is built: `kseg data check`.

Every pair is decoded, so unreadable or truncated files, size mismatches, stray mask
values and RGB masks without a colour map all fail here with one line naming the file,
rather than minutes into training.
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kseg.data import io, trainable
from kseg.data.multilabel_masks import class_counts
from kseg.data.overlap import split_overlaps
from kseg.data.readers import Dataset, open_dataset
from kseg.errors import DataError


def check_pair(pair, spec, channels=3):
    """Decode one pair; return (mask value counts (256,), (H, W)). Raises DataError."""
    image = io.read_image(pair.image, channels)
    mask = io.read_mask(pair.mask, spec, check=False)
    if image.shape[:2] != mask.shape:
        raise DataError(f"{pair.image}: image size {image.shape[0]}x{image.shape[1]} != "
                        f"mask size {mask.shape[0]}x{mask.shape[1]} ({pair.mask})")
    return io.check_mask_values(mask, spec, pair.mask), mask.shape


def check_dataset(root, spec=None, threads=4, channels=3, write_spec=True):
    """Open (or take, a Dataset) and fully decode a dataset; return a JSON-ready summary.

    `channels`: what every image must hold (kseg.data.io.read_image; `kseg fit --channels`).
    `write_spec=False` leaves an inferred palette unwritten (kseg fit's plan writes nothing).
    Returns {"root", "layout", "spec", "channels", "splits": {split: {"pairs", "sizes",
    "pixels" (per class), "void", "total", "frequency" (per class, of labelled pixels)}},
    "inferred": kseg.data.trainable.describe, "kseg_json": an inferred palette written}.
    Raises DataError (one line, naming the file) on the first problem found, and on a
    set that cannot train (kseg.data.trainable.refuse).
    """
    ds = root if isinstance(root, Dataset) else open_dataset(root, spec)
    summary = {"root": str(ds.root), "layout": ds.layout, "spec": ds.spec.to_dict(), "channels": channels,
               "splits": {}, "warnings": split_overlaps(ds.splits)}
    for split, pairs in ds.splits.items():
        if not pairs:
            raise DataError(f"{ds.root}: empty split '{split}'")
        counts = np.zeros(256, np.int64)
        sizes = Counter()
        # Pillow decodes without the GIL; map keeps order, so the first error is reported.
        with ThreadPoolExecutor(threads) as pool:
            for c, shape in pool.map(lambda p: check_pair(p, ds.spec, channels), pairs):
                counts += c
                sizes[f"{shape[0]}x{shape[1]}"] += 1
        pixels, labelled = class_counts(counts, ds.spec)  # multi-label: per class bit
        summary["splits"][split] = {
            "pairs": len(pairs),
            "sizes": dict(sizes),
            "pixels": pixels.tolist(),
            "void": int(counts[ds.spec.void]) if ds.spec.void is not None else 0,
            "total": int(counts.sum()),
            "frequency": (pixels / max(labelled, 1)).tolist(),
        }
    summary["inferred"] = trainable.describe(ds, summary["splits"])
    trainable.refuse(ds, summary["inferred"])
    written = trainable.write_inferred_spec(ds) if write_spec else None
    summary["kseg_json"] = str(written) if written else None
    return summary


def summary_tables(summary):
    """(splits table, classes table) as (title, columns, rows) triples for output.print_table."""
    splits = summary["splits"]
    rows = [(s, d["pairs"], ", ".join(d["sizes"]), 100.0 * d["void"] / max(d["total"], 1))
            for s, d in splits.items()]
    split_table = (f"{summary['root']} ({summary['layout']} layout, spec "
                   f"'{summary['spec']['name']}')", ["split", "pairs", "size", "void %"], rows)
    names = summary["spec"]["classes"]
    class_rows = [(i, name, *(100.0 * splits[s]["frequency"][i] for s in splits))
                  for i, name in enumerate(names)]
    class_table = ("Per-class pixel frequency (% of labelled pixels)",
                   ["id", "class", *(f"{s} %" for s in splits)], class_rows)
    return split_table, class_table
