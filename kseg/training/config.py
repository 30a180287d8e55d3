"""The configuration of a training run: every default and every check, in one place.

`FitConfig`'s field defaults are the study's settings. Each field carries its
command-line flag and help text as metadata, so `kseg fit`'s options are generated
from this class (kseg.cli.options.config_options) and repeat neither a default nor a
check. Values arrive from four sources, later ones winning: these defaults, a recipe
(`--recipe`, kseg.training.recipes), a config file (`--config`) and explicit options.
`validate()` coerces text ("4x4", "0.5:2") and checks every value once, before
anything heavy is imported; each error names the option and the allowed values. A
FitConfig is frozen: a run's settings are resolved once (kseg.training.plan), and a
changed setting is a new FitConfig (`dataclasses.replace`), never an edit in place.
"""

import dataclasses
from pathlib import Path

from kseg.errors import KsegError
from kseg.parsing import parse_hw, parse_key_values, parse_range
from kseg.validation import TYPE_WORDS, check_fields, field_kinds, fits, number, short

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("plateau", "poly", "cosine")  # kseg.training.schedules
TASKS = ("auto", "binary", "multiclass", "multilabel")  # kseg.training.task
VALIDATION = ("val", "80/20")  # --split: validate on val/, or on 20 % of the training patches
# May differ when a run is continued: they do not change what epochs 1..k were.
RESUMABLE_CHANGES = ("epochs", "lr", "jit", "distribute", "deterministic", "init_from", "frame_cache_mb",
                     "tensorboard", "workers", "worker_kind")
WORKER_KINDS = ("auto", "process", "thread")  # kseg.training.hardware.worker_kind


# (low, high, low excluded) of each number (None: no bound); the highs are far above any
# real run and keep a typo (--epochs 1e12, --patch 100000) from reaching Keras as an
# overflow or a huge array. A rate too large to train ends in the NaN-loss stop instead.
NUMBER_RANGES = {
    "epochs": (1, 10**6, False), "batch_size": (1, 2**16, False), "patch": (1, 2**15, False),
    "crops_per_image": (1, 2**16, False), "channels": (1, 64, False), "seed": (0, 2**32 - 1, False),
    "plateau_patience": (0, 10**6, False), "lr": (0, None, True), "weight_decay": (0, None, False),
    "warmup_epochs": (0, 10**6, False), "plateau_factor": (0, 0.999, True),
    "frame_cache_mb": (0, 2**30, False), "class_uniform": (0, 1, False),
    "freeze_encoder_epochs": (0, 10**6, False), "encoder_lr_mult": (0, None, True),
}  # fmt: skip
MAX_WORKERS = 64  # processes or threads building batches (kseg.training.hardware.pick_workers)
WHOLE_NUMBERS = ("epochs", "batch_size", "patch", "crops_per_image", "channels", "seed", "plateau_patience",
                 "freeze_encoder_epochs")


