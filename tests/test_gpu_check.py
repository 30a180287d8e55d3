"""`make camvid-pack` and `make gpu-check` (benchmarks/gpu/): the pack's JPEG frames and
byte-identical masks as kseg reads them, the step bookkeeping (timeouts, the budget, the
backend picked), and the dry run end to end on a tiny network with batch norm."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))  # development tools, outside the package

import camvid_pack  # noqa: E402
import gpu_check  # noqa: E402
import gpu_steps  # noqa: E402

from kseg.data import io  # noqa: E402
from kseg.data.readers import open_dataset  # noqa: E402
from kseg.data.synth import write_synthetic  # noqa: E402
from kseg.errors import KsegError  # noqa: E402

# Conv, batch norm, ReLU and the 1x1 head: the fused-norm probe needs a BatchNormalization,
# and a network this small traces in a second, so the dry run's CPU time is process start-ups.
TINY_PLUGIN = '''
import kseg

@kseg.register_model("gpu_check_tiny", stride=4)
def gpu_check_tiny(num_classes=12, input_shape=(None, None, 3), activation=None):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="segmentation_output")(x)
    return keras.Model(inputs, x, name="gpu_check_tiny")
'''


def test_pack_writes_jpeg_frames_and_the_masks_byte_for_byte(tmp_path):
    source = write_synthetic(tmp_path / "src", n_train=2, n_val=1, n_test=0, size=(32, 48))
    summary = camvid_pack.pack(source, tmp_path / "pack.tar")
    assert summary["frames"] == {"train": 2, "val": 1}
    assert summary["bytes"] == (tmp_path / "pack.tar").stat().st_size
    root = camvid_pack.unpack(tmp_path / "pack.tar", tmp_path / "out")
    dataset = open_dataset(root)
    assert dataset.layout == "segnet" and dataset.spec.name == "synthetic"  # kseg.json came along
    assert {s: len(p) for s, p in dataset.splits.items()} == {"train": 2, "val": 1}
    diffs = []
    for split, pairs in dataset.splits.items():
        for pair in pairs:
            original = source / split / f"{pair.name}.png"
            assert pair.image.suffix == ".jpg" and pair.mask.suffix == ".png"
            assert pair.mask.read_bytes() == (source / f"{split}annot" / pair.mask.name).read_bytes()
            frame, decoded = io.read_image(original), io.read_image(pair.image)
            assert decoded.shape == frame.shape == (32, 48, 3)
            diffs.append(np.abs(decoded.astype(int) - frame).mean())
    # quality 95 keeps each pixel within a few levels of 255; pack.json says by how much
    assert 0 < np.mean(diffs) < 8
    recorded = json.loads((root / "pack.json").read_text())["mean_abs_diff"]["all"]
    assert recorded == pytest.approx(np.mean(diffs), abs=1e-4)
    first = (root / "train.txt").read_text().splitlines()[0]
    assert first == "train/train_0000.jpg trainannot/train_0000.png"


def test_a_pack_over_the_limit_is_refused_and_not_written(tmp_path):
    source = write_synthetic(tmp_path / "src", n_train=1, n_val=1, n_test=0, size=(32, 32))
    with pytest.raises(KsegError, match="over the 0.001 MB limit"):
        camvid_pack.pack(source, tmp_path / "pack.tar", max_mb=0.001)
    assert list(tmp_path.glob("*pack*")) == []  # neither the tar nor its temporary file
    assert camvid_pack.main([str(source), str(tmp_path / "p.tar"), "--max-mb", "0.001"]) == 1


def _check(tmp_path, budget=60):
    args = SimpleNamespace(work=str(tmp_path / "work"), dry_run=True, budget=budget, arch="unet", plugin=[],
                           json=str(tmp_path / "out.json"))
    return gpu_check.GpuCheck(args)


def test_a_step_that_times_out_is_recorded_and_the_next_runs(tmp_path):
    check = _check(tmp_path)
    nothing = check.step("first", lambda c, timeout: pytest.fail("started"), timeout=5)
    assert nothing["status"] == "skip" and "no Keras backend" in nothing["reason"]  # environment failed
    check.backend = "tensorflow"
    sleeper = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    slow = check.step("slow", lambda c, timeout: c.run(sleeper, "slow", timeout), timeout=0.25)  # x4: dry run
    assert slow["status"] == "fail" and slow["reason"].startswith("timed out after 1 s; started")
    assert slow["seconds"] < 30
    broken = check.step("broken", lambda c, timeout: 1 / 0, timeout=5)
    assert broken["status"] == "fail" and broken["reason"] == "ZeroDivisionError: division by zero"
    check.started -= 60  # the budget is spent: nothing more starts
    late = check.step("late", lambda c, timeout: pytest.fail("started"), timeout=5)
    assert late["status"] == "skip" and late["reason"].startswith("not started: 0 s left of the 60 s budget")
    saved = json.loads((tmp_path / "out.json").read_text())  # written after every step
    assert list(saved["steps"]) == ["first", "slow", "broken", "late"] and saved["dry_run"] is True
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["out.json"]


def test_the_backend_is_tensorflow_where_importable_else_jax_else_torch(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    for installed, expected in ((("tensorflow", "jax"), "tensorflow"), (("jax", "torch"), "jax"),
                                (("torch",), "torch"), ((), None)):
        monkeypatch.setattr(gpu_steps.importlib.util, "find_spec",
                            lambda name, have=installed: name in have or None)
        assert gpu_steps.pick_backend()[0] == expected
    assert gpu_steps.pick_backend("torch") == ("torch", "asked for (--backend)")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert gpu_steps.pick_backend() == ("jax", "KERAS_BACKEND is set")


def test_an_editable_kseg_is_not_reinstalled(monkeypatch):
    """A developer's `pip install -e .` stays; a kseg.egg-info left in the checkout by an
    earlier build (no direct_url.json) does not hide it."""
    def dist(direct_url):
        return SimpleNamespace(read_text=lambda name: direct_url if name == "direct_url.json" else None)

    editable = dist('{"dir_info": {"editable": true}, "url": "file:///src/kseg"}')
    for found, expected in (([dist(None), editable], True), ([dist('{"dir_info": {}, "url": "x"}')], False),
                            ([], False)):
        monkeypatch.setattr(gpu_steps.importlib.metadata, "distributions", lambda name, found=found: found)
        assert gpu_steps._editable_kseg() is expected


@pytest.mark.slow
def test_dry_run_runs_every_step_on_the_cpu(tmp_path):
    (tmp_path / "gpu_check_tiny.py").write_text(textwrap.dedent(TINY_PLUGIN))
    out = tmp_path / "report" / "gpu-check.json"
    argv = [sys.executable, str(REPO / "benchmarks" / "gpu" / "gpu_check.py"), "--dry-run", "--no-install",
            "--arch", "gpu_check_tiny", "--plugin", "gpu_check_tiny", "--pack", str(tmp_path / "absent.tar"),
            "--json", str(out), "--work", str(tmp_path / "work")]
    from processes import child_env

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                          env=child_env("tensorflow", PYTHONPATH=f"{tmp_path}"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == ["gpu-check.json"]
    assert doc["dry_run"] is True and doc["backend"] == "tensorflow" and doc["finished"]
    steps = doc["steps"]
    assert list(steps) == [name for name, _, _ in gpu_steps.STEPS]
    for name, step in steps.items():
        assert step["status"] == "pass" or (step["status"] == "skip" and step["reason"]), (name, step)
        assert step["seconds"] >= 0
    assert "--no-install" in steps["install"]["reason"]
    assert steps["camvid_pack"]["frames_used"] == {"train": 4, "val": 2}  # synthetic scenes, packed
    assert steps["mixed_float16"]["loss_scale_optimizer"] and steps["mixed_float16"]["loss_scale"] > 1
    assert steps["xla"]["jit_compile"] and steps["xla"]["relative_difference"] < 1e-2
    assert steps["fused_batch_norm"]["batch_norm_layers"] == 1
    assert steps["distribute"]["topology"]["replicas"] == 1
    study = steps["study_epoch"]
    assert study["train_patches"] == 4 * 2 * 2  # 4 frames, the dry run's 2x2 grid
    assert study["patches_per_second"] == pytest.approx(study["train_patches"] / study["epoch_seconds"])
    assert {"precision", "jit", "workers"} <= set(study["chosen"])
    assert steps["camvid_epoch"]["train_patches"] == 4 * 2  # 2 crops per frame
    for name in ("study_eval", "camvid_eval"):
        assert 0 <= steps[name]["val_miou"] <= 1 and steps[name]["frames"] == 2
    assert [row["name"] for row in steps["bench"]["networks"]] == ["gpu_check_tiny"]
    assert steps["pytest"]["collected_only"] and "collected" in steps["pytest"]["summary"]
    assert doc["machine"]["keras"] and doc["machine"]["cpus"] >= 1 and "git" in doc["machine"]
