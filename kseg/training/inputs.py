"""The data a training run sees: its dataset, its train and val PatchDatasets, its class weights."""

from pathlib import Path

import keras

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


def training_datasets(cfg, dataset, workers, kind=None):
    """`(train, val)`: PatchDatasets per cfg.split, batches built by `workers` threads or
    worker processes (`pick_workers`; `kind`: "process" or "thread", default
    `worker_kind(cfg.worker_kind)`). Processes are shared by both datasets; `close_data`
    ends them."""
    from kseg.training.hardware import worker_kind

    pool = None
    if workers and (kind or worker_kind(cfg.worker_kind)[0]) == "process":
        from kseg.data.batch_pool import BatchPool

        pool = BatchPool(workers)  # starts now, while the frames are decoded
    try:
        return _datasets(cfg, dataset, workers, pool)
    except BaseException:
        if pool is not None:
            pool.close()
        raise


def _datasets(cfg, dataset, workers, pool):
    from kseg.data import patches

    loading = loader_kwargs(0 if pool else workers)  # with a pool, Keras runs no loader of its own
    common = dict(spec=dataset.spec, batch_size=cfg.batch_size, patch=cfg.patch, grid=cfg.grid,
                  seed=cfg.seed, crops_per_image=cfg.crops_per_image, pool=pool, **loading)
    # One memory budget for decoded frames and the workers' batch slots (two rings, train
    # and val): training frames first (augmented and read every epoch in random order),
    # validation frames get what is left.
    budget = max(0.0, cfg.frame_cache_mb - (2 * ring_mb(cfg, workers) if pool else 0))
    train_frames = patches.Frames(dataset.pairs("train"), dataset.spec, cache_mb=budget,
                                  channels=cfg.channels)
    check_grid(train_frames, cfg.grid)
    train = patches.PatchDataset(train_frames, augment=cfg.augment, photometric=cfg.photometric,
                                 scale=cfg.scale, class_uniform=cfg.class_uniform, shuffle=True,
                                 **common)
    if cfg.split == "80/20":
        # The study's split: 20 % of the training patches, seeded.
        train, val = patches.split_patches(train, fraction=0.2, seed=cfg.seed)
        train.max_queue_size = val.max_queue_size = loading["max_queue_size"]  # not copied by the split
        return train, _same_every_epoch(val)
    require_val_split(dataset)
    val_budget = max(0.0, budget - train_frames.nbytes / 2**20)
    # Validation always sees the grid or plain crops: no jitter, and the same crops every
    # epoch (_same_every_epoch), so epochs compare.
    val = patches.PatchDataset(dataset.pairs("val"), shuffle=False, cache_mb=val_budget,
                               channels=cfg.channels, **common)
    check_grid(val.frames, cfg.grid)
    return train, _same_every_epoch(val)


def ring_mb(cfg, workers):
    """MiB of one dataset's batch slots in shared memory: two per worker process."""
    from kseg.data.batch_ring import slot_bytes

    return 2 * int(workers) * slot_bytes(cfg.batch_size, (cfg.patch, cfg.patch), cfg.channels) / 2**20


def close_data(*datasets):
    """End the worker processes behind `datasets` (PatchDatasets or views of them), if any."""
    for data in datasets:
        close = getattr(data, "close", None)
        if close is not None:
            close()


def require_val_split(dataset):
    """Validation reads the val split unless --split 80/20 takes it from the training patches."""
    if "val" not in dataset.splits:
        raise KsegError(f"{dataset.root} has no val split; use --split 80/20 to validate on training "
                        f"patches.")


def check_grid(frames, grid):
    """--grid RxC cuts each frame into R rows and C columns of cells: a frame with fewer
    rows or columns of pixels than that would leave cells without a pixel."""
    if grid is None:
        return
    for (h, w), pair in zip(frames.shapes, frames.pairs, strict=True):
        if h < grid[0] or w < grid[1]:
            raise KsegError(f"--grid {grid[0]}x{grid[1]}: {pair.mask} is only {h}x{w} pixels; use a grid of "
                            f"at most {min(h, grid[0])}x{min(w, grid[1])} cells, or --crops.")