def option(default, help, flag=None, kind=None, **extra):
    """A FitConfig field with its command-line flag (None: not an option) and help."""
    factory = dict if isinstance(default, dict) else None
    meta = {"flag": flag, "help": help, "kind": kind, **extra}
    if factory:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Everything `kseg fit` needs; the defaults reproduce the study."""

    arch: str = option(None, "Registered network (see `kseg models`).")
    recipe: str | None = option(None, "Recipe the settings started from (recorded, not an option).")
    data: str | None = option(None, "Dataset folder (default: the embedded synthetic scenes).", "--data", str,
                              metavar="DIR")
    channels: int = option(3, "Channels of every input image: 3 RGB, 1 grey, 4 RGB + near infrared ... "
                           "(grey/RGBA PNG, multi-band TIFF); a file with another count is an error.",
                           "--channels", int)
    epochs: int = option(20, "Epochs to train.", "--epochs", int)
    batch_size: int = option(16, "Patches per batch.", "--batch-size", int)
    lr: float = option(1e-3, "Peak learning rate of Adam (AdamW with --weight-decay).", "--lr", float)
    weight_decay: float = option(0.0, "Decoupled weight decay; > 0 trains with AdamW.", "--weight-decay",
                                 float)
    loss: str = option("ce", "Loss: ce, dice, lovasz, focal, tversky or a weighted sum "
                       "(ce+dice, ce:1,lovasz:0.5).", "--loss", str, metavar="SPEC")
    class_weights: bool = option(False, "Weight the loss by median frequency balancing.", "--class-weights",
                                 "flag")
    task: str = option("auto", "binary (one sigmoid logit), multiclass (softmax), multilabel (a sigmoid "
                       "per class), or auto: from the dataset.", "--task", str)
    schedule: str = option("plateau", "LR schedule: plateau, poly or cosine.", "--schedule", str)
    warmup_epochs: float = option(0.0, "Linear LR warmup, in epochs (fractions allowed).", "--warmup", float)
    plateau_factor: float = option(0.1, "LR multiplier on a plateau (Keras' default).", "--plateau-factor",
                                   float)
    plateau_patience: int = option(10, "Epochs without val_loss progress before the LR drops.",
                                   "--plateau-patience", int)
    patch: int = option(128, "Patch side in pixels.", "--patch", int)
    grid: tuple | None = option((4, 4), "Cut each frame into RxC cells, each resized to a patch.", "--grid",
                                str, metavar="RxC")
    crops_per_image: int = option(16, "Random crops per frame and epoch (with --crops).", "--crops-per-image",
                                  int)
    # Class-uniform sampling (crops.class_anchor): rare, thin classes land in more crops.
    class_uniform: float = option(0.0, "Fraction of random crops centred on a class drawn uniformly from "
                                  "the classes in the frame (0 to 1).", "--class-uniform", float,
                                  metavar="FRACTION")
    scale: tuple | None = option(None, "Scale jitter of random crops, low:high (e.g. 0.5:2).", "--scale", str,
                                 metavar="LOW:HIGH")
    # A recipe may give a dict of kseg.data.augment.AugmentConfig ranges instead of true.
    augment: bool | dict = option(True, "Random rotation, shifts and flips (the study's).", "--augment",
                                  "flag")
    photometric: bool = option(False, "Random brightness, contrast, saturation and gamma.", "--photometric",
                               "flag")
    split: str = option("val", "Validate on val/, or on a seeded 20% of the training patches (80/20, "
                        "the study's).", "--split", str)
    seed: int = option(0, "Seed of weights, shuffling, crops and augmentation.", "--seed", int)
    monitor: str = option("val_accuracy", "What best.keras maximises (minimises for losses).", "--monitor",
                          str)
    precision: str = option("auto", "auto (mixed_bfloat16 where the CPU or GPU has native bfloat16, "
                            "else float32), float32, mixed_bfloat16 or mixed_float16.", "--precision", str)
    jit: bool | None = option(None, "XLA-compile the train step (default: auto: on with a GPU, off on a "
                              "CPU).", "--jit", "flag")
    deterministic: bool | None = option(None, "Deterministic TF ops (default: on without a GPU or --jit).",
                                        "--deterministic", "flag")
    distribute: bool = option(False, "Train on all local accelerators (kseg.training.distribute).",
                              "--distribute", "flag")
    init_from: str | None = option(None, "Start from a checkpoint (.keras file or run directory).",
                                   "--init-from", str, metavar="PATH")
    encoder_weights: str | None = option(None, "Pretrained encoder weights: imagenet (keras.applications "
                                         "encoders such as unet-resnet50, and DeepLabV3's Xception: Keras' "
                                         "own, from its cache ~/.keras/models, downloaded once where online) "
                                         "or a local file (their Keras weights "
                                         "file; U-Net: torchvision/timm ResNet-34 .pth or .safetensors; "
                                         "DeepLabV3: Keras' Xception .h5).", "--encoder-weights", str,
                                         metavar="imagenet|FILE")
    # kseg.training.finetune: the encoder's step scaled by 0, then by the multiplier.
    freeze_encoder_epochs: int = option(0, "Epochs at the start that keep the encoder's weights as loaded.",
                                        "--freeze-encoder-epochs", int, metavar="N")
    encoder_lr_mult: float = option(1.0, "The encoder's learning rate as a fraction of --lr (e.g. 0.1).",
                                    "--encoder-lr-mult", float, metavar="FRACTION")
    # MiB of decoded train+val frames kept in memory; the rest are decoded once into an
    # unlinked temporary file and read back from the page cache (kseg.data.spill).
    # Measured on CamVid (benchmarks/LOG.md): keeps `kseg fit unet` under 2 GB.
    frame_cache_mb: float = option(64, "MiB of decoded frames kept in memory; the rest are decoded once "
                                   "into a temporary file (at most half the free space of $TMPDIR).",
                                   "--frame-cache", float, metavar="MIB")
    # Workers building batches ahead of the train step; batches do not depend on them
    # (kseg.training.hardware.pick_workers and worker_kind: auto, and why).
    workers: int | str = option("auto", "Workers building batches ahead of training (see --worker-kind): "
                                "0 for none, N, or auto: min(CPUs - 2, 16) processes, or min(4, CPUs // 2) "
                                "threads (none below 4 CPUs). Batches are the same for any N.",
                                "--workers", str, metavar="N")
    worker_kind: str = option("auto", "What the --workers are: process (worker processes, one core each: "
                              "throughput grows with the cores), thread (Keras' loader threads: no faster "
                              "than one core, as they share the GIL) or auto: processes where a GPU is "
                              "visible, else threads.", "--worker-kind", str, metavar="auto|process|thread")
    model_kwargs: dict = option({}, "Builder argument KEY=VALUE (repeatable).", "--model-arg", "multi",
                                metavar="KEY=VALUE")
    tensorboard: bool = option(False, "Write TensorBoard logs (epoch scalars, model graph) to "
                               "<run>/tensorboard/; a resumed run continues them.", "--tensorboard", "flag")

    def validate(self, check_files=True):
        """The checked FitConfig: text values coerced, every value that needs no dataset or
        model checked. Returns a new FitConfig (this one is frozen).

        `check_files=False` skips the existence of --init-from / --encoder-weights files,
        which a saved run no longer needs once it has started.
        """
        kwargs = self.model_kwargs
        if isinstance(kwargs, (list, tuple)):  # repeated --model-arg KEY=VALUE
            kwargs = parse_key_values(kwargs)
        check_types({**vars(self), "model_kwargs": kwargs})
        data = None if self.data in (None, "synthetic") else str(Path(self.data).expanduser().resolve())
        cfg = dataclasses.replace(  # "synthetic": how config.json names the embedded scenes
            self, model_kwargs=kwargs, data=data,
            grid=None if self.grid is None else parse_hw(self.grid, "--grid"),
            scale=None if self.scale is None else parse_range(self.scale, "--scale"))
        cfg = dataclasses.replace(cfg, workers=cfg._check_numbers())
        cfg._check_choices()
        if isinstance(cfg.augment, dict):
            check_augment(cfg.augment)
        for key in ("init_from", "encoder_weights"):
            path = getattr(cfg, key)
            if check_files and path not in (None, "imagenet") and not Path(path).exists():
                raise KsegError(f"--{key.replace('_', '-')} {path}: no such file or folder.")
        return cfg

    def _check_numbers(self):
        """Check the numbers; returns `workers` as "auto" or an int."""
        for key, (low, high, low_open) in NUMBER_RANGES.items():
            number(getattr(self, key), _flag(key), low, high, low_open, integer=key in WHOLE_NUMBERS)
        workers = str(self.workers).strip()
        if workers != "auto" and not (workers.isdecimal() and int(workers) <= MAX_WORKERS):  # not -1, 1.5
            raise KsegError(f"--workers must be auto or a whole number from 0 to {MAX_WORKERS}. "
                            f"Received: {self.workers}")
        if self.scale is not None and self.grid is not None:
            raise KsegError("--scale jitters random crops; add --crops (or drop --scale).")
        if self.class_uniform and self.grid is not None:
            raise KsegError("--class-uniform places random crops; add --crops (or drop --class-uniform).")
        return workers if workers == "auto" else int(workers)

    def _check_choices(self):
        from kseg.losses import parse_loss

        parse_loss(self.loss)  # raises a KsegError naming the bad term
        for key, allowed in (("split", VALIDATION), ("precision", PRECISIONS), ("schedule", SCHEDULES),
                             ("task", TASKS), ("worker_kind", WORKER_KINDS)):
            if getattr(self, key) not in allowed:
                raise KsegError(f"Unknown {_flag(key)} {getattr(self, key)!r}. "
                                f"Choose one of: {', '.join(allowed)}.")
        if self.jit and self.deterministic:
            raise KsegError("--jit and --deterministic do not go together: Keras turns XLA off while "
                            "TensorFlow op determinism is on. Drop one of them.")

    def check_monitor(self, metric_names):
        """`monitor` must be one of the logged names: loss, the metrics, and val_ of each."""
        logged = ["loss", *metric_names]
        allowed = logged + [f"val_{m}" for m in logged]
        if self.monitor not in allowed:
            raise KsegError(f"Unknown --monitor {self.monitor!r}. Choose one of: {', '.join(allowed)}.")

    @property
    def monitor_mode(self):
        """ "min" for losses, "max" for scores."""
        return "min" if self.monitor.endswith("loss") else "max"

    def to_dict(self):
        d = dataclasses.asdict(self)
        for key in ("grid", "scale"):
            d[key] = list(d[key]) if d[key] else None
        return d

    @classmethod
    def from_dict(cls, d, where="config.json"):
        """From a saved config.json (run-only keys such as `spec` are dropped); a value
        that fails a check names `where` (the file) and the field."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        try:
            return cls(**kwargs).validate(check_files=False)
        except KsegError as exc:
            raise KsegError(f"{where}: {exc.message}; restore the file from a copy, or start afresh "
                            f"with --name NEW") from None


