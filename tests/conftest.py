"""Generic fixtures shared by kseg's test files."""

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from processes import child_env

# One oneDNN setting for this process and every process it starts, set before TensorFlow
# is imported: on a CPU with AVX2 where TensorFlow leaves oneDNN off, `kseg fit` in a child
# turns it on (kseg.training.hardware.pick_onednn), and a history resumed there must equal,
# to the bit, the one computed here. tests/test_onednn.py clears it to test that default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _run_python(code, backend="tensorflow", env=None, timeout=300):
    """Run `code` in a fresh Python process (processes.child_env(backend, **env)); return its stdout.

    Fails the test with the process's stderr if it exits non-zero.
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=child_env(backend, **(env or {})),
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(f"subprocess ({backend}) exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def run_python():
    """`run_python(code, backend="tensorflow", env=None, timeout=300) -> stdout`."""
    return _run_python


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Synthetic scenes at 64x64: 2 train, 1 val, 1 test frame (for subprocess fits)."""
    from kseg.data import synth

    root = tmp_path_factory.mktemp("data")
    synth.write_synthetic(root, n_train=2, n_val=1, n_test=1, size=(64, 64))
    return root


# CamVid in the SegNet layout, beside the repository (../shared/camvid) or at $KSEG_CAMVID.
CAMVID_DIR = os.environ.get("KSEG_CAMVID") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "camvid"
)


@pytest.fixture(scope="session")
def camvid_dir():
    """The CamVid root; skips the test, with the reason, where it is absent."""
    from pathlib import Path

    root = Path(CAMVID_DIR).resolve()
    if not (root / "train").is_dir():
        pytest.skip(f"CamVid not found at {root} (set $KSEG_CAMVID to a SegNet-layout CamVid)")
    return root


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    """Keras' weights cache in a temporary folder, and no network: keras.utils.get_file
    looks the file up there as in ~/.keras/models (without the hash check: the file is
    ours) and fails where it would download."""
    from keras.src.utils import file_utils  # where keras.applications calls get_file

    real, asked = file_utils.get_file, []

    def offline(fname=None, origin=None, *args, cache_subdir="datasets", **kwargs):
        asked.append((fname, cache_subdir))
        return real(fname, origin="http://127.0.0.1:9/offline", cache_subdir=cache_subdir,
                    cache_dir=str(tmp_path))

    monkeypatch.setattr(file_utils, "get_file", offline)
    return SimpleNamespace(models=tmp_path / "models", asked=asked)
