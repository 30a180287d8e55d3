"""One plan per fit: what a `kseg fit` will do, resolved once into a frozen `FitPlan`.

`plan_fit` decides, in this order, reading files but writing none:
  1. the settings: the FitConfig of defaults < recipe < --config < options (validated
     once, by kseg.training.recipes.resolve), or, for a run folder that holds a run,
     its saved settings with the changes a continued run allows (session.reconcile);
  2. the device topology of --distribute, before TensorFlow's or JAX's first op;
  3. the data: the dataset and its label, the task, the checks that need the dataset or
     the registry (every file is decoded once), and the batches of an epoch;
  4. the hardware: precision, XLA and data workers, each with its reason.
`kseg fit --dry-run` prints the plan (kseg.training.plan_printout) and stops there;
kseg.training.loop.train trains from it and reads nothing else: config.json and
env.json are `config_json()` and `env_json()`.
"""

import dataclasses
import types

from kseg.errors import KsegError
from kseg.runs import RunDir
from kseg.training import session
from kseg.training.config import FitConfig
from kseg.training.hardware import HardwareChoice
from kseg.training.task import check_task_options, resolve_task


@dataclasses.dataclass(frozen=True)
class EpochSize:
    """Frames, patches and batches of one epoch, as (train, val). `frames[1]` is None with
    --split 80/20, whose validation patches come from the training frames."""

    frames: tuple
    patches: tuple
    batches: tuple  # after max_steps, and on this worker's share of each batch (--distribute, JAX)


@dataclasses.dataclass(frozen=True)
class FitPlan:
    """Everything a fit will do. Built by `plan_fit`; the trainer only reads it."""

    run: RunDir
    config: FitConfig  # the settings trained with and recorded, --task resolved
    dataset: object = dataclasses.field(repr=False)  # kseg.data.readers.Dataset
    data_label: str  # config.json's "data": "synthetic" or the folder
    stride: int  # the network's output stride (--patch is a multiple of it)
    epoch: EpochSize
    hardware: HardwareChoice
    topology: types.MappingProxyType | None  # distribute.topology(); None without --distribute
    saved: session.SavedRun | None  # the run continued; None for a fresh one
    max_steps: int | None  # batches of each epoch, at most (benchmarks, quick checks)
    data_summary: str  # the "data: ..." line: task, class shares, void, mask encoding
    notes: tuple  # warnings about the data (splits sharing frames)
    fingerprint: types.MappingProxyType | None = dataclasses.field(repr=False)  # env.json's, fresh runs

    @property
    def fresh(self):
        """True when the run starts at epoch 1 (config.json and env.json are written)."""
        return self.saved is None

    @property
    def first_epoch(self):
        """The epochs already committed: training starts with epoch `first_epoch + 1`."""
        return 0 if self.saved is None else self.saved.epoch

    def lines(self, width=80):
        """The plan as `kseg fit --dry-run` prints it (kseg.training.plan_printout)."""
        from kseg.training.plan_printout import plan_lines

        return plan_lines(self, width)

    def config_json(self):
        """config.json as the run writes it: the settings, the data, its spec and the stride;
        a continued run's own, with the epochs now asked for."""
        if self.saved is not None:
            return {**self.saved.config, "epochs": self.config.epochs}
        return {**self.config.to_dict(), "data": self.data_label, "data_path": str(self.dataset.root),
                "spec": self.dataset.spec.to_dict(), "stride": self.stride,
                "monitor_mode": self.config.monitor_mode}

    def env_json(self):
        """env.json of a fresh run: versions, machine, data fingerprint, the hardware chosen
        and the --distribute topology."""
        from kseg.training.environment import environment

        return environment(None if self.fingerprint is None else dict(self.fingerprint),
                           chosen=dataclasses.asdict(self.hardware),
                           distribute=None if self.topology is None else dict(self.topology))