def check_types(settings, where=""):
    """Each value's type must fit its field's annotation, so that a config file's
    "epochs": "abc" or "photometric": "no" is an error naming the key, not a crash later
    or a string taken as true, and "lr": Infinity is refused (numbers must be finite).
    `settings` holds FitConfig fields only; `where` prefixes the message (a file's name)."""
    kinds = field_kinds(FitConfig)
    for key, value in settings.items():
        if not any(fits(value, kind) for kind in kinds[key]):
            wanted = " or ".join(TYPE_WORDS[kind] for kind in kinds[key])
            raise KsegError(f"{where}{key} must be {wanted}. Received: {short(value)}")


def check_augment(ranges):
    """A dict of AugmentConfig ranges ({"rotation": 15, "zoom": 0.1}): known keys, numbers
    of the right type, each in its range (a rotation of -1e9 degrees or a zoom of 5, whose
    scale 1 - 5 is negative, would reach the warp as nonsense)."""
    from kseg.data.augment import AugmentConfig

    allowed = ", ".join(f.name for f in dataclasses.fields(AugmentConfig))
    unknown = sorted(set(ranges) - {f.name for f in dataclasses.fields(AugmentConfig)})
    if unknown:
        raise KsegError(f"augment: unknown key {unknown[0]!r}; allowed keys: {allowed}.")
    check_fields(AugmentConfig, ranges, "augment")
    for key, high in AUGMENT_RANGES.items():
        if key in ranges:
            number(ranges[key], f"augment: {key}", low=0, high=high)


# The largest value of each AugmentConfig range that makes sense: degrees, fractions of the
# patch for shifts, and a zoom below 1 (the scale is drawn from [1 - zoom, 1 + zoom]).
AUGMENT_RANGES = {"rotation": 180, "width_shift": 1, "height_shift": 1, "zoom": 0.99}


def fields():
    """The FitConfig fields that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(FitConfig) if f.metadata.get("flag")]


def _flag(key):
    field = {f.name: f for f in dataclasses.fields(FitConfig)}[key]
    return field.metadata.get("flag") or f"--{key.replace('_', '-')}"
