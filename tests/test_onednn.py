"""kseg's oneDNN default: on for the commands that train, on a CPU with AVX2 where TensorFlow
leaves it off; set before TensorFlow starts, never over the user's own setting."""

import subprocess
import sys
import textwrap

import pytest

from kseg.training.hardware import HardwareChoice, onednn_reason, pick_onednn, set_onednn

AVX2 = ["avx2", "fma"]
BF16 = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "fma"]


@pytest.mark.parametrize("command, flags, environ, expected", [
    ("fit", AVX2, {}, "1"),
    ("bench", AVX2, {}, "1"),
    ("predict", AVX2, {}, None),  # one frame predicts faster with TensorFlow's own kernels
    ("eval", AVX2, {}, None),
    ("fit", BF16, {}, None),  # TensorFlow turns it on by itself there
    ("fit", None, {}, None),  # flags unknown (not Linux)
    ("fit", ["fma"], {}, None),  # no AVX2
    ("fit", AVX2, {"TF_ENABLE_ONEDNN_OPTS": "0"}, None),  # the user's setting wins
])
def test_onednn_is_set_only_for_training_on_avx2_cpus_that_lack_it(command, flags, environ, expected):
    value, reason = pick_onednn(command, flags, environ)
    assert value == expected
    assert reason
    if environ:
        assert "TF_ENABLE_ONEDNN_OPTS=0" in reason


def test_other_backends_are_left_alone():
    assert pick_onednn("fit", AVX2, {}, backend="jax")[0] is None
    assert onednn_reason(None, AVX2, {}) == "not used by this backend"


def test_the_reason_says_how_to_get_it_where_tensorflow_runs_without():
    assert "TF_ENABLE_ONEDNN_OPTS=1" in onednn_reason(False, AVX2, {})
    assert onednn_reason(False, AVX2, {"TF_ENABLE_ONEDNN_OPTS": "0"}) == "TF_ENABLE_ONEDNN_OPTS=0"
    assert onednn_reason(True, BF16, {}) == "TensorFlow's default on this CPU"


def test_nothing_is_set_once_tensorflow_runs():
    import tensorflow  # noqa: F401  (imported: too late to change its kernels)

    environ = {}
    set_onednn("fit", environ)
    assert environ == {}


def test_the_hardware_line_names_onednn_and_why():
    choice = HardwareChoice("float32", "auto", False, "auto", 0, "auto", "thread", True, "because")
    assert choice.line().endswith("oneDNN on (because)")
    assert "oneDNN" not in HardwareChoice("float32", "auto", None, "auto", 0, "auto").line()


# A fresh process on a CPU that reads as AVX2-only: the command's entry point sets the
# variable before TensorFlow starts, and the dry run's plan says so; predict does not.
CHILD = textwrap.dedent("""
    import os, sys
    from kseg.training import environment
    environment.cpu_info = lambda: {"model": "test", "flags": ["avx2", "fma"]}
    os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
    from kseg.cli.main import main
    try:
        main(sys.argv[1:], standalone_mode=False)
    except Exception as exc:
        print("error:", exc)
    print("TF_ENABLE_ONEDNN_OPTS=" + os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"))
""")


def _child(*args, cwd):
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=cwd,
                         timeout=300, check=False)
    return out.stdout


def test_kseg_fit_turns_onednn_on_before_tensorflow_starts(tmp_path):
    out = _child("fit", "unet", "--runs", str(tmp_path / "runs"), "--dry-run", cwd=tmp_path)
    assert out.rstrip().endswith("TF_ENABLE_ONEDNN_OPTS=1")
    assert "kseg's default for training" in " ".join(out.split())
    assert not (tmp_path / "runs").exists()


def test_kseg_predict_keeps_tensorflows_default(tmp_path):
    out = _child("predict", str(tmp_path / "no-such-run"), str(tmp_path), cwd=tmp_path)
    assert out.rstrip().endswith("TF_ENABLE_ONEDNN_OPTS=unset")