def plan_fit(cfg, run, explicit=(), resume=False, max_steps=None):
    """The `FitPlan` of training `cfg` (a validated FitConfig) into `run` (a RunDir).

    `explicit` names the fields set on purpose: on a continued run they must match the
    saved config, except RESUMABLE_CHANGES. Refuses bad settings with the same one-line
    errors as a fit; writes nothing (the run folder need not exist).
    """
    from kseg.data.overlap import split_overlaps
    from kseg.training import distribute, hardware
    from kseg.training.inputs import open_data

    config, saved = session.reconcile(run, cfg, resume, set(explicit))
    # Before TensorFlow's or JAX's first op: multi-worker set-up must come first.
    topology = distribute.topology(config.batch_size, config.distribute)
    dataset, label = open_data(config.data)
    config = dataclasses.replace(config, task=resolve_task(config.task, dataset.spec))
    check_task_options(config, dataset.spec)
    stride = _check_against(config, dataset.spec)
    summary = _check_data(dataset, config)  # after the cheap checks: it decodes every file
    epoch = epoch_size(config, dataset, max_steps, topology)
    return FitPlan(
        run=run, config=config, dataset=dataset, data_label=label, stride=stride, epoch=epoch,
        hardware=hardware.choose(config), topology=_frozen(topology), saved=saved, max_steps=max_steps,
        data_summary=summary, notes=tuple(split_overlaps(dataset.splits)),
        fingerprint=None if saved else _frozen(_fingerprint(config, dataset)))


def _check_against(cfg, spec):
    """Checks that need the registry or the dataset; returns the network's stride."""
    from kseg import registry
    from kseg.metrics import training_metrics
    from kseg.training.callbacks import require_tensorboard

    stride = registry.get_entry(cfg.arch).stride
    if cfg.patch % stride:
        raise KsegError(f"--patch {cfg.patch} is not a multiple of {cfg.arch}'s stride {stride}.")
    cfg.check_monitor([m.name for m in training_metrics(spec.num_classes, spec.void, spec.multilabel)])
    if cfg.tensorboard:  # also when a resumed run has it from config.json
        require_tensorboard()
    return stride


def _check_data(dataset, cfg):
    """`kseg data check`'s checks and refusals (one class, void, classes absent from train);
    returns the line that says what was inferred and the task trained."""
    from kseg.data.check import check_dataset
    from kseg.data.trainable import one_line

    summary = check_dataset(dataset, channels=cfg.channels, write_spec=False)
    return one_line({**summary["inferred"], "task": f"{cfg.task} task"})


def epoch_size(cfg, dataset, max_steps=None, topology=None):
    """The `EpochSize` that kseg.training.inputs.training_datasets, first_batches and
    distribute.worker_batches will give, with training_datasets' checks (a val split, a
    --grid that fits every frame), from the image headers: nothing is decoded."""
    from kseg.data import patches
    from kseg.training import distribute
    from kseg.training.inputs import check_grid, first_batches, require_val_split

    def frames(split):
        found = patches.Frames(dataset.pairs(split), dataset.spec, cache_mb=0, channels=cfg.channels,
                               spill=False)  # headers only
        check_grid(found, cfg.grid)
        return found

    common = dict(spec=dataset.spec, batch_size=cfg.batch_size, patch=cfg.patch, grid=cfg.grid,
                  crops_per_image=cfg.crops_per_image, seed=cfg.seed)
    train_frames = frames("train")
    train = patches.PatchDataset(train_frames, **common)
    if cfg.split == "80/20":
        train, val = patches.split_patches(train, fraction=0.2, seed=cfg.seed)
        val_frames = None
    else:
        require_val_split(dataset)
        val_frames = frames("val")
        val = patches.PatchDataset(val_frames, **common)
    counts = (train.num_patches, val.num_patches)
    if topology is not None:
        train, val = (distribute.worker_batches(d, topology) for d in (train, val))
    train, val = first_batches(train, val, max_steps)
    return EpochSize(frames=(len(train_frames), None if val_frames is None else len(val_frames)),
                     patches=counts, batches=(len(train), len(val)))


def _fingerprint(cfg, dataset):
    """env.json's data fingerprint of the pairs a run trains and validates on."""
    from kseg.training.environment import data_fingerprint

    pairs = dataset.pairs("train") + (dataset.pairs("val") if cfg.split == "val" else [])
    return data_fingerprint([p for pair in pairs for p in (pair.image, pair.mask)])


def _frozen(mapping):
    """A read-only view of a dict (None stays None)."""
    return None if mapping is None else types.MappingProxyType(dict(mapping))
