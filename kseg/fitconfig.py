"""The configuration of a training run, and the environment record written beside it.

`FitConfig` is validated once, here, before anything heavy is imported or built;
every error names the bad value and the allowed ones.
"""

import dataclasses
import hashlib
import json
import platform
import sys
from pathlib import Path

from kseg.errors import KsegError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SPLITS = ("val", "80/20")
# May differ when a run is continued: they do not change what epochs 1..k were.
RESUMABLE_CHANGES = ("epochs", "lr", "jit", "distribute", "deterministic", "init_from", "frame_cache_mb")


@dataclasses.dataclass
class FitConfig:
    """Everything `kseg fit` needs; defaults reproduce the study."""

    arch: str
    data: str | None = None  # None: the embedded synthetic dataset
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    patch: int = 128
    grid: tuple | None = (4, 4)  # None: random crops
    split: str = "val"
    class_weights: bool = False
    augment: bool = False
    seed: int = 0
    monitor: str = "val_accuracy"
    plateau_factor: float = 0.1  # Keras' ReduceLROnPlateau defaults, on val_loss
    plateau_patience: int = 10
    precision: str = "float32"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    jit: bool | None = None  # None: Keras' "auto"
    distribute: bool = False
    deterministic: bool | None = None  # None: on without a GPU or --jit, off with one
    init_from: str | None = None
    # MiB of decoded train+val frames kept in memory; the rest are decoded per patch
    # (kseg.data.patches.Frames). Measured on CamVid (docs/benchmarks.md): keeps
    # `kseg fit unet` under 2 GB while loading still runs far ahead of training.
    frame_cache_mb: float = 64

    def validate(self):
        """Check values that need no dataset or model; returns self."""
        if self.data is not None:
            self.data = str(Path(self.data).expanduser().resolve())
        for key in ("epochs", "batch_size", "patch"):
            if int(getattr(self, key)) < 1:
                raise KsegError(f"--{key.replace('_', '-')} must be >= 1. Received: {getattr(self, key)}")
        if not self.frame_cache_mb >= 0:
            raise KsegError(f"--frame-cache must be >= 0 MiB. Received: {self.frame_cache_mb}")
        if not self.lr > 0:
            raise KsegError(f"--lr must be > 0. Received: {self.lr}")
        if self.split not in SPLITS:
            raise KsegError(f"Unknown --split {self.split!r}. Choose one of: {', '.join(SPLITS)}.")
        if self.precision not in PRECISIONS:
            raise KsegError(
                f"Unknown --precision {self.precision!r}. Choose one of: {', '.join(PRECISIONS)}."
            )
        if self.jit and self.deterministic:
            raise KsegError(
                "--jit and --deterministic do not go together: Keras turns XLA off while "
                "TensorFlow op determinism is on. Drop one of them."
            )
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise KsegError(f"--grid must be RxC with R, C >= 1. Received: {self.grid}")
        if not 0 < self.plateau_factor < 1:
            raise KsegError(f"--plateau-factor must be in (0, 1). Received: {self.plateau_factor}")
        return self

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
        d["grid"] = list(self.grid) if self.grid else None
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("data") == "synthetic":
            kwargs["data"] = None
        if kwargs.get("grid"):
            kwargs["grid"] = tuple(kwargs["grid"])
        return cls(**kwargs)


def parse_grid(text):
    """'4x4' -> (4, 4)."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KsegError(f"--grid must look like 4x4. Received: {text!r}") from None
    return rows, cols


def parse_model_args(items):
    """['depth=3', 'dropout=0.1', 'name=x'] -> {'depth': 3, 'dropout': 0.1, 'name': 'x'} (JSON values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KsegError(f"--model-arg must be key=value. Received: {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare word is a string
    return out


def data_fingerprint(paths, sample=8):
    """Identify a dataset cheaply: sha256 of every file's name and size, plus the
    content of `sample` evenly spaced files.

    Names and sizes catch added, removed or re-encoded files; the sampled content
    catches most edits that keep the size. Modification times are left out on
    purpose: copying a dataset changes them but not the data.
    """
    paths = sorted(Path(p) for p in paths)
    h = hashlib.sha256()
    total = 0
    for p in paths:
        size = p.stat().st_size
        total += size
        h.update(f"{p.parent.name}/{p.name}:{size}\n".encode())
    step = max(1, len(paths) // sample) if paths else 1
    for p in paths[::step][:sample]:
        h.update(p.read_bytes())
    return {
        "files": len(paths),
        "bytes": total,
        "sha256": h.hexdigest(),
        "method": f"names+sizes of all files, content of {min(sample, len(paths))}",
    }


def environment(fingerprint):
    """env.json: versions of everything that changes numbers, and the data fingerprint."""
    import keras
    import numpy

    import kseg

    backend = keras.backend.backend()
    try:
        backend_version = __import__(
            {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
        ).__version__
    except (KeyError, ImportError):
        backend_version = None
    return {
        "kseg": kseg.__version__,
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "devices": _devices(backend),
        "data_fingerprint": fingerprint,
    }


def _devices(backend):
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.device_type for d in tf.config.list_physical_devices()]
        if backend == "jax":
            import jax

            return [d.platform for d in jax.devices()]
    except Exception:  # an informational field must never stop training
        pass
    return None
