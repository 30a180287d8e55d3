"""The data a training run sees: its dataset, its train and val PatchDatasets, its class weights."""

from pathlib import Path

from kseg.errors import KsegError


def open_data(data):
    """`(Dataset, label)`: the folder `data`, or the embedded synthetic scenes for None."""
    from kseg.data import readers, synth

    if data is None:
        return readers.open_dataset(synth.default_dataset_dir()), "synthetic"
    root = Path(data).expanduser().resolve()
    return readers.open_dataset(root), str(root)


def class_weights(cfg, dataset):
    """Median-frequency weights (K,) of the training split with --class-weights, else None."""
    if not cfg.class_weights:
        return None
    from kseg.data.weights import median_frequency_weights

    return [float(w) for w in median_frequency_weights(dataset.pairs("train"), dataset.spec)]


def training_datasets(cfg, dataset):
    """`(train, val, pairs used)`: PatchDatasets per cfg.split; pairs feed the fingerprint."""
    from kseg.data import patches

    train_pairs = dataset.pairs("train")
    common = dict(spec=dataset.spec, batch_size=cfg.batch_size, patch=cfg.patch, grid=cfg.grid,
                  seed=cfg.seed, crops_per_image=cfg.crops_per_image)
    # One memory budget for decoded frames: training frames first (augmented and read
    # every epoch in random order), validation frames get what is left.
    train_frames = patches.Frames(train_pairs, dataset.spec, cache_mb=cfg.frame_cache_mb)
    train = patches.PatchDataset(train_frames, augment=cfg.augment, photometric=cfg.photometric,
                                 scale=cfg.scale, shuffle=True, **common)
    if cfg.split == "80/20":
        # The study's split: 20 % of the training patches, seeded.
        train, val = patches.split_patches(train, fraction=0.2, seed=cfg.seed)
        return train, val, train_pairs
    if "val" not in dataset.splits:
        raise KsegError(f"{dataset.root} has no val split; use --split 80/20 to validate on training "
                        f"patches.")
    val_pairs = dataset.pairs("val")
    val_budget = max(0.0, cfg.frame_cache_mb - train_frames.nbytes / 2**20)
    # Validation always sees the grid or plain crops: no jitter, so epochs compare.
    val = patches.PatchDataset(val_pairs, shuffle=False, cache_mb=val_budget, **common)
    return train, val, train_pairs + val_pairs
