"""env.json: what a run's numbers depend on besides its config (versions, machine, data)."""

import hashlib
import platform
import sys
from pathlib import Path

from kseg import compat

# CPU features that change which kernels run (and so speed and rounding); recorded with
# every figure (env.json, kseg bench).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")


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
    return {"files": len(paths), "bytes": total, "sha256": h.hexdigest(),
            "method": f"names+sizes of all files, content of {min(sample, len(paths))}"}


def cpu_info():
    """{"model": ..., "flags": [...]}: the CPU model and which of CPU_FLAGS it has (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": None}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", platform.machine()),
            "flags": [f for f in CPU_FLAGS if f in flags]}


def environment(fingerprint=None, **extra):
    """env.json: versions of everything that changes numbers, the machine, the data."""
    import keras
    import numpy

    from kseg import __version__

    backend = keras.backend.backend()
    try:
        backend_version = __import__(
            {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
        ).__version__
    except (KeyError, ImportError):
        backend_version = None
    return {"kseg": __version__, "keras": keras.__version__, "backend": backend,
            "backend_version": backend_version, "numpy": numpy.__version__,
            "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu_info(),
            "onednn": onednn(backend), "devices": _devices(backend), "data_fingerprint": fingerprint,
            **extra}


def onednn(backend="tensorflow"):
    """Whether TensorFlow runs oneDNN's CPU kernels: by default only on CPUs with
    AVX512_VNNI, AVX512_BF16 or AMX (TF_ENABLE_ONEDNN_OPTS overrides). It decides
    whether XLA wins on a CPU (benchmarks/LOG.md). None off TensorFlow."""
    return compat.onednn_enabled() if backend == "tensorflow" else None


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
