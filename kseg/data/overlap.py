"""Frames listed in two splits: a leak that makes validation scores measure memory.

Two list files (train.txt and val.txt) that name the same image put one frame in both
splits; nothing fails, but val scores frames the network trained on. `kseg data check`
and `kseg fit` warn in one line per pair of splits.
"""

import os
from itertools import combinations


def split_overlaps(splits):
    """One warning line per pair of splits sharing frames (the same image file), else []."""
    images = {split: {os.path.realpath(p.image): p.image for p in pairs} for split, pairs in splits.items()}
    lines = []
    for a, b in combinations(images, 2):
        shared = sorted(set(images[a]) & set(images[b]))
        if shared:
            lines.append(f"{a} and {b} share {len(shared)} frame{'s' if len(shared) > 1 else ''} "
                         f"(e.g. {images[a][shared[0]]}): {b} scores would include frames seen in {a}; "
                         f"list each frame in one split only.")
    return lines
