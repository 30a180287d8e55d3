"""kseg.training.environment: env.json's data fingerprint, CPU features and versions.

The fingerprint is how a user tells whether two runs saw the same data: it must change
when files are added, removed, resized or edited (in a sampled file), and must not
change when the dataset is only copied (new modification times) or listed in another
order.
"""

import os
import shutil

import keras
import pytest

from kseg.training import environment
from kseg.training.environment import cpu_info, data_fingerprint


def _dataset(root, n=5):
    """n image files of distinct sizes in root/train, plus their masks in root/trainannot."""
    paths = []
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            path = root / folder / f"{i:03d}.png"
            path.write_bytes(bytes([i]) * (10 + i))
            paths.append(path)
    return paths


def test_fingerprint_counts_files_and_bytes(tmp_path):
    paths = _dataset(tmp_path)
    fp = data_fingerprint(paths)
    assert fp["files"] == 10 and fp["bytes"] == 2 * sum(10 + i for i in range(5))
    assert fp["method"] == "names+sizes of all files, content of 8"
    assert len(fp["sha256"]) == 64
    assert data_fingerprint(paths[:3])["method"] == "names+sizes of all files, content of 3"


def test_fingerprint_ignores_copies_and_order_but_not_changes(tmp_path):
    paths = _dataset(tmp_path / "a")
    fp = data_fingerprint(paths)["sha256"]
    assert data_fingerprint(list(reversed(paths)))["sha256"] == fp
    # A copy elsewhere, with other modification times: the same data.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copies = sorted((tmp_path / "b").rglob("*.png"))
    for p in copies:
        os.utime(p, (1, 1))
    assert data_fingerprint(copies)["sha256"] == fp
    # One file edited in place, same size (the first file is always one of the sampled).
    first = min(copies)
    first.write_bytes(b"\xff" * first.stat().st_size)
    assert data_fingerprint(copies)["sha256"] != fp
    # A file removed, or one renamed.
    assert data_fingerprint(paths[1:])["sha256"] != fp
    renamed = paths[0].with_name("999.png")
    paths[0].rename(renamed)
    assert data_fingerprint([renamed, *paths[1:]])["sha256"] != fp


def test_fingerprint_of_no_files(tmp_path):
    fp = data_fingerprint([])
    assert (fp["files"], fp["bytes"]) == (0, 0)
    assert fp["method"] == "names+sizes of all files, content of 0"


CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 other
bogomips\t: 1.0

processor\t: 1
model name\t: Test CPU 9000
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 other
"""


class _FakePath:
    """Stands in for pathlib.Path in kseg.training.environment: /proc/cpuinfo gives `text`."""

    def __init__(self, text=None):
        self.text = text

    def __call__(self, path):
        assert str(path) == "/proc/cpuinfo"
        return self

    def read_text(self):
        if self.text is None:
            raise PermissionError(13, "Permission denied", "/proc/cpuinfo")
        return self.text


def test_cpu_info_reads_the_model_and_the_flags_that_matter(monkeypatch):
    monkeypatch.setattr(environment, "Path", _FakePath(CPUINFO))
    # In CPU_FLAGS' order; flags kseg does not look at (fpu, sse) are left out.
    assert cpu_info() == {"model": "Test CPU 9000", "flags": ["avx2", "avx512f", "avx512_bf16", "fma"]}


def test_cpu_info_without_proc_cpuinfo_still_answers(monkeypatch):
    # macOS, or a sandbox without /proc: a model name from platform, flags unknown...
    monkeypatch.setattr(environment, "Path", _FakePath(None))
    info = cpu_info()
    assert info["flags"] is None and isinstance(info["model"], str) and info["model"]
    # ...and `--precision auto` then picks float32 instead of failing on the missing flags.
    from kseg.training.hardware import pick_precision

    assert pick_precision("auto", info["flags"], []) == ("float32", "auto: this CPU has no native bfloat16")


def test_environment_names_versions_devices_and_extra_fields():
    import numpy

    from kseg import __version__

    env = environment.environment({"files": 0}, chosen={"precision": "float32"})
    assert (env["kseg"], env["keras"], env["numpy"]) == (__version__, keras.__version__, numpy.__version__)
    assert env["backend"] == keras.backend.backend() and env["backend_version"]
    assert env["data_fingerprint"] == {"files": 0} and env["chosen"] == {"precision": "float32"}
    assert "CPU" in env["devices"] or "cpu" in env["devices"]


def test_a_failing_device_query_does_not_stop_training(monkeypatch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the failing query is TensorFlow's")
    import tensorflow as tf

    def broken(*args):
        raise RuntimeError("driver fell over")

    monkeypatch.setattr(tf.config, "list_physical_devices", broken)
    assert environment.environment()["devices"] is None
    assert environment._devices("torch") is None  # no device list for other backends