def loader_kwargs(workers):
    """PyDataset arguments for `workers` of Keras' loader threads (never Keras' own
    processes: they fork a process running TensorFlow and pickle every batch; kseg's
    are kseg.data.batch_pool's). The queue holds 2 batches per thread (one ready, one
    being built), enough to keep each busy, and bounds memory for large patches."""
    return {"workers": int(workers), "use_multiprocessing": False, "max_queue_size": max(2, 2 * int(workers))}


def _same_every_epoch(val):
    """Validation sees the same patches at every epoch: Keras calls a dataset's
    on_epoch_end after each validation pass (and once before the first), which would
    move random crops (grid=None) from epoch to epoch, and a resumed run would restart
    them from its own first validation. The grid does not depend on the epoch anyway."""
    val.on_epoch_end = lambda: None
    return val


def first_batches(train, val, max_steps):
    """`(train, val)` cut to their first `max_steps` and `max(1, max_steps // 4)` batches
    (kseg fit's `max_steps`, for benchmarks and quick checks); both unchanged for None.

    Cut here rather than with fit's validation_steps, so that a capped epoch goes
    through its iterators as a whole one does: with validation_steps, Keras tore down a
    partly read validation iterator at every evaluate (stalls of 10-40 s on the 2-core
    CPU), which whole epochs never do (benchmarks/LOG.md). The cut training
    data then runs through RunBatches like the whole one.
    """
    if not max_steps:
        return train, val
    return _FirstBatches(train, max_steps), _FirstBatches(val, max(1, max_steps // 4))


class BatchView(keras.utils.PyDataset):
    """A PyDataset made of `dataset`'s batches (a PatchDataset, or another view): it keeps
    the dataset's loader settings and passes the epoch on, so batches stay a function of
    (seed, epoch, index). Subclasses define __len__ and batch(epoch, index)."""

    def __init__(self, dataset):
        # PyDataset's own `workers` counts loader threads: keep the dataset's.
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset = dataset

    @property
    def epoch(self):
        return self.dataset.epoch

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def on_epoch_end(self):
        self.dataset.on_epoch_end()

    def __getitem__(self, index):
        return self.batch(self.epoch, index)

    def close(self):
        self.dataset.close()


class _FirstBatches(BatchView):
    """The first `n` batches of `dataset`, in its order for each epoch."""

    def __init__(self, dataset, n):
        super().__init__(dataset)
        self.batches = min(n, len(dataset))

    def __len__(self):
        return self.batches

    def batch(self, epoch, index):
        if index >= self.batches:
            raise IndexError(f"batch {index} of {self.batches}")
        return self.dataset.batch(epoch, index)


class RunBatches(BatchView):
    """Every training batch of a run, epoch after epoch, as one endless dataset: batch i
    is batch i % n of epoch first_epoch + i // n (n = len(dataset)). Keras is given
    steps_per_epoch = n and then reads it through one iterator for the whole fit.

    Why: given a finite dataset, Keras opens a new tf.data iterator at each epoch's end
    and another at the next one's start, and drops the old ones. On a 2-core Intel
    Xeon that stalled epoch starts by 7-48 s (benchmarks/LOG.md). Endless, not
    n x epochs long: Keras' loader threads (workers >= 2) restart a finite dataset's
    indices at every epoch, an endless one's never. Read-ahead past the last epoch
    builds a few batches that are never trained on.
    """

    def __init__(self, dataset, first_epoch):
        super().__init__(dataset)
        self.first_epoch, self.steps = int(first_epoch), len(dataset)

    @property
    def num_batches(self):
        return None  # endless: Keras needs steps_per_epoch

    def __getitem__(self, index):
        epoch, index = divmod(int(index), self.steps)
        return self.dataset.batch(self.first_epoch + epoch, index)
