"""The configuration of a training run: every default and every check, in one place.

`FitConfig`'s field defaults are the study's settings. Each field carries its
command-line flag and help text as metadata, so `kseg fit`'s options are generated
from this class (kseg.cli.options.config_options) and repeat neither a default nor a
check. Values arrive from four sources, later ones winning: these defaults, a recipe
(`--recipe`, kseg.training.recipes), a config file (`--config`) and explicit options.
`validate()` coerces text ("4x4", "0.5:2") and checks every value once, before
anything heavy is imported; each error names the option and the allowed values.
"""

import dataclasses
import numbers
import typing
from pathlib import Path

from kseg.errors import KsegError
from kseg.parsing import parse_hw, parse_key_values, parse_range

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("plateau", "poly", "cosine")  # kseg.training.schedules
TASKS = ("auto", "binary", "multiclass", "multilabel")  # kseg.training.task
VALIDATION = ("val", "80/20")  # --split: validate on val/, or on 20 % of the training patches
# May differ when a run is continued: they do not change what epochs 1..k were.
RESUMABLE_CHANGES = ("epochs", "lr", "jit", "distribute", "deterministic", "init_from", "frame_cache_mb",
                     "tensorboard", "workers")


def option(default, help, flag=None, kind=None, **extra):
    """A FitConfig field with its command-line flag (None: not an option) and help."""
    factory = dict if isinstance(default, dict) else None
    meta = {"flag": flag, "help": help, "kind": kind, **extra}
    if factory:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
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
    encoder_weights: str | None = option(None, "Pretrained encoder weights from a local file (U-Net: "
                                         "torchvision/timm ResNet-34 .pth or .safetensors; DeepLabV3: "
                                         "Keras' Xception .h5).", "--encoder-weights", str, metavar="FILE")
    # MiB of decoded train+val frames kept in memory; the rest are decoded once into an
    # unlinked temporary file and read back from the page cache (kseg.data.spill).
    # Measured on CamVid (docs/benchmarks.md): keeps `kseg fit unet` under 2 GB.
    frame_cache_mb: float = option(64, "MiB of decoded frames kept in memory; the rest are decoded once "
                                   "into a temporary file (at most half the free space of $TMPDIR).",
                                   "--frame-cache", float, metavar="MIB")
    # Threads of Keras' PyDataset pool building batches ahead of the train step; batches
    # do not depend on it (kseg.training.data.pick_workers: auto, and why).
    workers: int | str = option("auto", "Threads building batches ahead of training: auto (min(4, "
                                "CPUs // 2); none below 4 CPUs), 0 for none, or N. Batches are the same "
                                "for any N.",
                                "--workers", str, metavar="N")
    model_kwargs: dict = option({}, "Builder argument KEY=VALUE (repeatable).", "--model-arg", "multi",
                                metavar="KEY=VALUE")
    tensorboard: bool = option(False, "Write TensorBoard logs (epoch scalars, model graph) to "
                               "<run>/tensorboard/; a resumed run continues them.", "--tensorboard", "flag")

    def validate(self, check_files=True):
        """Coerce text values and check every value that needs no dataset or model; returns self.

        `check_files=False` skips the existence of --init-from / --encoder-weights files,
        which a saved run no longer needs once it has started.
        """
        if isinstance(self.model_kwargs, (list, tuple)):  # repeated --model-arg KEY=VALUE
            self.model_kwargs = parse_key_values(self.model_kwargs)
        check_types(vars(self))
        if self.data == "synthetic":  # how config.json names the embedded scenes
            self.data = None
        if self.data is not None:
            self.data = str(Path(self.data).expanduser().resolve())
        self.grid = None if self.grid is None else parse_hw(self.grid, "--grid")
        self.scale = None if self.scale is None else parse_range(self.scale, "--scale")
        self._check_numbers()
        self._check_choices()
        if isinstance(self.augment, dict):
            from kseg.data.augment import AugmentConfig

            try:
                AugmentConfig(**self.augment)
            except TypeError as exc:
                raise KsegError(f"augment: {exc}; allowed keys: rotation, width_shift, height_shift, "
                                f"zoom, hflip.") from None
        for key in ("init_from", "encoder_weights"):
            path = getattr(self, key)
            if check_files and path is not None and not Path(path).exists():
                raise KsegError(f"--{key.replace('_', '-')} {path}: no such file or folder.")
        return self

    def _check_numbers(self):
        for key in ("epochs", "batch_size", "patch", "crops_per_image", "channels"):
            if int(getattr(self, key)) < 1:
                raise KsegError(f"{_flag(key)} must be >= 1. Received: {getattr(self, key)}")
        workers = str(self.workers).strip()
        if workers != "auto" and not workers.isdecimal():  # "-1", "abc", 1.5
            raise KsegError(f"--workers must be auto or a whole number >= 0. Received: {self.workers}")
        self.workers = workers if workers == "auto" else int(workers)
        for key in ("frame_cache_mb", "weight_decay", "warmup_epochs"):
            if not getattr(self, key) >= 0:
                raise KsegError(f"{_flag(key)} must be >= 0. Received: {getattr(self, key)}")
        if not self.lr > 0:
            raise KsegError(f"--lr must be > 0. Received: {self.lr}")
        if not 0 < self.plateau_factor < 1:
            raise KsegError(f"--plateau-factor must be in (0, 1). Received: {self.plateau_factor}")
        if self.scale is not None and self.grid is not None:
            raise KsegError("--scale jitters random crops; add --crops (or drop --scale).")
        if not 0 <= self.class_uniform <= 1:
            raise KsegError(f"--class-uniform must be in [0, 1]. Received: {self.class_uniform}")
        if self.class_uniform and self.grid is not None:
            raise KsegError("--class-uniform places random crops; add --crops (or drop --class-uniform).")

    def _check_choices(self):
        from kseg.losses import parse_loss

        parse_loss(self.loss)  # raises a KsegError naming the bad term
        for key, allowed in (("split", VALIDATION), ("precision", PRECISIONS), ("schedule", SCHEDULES),
                             ("task", TASKS)):
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
    def from_dict(cls, d):
        """From a saved config.json (run-only keys such as `spec` are dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        return cls(**kwargs).validate(check_files=False)


def check_types(settings, where=""):
    """Each value's type must fit its field's annotation, so that a config file's
    "epochs": "abc" or "photometric": "no" is an error naming the key, not a crash later
    or a string taken as true. `settings` holds FitConfig fields only; `where` prefixes
    the message (a file's name)."""
    annotations = {f.name: f.type for f in dataclasses.fields(FitConfig)}
    for key, value in settings.items():
        allowed = typing.get_args(annotations[key]) or (annotations[key],)  # int | None -> (int, None)
        if not any(_fits(value, kind) for kind in allowed):
            wanted = " or ".join(_TYPE_WORDS[kind] for kind in allowed)
            raise KsegError(f"{where}{key} must be {wanted}. Received: {value!r}")


# What each annotated type accepts; tuples (grid, scale) also come as text ("4x4", "0.5:2").
_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text",
               tuple: "text or a list", dict: "an object", type(None): "null"}


def _fits(value, kind):
    if kind is bool or isinstance(value, bool):  # bool is an int to Python, not to a user
        return kind is bool and isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    if kind is tuple:
        return isinstance(value, (tuple, list, str))
    return isinstance(value, kind)


def fields():
    """The FitConfig fields that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(FitConfig) if f.metadata.get("flag")]


def _flag(key):
    field = {f.name: f for f in dataclasses.fields(FitConfig)}[key]
    return field.metadata.get("flag") or f"--{key.replace('_', '-')}"
