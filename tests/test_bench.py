"""kseg.bench.flops by hand, and a tiny smoke run of every `kseg bench` code path (no timings)."""

import json
import math

import kseg_tiny
import pytest
from click.testing import CliRunner


def _toy():
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", dilation_rate=1, name="c2")(x)
    x = keras.layers.SeparableConv2D(16, 3, padding="same", name="sep")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=2, name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)  # not counted: memory-bound
    x = keras.layers.Conv2DTranspose(4, 2, strides=2, name="up")(x)
    x = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(inputs, x)


def test_layer_flops_by_hand():
    from kseg.bench.flops import forward_flops, layer_flops

    rows = {r["name"]: r for r in layer_flops(_toy(), (8, 8, 3))}
    # One multiply-add = 2 FLOPs. On an 8x8x3 input:
    expected = {
        "c1": 2 * 8 * 8 * 8 * (9 * 3),  # 8x8 outputs x 8 channels, each a 3x3x3 dot product
        "c2": 2 * 4 * 4 * 16 * (9 * 8),  # stride 2: 4x4 outputs, 3x3x8 products
        "sep": 2 * 4 * 4 * 16 * (9 + 16),  # depthwise 3x3 on 16 channels, then 1x1 16 -> 16
        "dw": 2 * 4 * 4 * 16 * 9,  # dilation changes which pixels are read, not how many
        "up": 2 * 4 * 4 * 16 * (2 * 2 * 4),  # each input pixel scattered through a 2x2x4 kernel
        "fc": 2 * 8 * 8 * 5 * 4,
    }
    assert {k: r["flops"] for k, r in rows.items()} == expected
    assert rows["up"]["output_shape"] == (8, 8, 4)
    assert forward_flops(_toy(), (8, 8, 3)) == sum(expected.values())
    # Sizes scale the count: twice the side, four times the FLOPs.
    assert forward_flops(_toy(), (16, 16, 3)) == 4 * sum(expected.values())


def test_flops_walk_nested_and_sequential():
    import keras

    from kseg.bench.flops import layer_flops

    conv = keras.layers.Conv2D(4, 3, padding="same", name="sc")
    inner = keras.Sequential([keras.Input((None, None, 3)), conv], name="backbone")
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(2, 1, name="head")(inner(inputs))
    rows = layer_flops(keras.Model(inputs, outputs), (8, 8, 3))
    expected = [("backbone/sc", 2 * 64 * 4 * 27), ("head", 2 * 64 * 2 * 4)]
    assert [(r["name"], r["flops"]) for r in rows] == expected


def _runs(fit=True):
    """Results of a bench run, figures written by hand."""
    runs = [
        {"section": "ceiling", "label": "tensorflow", "backend": "tensorflow",
         "result": {"gflops": 40.0, "seconds_per_step": 1.0}},
        {"section": "ceiling", "label": "jax", "backend": "jax",
         "result": {"gflops": 10.0, "seconds_per_step": 4.0}},
        {"section": "network", "label": "unet", "backend": "tensorflow",
         "result": {"arch": "unet", "flops_per_patch": 1e9, "train_patches_per_s": 4.0, "train_gflops": 12.0,
                    "predict_patches_per_s": 12.0, "predict_gflops": 12.0, "frame_speedup": 3.5,
                    "frame_fps": 2.0, "peak_rss_mb": 900.0}},
        {"section": "network", "label": "b", "backend": "tensorflow",
         "result": {"arch": "b", "flops_per_patch": 1e9, "train_patches_per_s": 8.0, "train_gflops": 24.0,
                    "predict_patches_per_s": 24.0, "predict_gflops": 24.0, "peak_rss_mb": 900.0}},
        {"section": "pipeline", "label": "camvid", "backend": "tensorflow",
         "result": {"dataset": "camvid", "patches_per_second": 100.0, "workers": 2,
                    "per_core_patches_per_second": 60.0, "scaling_1_to_2": 1.67,
                    "processes": {"scaling_1_to_2": 1.9, "projected_patches_per_second": 800.0}}},
        {"section": "confusion", "label": "16 frames", "backend": "tensorflow",
         "result": {"numpy_fps": 300.0, "keras_fps": 20.0, "agree": True}},
        {"section": "variant", "label": "a", "backend": "torch", "result": {"error": "exit 1: boom"}},
    ]
    if fit:
        runs.append({"section": "fit", "label": "unet", "backend": "tensorflow",
                     "result": {"arch": "unet", "dataset": "camvid", "peak_rss_mb": 2100.0, "steps": 20,
                                "val_steps": 5, "bare_train_patches_per_s": 5.0, "epoch_seconds": 50.0,
                                "bare_seconds": 40.0, "epoch_over_bare": 1.25, "fixed_seconds": 5.0,
                                "step_over_bare": 1.1, "study_epoch_seconds": 2880.0,
                                "study_bare_seconds": 2400.0,
                                "study_over_bare": 1.2, "study_train_steps": 367, "study_val_steps": 101,
                                "study_hours": 16.0}})
    return runs


def test_targets_met_gap_and_not_measured():
    from kseg.bench import suite as benchsuite

    peer = {"path": "bench-peer.json", "ratio": 1.6, "paired_ratio": 1.4, "kseg_precision": "mixed_bfloat16"}
    results = benchsuite.summarize({"runs": _runs()}, peer)
    assert results["ceiling_gflops"] == 40.0  # the fastest backend's convolution
    met = {t["target"]: (t["measured"], t["status"]) for t in results["targets"]}
    # unet trains at 12/40 = 30 % of the ceiling, b at 24/40 = 60 %.
    assert met["training at >= 50% of the conv ceiling (unet)"] == (pytest.approx(0.3), "gap")
    assert met["training at >= 50% of the conv ceiling (b)"] == (pytest.approx(0.6), "met")
    # 100 patches/s over the fit's own bare U-Net step, 5 patches/s: exactly 20x is met.
    assert met["data pipeline >= 20x the bare U-Net train step"] == (pytest.approx(20.0), "met")
    assert met["full frame >= 3x faster than the 4x4 patch grid (unet)"] == (3.5, "met")
    # The whole epoch (2880 s against 2400 s of bare steps, 1.2), not the capped one (1.25).
    assert met["kseg fit unet epoch within 10% of its bare steps + validation (camvid)"] == (1.2, "gap")
    assert met["kseg fit unet peak memory <= 2 GB (camvid)"] == (2100.0, "gap")
    assert met["the study's 20 epochs unet in < 1 h (camvid)"] == (16.0, "gap")
    # The paired ratio wins over the unpaired one: 1.4 < 1.5.
    assert met["kseg U-Net trains >= 1.5x faster than segmentation_models"] == (1.4, "gap")
    # 300 frames/s scored against 2 frames/s predicted by the faster network: 150x.
    assert met["confusion matrix >= 10x faster than full-frame prediction"] == (pytest.approx(150.0), "met")
    from kseg.bench.bench_tables import tables

    titles = [t[0] for t in tables(results)]
    assert titles[-1] == "Failed measurements" and "Targets" in titles
    pipeline = next(rows for title, _, rows in tables(results) if title.startswith("Data pipeline"))
    assert pipeline == [("camvid", None, 2, 100.0, 60.0, 1.67, None, 1.9, 800.0)]


def test_targets_without_fit_or_peer():
    from kseg.bench.targets import check, target

    rows = {t["target"]: t for t in check([r for r in _runs(fit=False) if "error" not in r["result"]])}
    # No fit run: the pipeline is compared with the network run's float32 U-Net step, 100 / 4.
    assert rows["data pipeline >= 20x the bare U-Net train step"]["measured"] == pytest.approx(25.0)
    for name in ("kseg fit epoch within 10% of its bare steps + validation", "kseg fit peak memory <= 2 GB",
                 "kseg U-Net trains >= 1.5x faster than segmentation_models"):
        assert (rows[name]["met"], rows[name]["status"]) == (None, "not measured")
    assert "make bench-peer" in rows["kseg U-Net trains >= 1.5x faster than segmentation_models"]["note"]
    assert target("t", "<=", 1.1, 1.1)["status"] == "met" and target("t", "<", 1.0, 1.0)["status"] == "gap"


def test_load_peer(tmp_path, monkeypatch):
    from kseg.bench.targets import PEER_FILE, load_peer
    from kseg.errors import KsegError

    monkeypatch.chdir(tmp_path)
    assert load_peer() is None  # no ./bench-peer.json: the target is "not measured"
    (tmp_path / PEER_FILE).write_text(json.dumps({"ratio": 1.7, "paired_ratio": None, "rounds": []}))
    assert load_peer()["ratio"] == 1.7 and load_peer()["path"] == PEER_FILE
    (tmp_path / "other.json").write_text(json.dumps({"rounds": []}))
    for bad in ("missing.json", "other.json"):
        with pytest.raises(KsegError, match="--peer"):
            load_peer(bad)
    from kseg.cli import main

    result = CliRunner().invoke(main, ["bench", "--peer", "missing.json"])
    assert result.exit_code == 1 and "--peer missing.json" in result.output


def test_plan_quick_and_full():
    from kseg.bench import suite as benchsuite

    quick = benchsuite.plan(["unet"], quick=True, backends=["tensorflow", "jax"])
    assert [(s, b) for s, _, b, _ in quick] == [
        ("ceiling", "tensorflow"), ("ceiling", "jax"), ("network", "tensorflow"), ("variant", "jax"),
        ("pipeline", "tensorflow"), ("confusion", "tensorflow"), ("fit", "tensorflow")]
    assert all(t["steps"] == 2 for s, _, _, t in quick if s in ("ceiling", "network", "variant"))
    full = benchsuite.plan(["unet", "deeplabv3"], backends=["tensorflow"], fit_arch=None)
    labels = [b for s, _, b, _ in full if s == "variant"]
    assert labels.count("tensorflow xla") == 2 and "tensorflow mixed_bfloat16" in labels
    assert not any(s == "fit" for s, *_ in full)
    fits = [t["steps"] for plan in (quick, benchsuite.plan(["unet"], backends=["tensorflow"]),
                                    benchsuite.plan(["unet"], backends=["tensorflow"], fit_steps=0))
            for s, _, _, t in plan if s == "fit"]
    assert fits == [4, 20, None]  # --fit-steps 0: whole epochs, uncapped


def test_variants_are_stopped_at_a_multiple_of_their_float32_time(monkeypatch):
    """A variant with no fast kernels here (float16 on a CPU) cannot hold the bench for
    half an hour: its worker gets VARIANT_TIMEOUT_FACTOR x the network's wall time."""
    from kseg.bench import suite as benchsuite

    calls = []

    def worker(task, backend="tensorflow", env=None, timeout=1800):
        calls.append((task["task"], timeout))
        if task["task"] == "network":
            return {"wall_seconds": 64.0}
        return {"error": f"timed out after {timeout} s"}

    monkeypatch.setattr(benchsuite, "run_worker", worker)
    monkeypatch.setattr(benchsuite, "summarize", lambda results, peer=None: None)  # needs real figures
    jobs = [("network", "unet", "tensorflow", {"task": "network"}),
            ("variant", "unet", "tensorflow mixed_float16", {"task": "network-variant"}),
            ("variant", "deeplabv3", "tensorflow xla", {"task": "other-variant"})]
    results = benchsuite.run_suite(jobs)
    assert calls == [("network", 1800), ("network-variant", 5 * 64), ("other-variant", 1800)]
    assert results["runs"][1]["result"]["error"] == "timed out after 320 s"
    assert benchsuite.variant_timeout([{"section": "network", "label": "a", "result": {"wall_seconds": 3.0}}],
                                      "variant", "a") == {"timeout": benchsuite.VARIANT_MIN_SECONDS}


@pytest.mark.slow
def test_bench_cli_smoke(tmp_path, monkeypatch):
    """`kseg bench` end to end on the tiny model: ceiling, network, frames, pipeline."""
    from kseg.cli import main
    from kseg.data.synth import write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, n_train=2, n_val=1, n_test=1, size=(64, 64))
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(kseg_tiny.__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(__import__("pathlib").Path(kseg_tiny.__file__).parent))
    out = tmp_path / "bench.json"
    args = ["bench", kseg_tiny.NAME, "--quick", "--backends", "tensorflow", "--fit-arch", "", "--steps", "1",
            "--patch", "16", "--batch-size", "2", "--ceiling-shape", "2,8,8,16", "--data", str(data),
            "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    runs = {r["section"]: r["result"] for r in doc["runs"]}
    assert set(runs) == {"ceiling", "network", "pipeline", "confusion"}
    assert runs["confusion"]["agree"] and runs["confusion"]["numpy_fps"] > 0
    assert not [r for r in runs.values() if "error" in r], runs
    net = runs["network"]
    # tiny_test: two 3x3 convs 3->8, 8->8 and a 1x1 head to CamVid's 11 classes, on 16x16.
    assert net["flops_per_patch"] == 2 * 16 * 16 * (9 * 3 * 8 + 9 * 8 * 8 + 8 * 11)
    assert net["padded_frame"] == [360, 480]  # stride 4 divides both sides
    for key in ("train_patches_per_s", "predict_patches_per_s", "frame_fps", "grid_fps", "peak_rss_mb"):
        assert net[key] > 0
    assert runs["pipeline"]["patches"] == 2 * 16  # 2 frames x a 4x4 grid
    assert {"1", "2"} <= set(runs["pipeline"]["by_workers"]) and runs["pipeline"]["scaling_1_to_2"] > 0
    processes = runs["pipeline"]["processes"]
    assert set(processes["by_workers"]) == {"1", "2"} and processes["scaling_1_to_2"] > 0
    assert processes["by_workers"]["2"]["frameworks_in_workers"] == []
    assert "Targets" in result.output


def test_a_whole_epoch_pays_the_capped_epochs_fixed_seconds_once():
    from kseg.bench.fitrun import whole_epoch_seconds

    # 20 train steps in 10 s, 5 val steps in 2 s, 1 s outside them: 0.5 s and 0.4 s a step.
    phases = {"train": 10.0, "val": 2.0, "fixed": 1.0}
    assert whole_epoch_seconds(phases, 20, 5, 367, 13) == pytest.approx(1.0 + 367 * 0.5 + 13 * 0.4)
    # Capped at its own length, the projection is the epoch itself.
    assert whole_epoch_seconds(phases, 20, 5, 20, 5) == pytest.approx(13.0)


@pytest.mark.slow
def test_measure_fit_times_a_real_fit_and_its_bare_steps(tmp_path):
    """kseg.bench.fitrun on the tiny model: a 2-epoch fit capped at 2 steps, then its bare steps."""
    from kseg.bench.fitrun import measure_fit
    from kseg.data.synth import write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, n_train=2, n_val=1, n_test=1, size=(64, 64))
    fit = measure_fit(kseg_tiny.NAME, data=data, steps=2, runs=tmp_path / "runs", repeats=2)
    assert (fit["steps"], fit["val_steps"]) == (2, 1)  # 2 frames x 16 cells / 16; 16 val cells
    assert (fit["study_train_steps"], fit["study_val_steps"]) == (2, 1)
    assert fit["bare_seconds"] == pytest.approx(2 * fit["train_step_seconds"] + fit["test_step_seconds"])
    assert fit["epoch_over_bare"] == pytest.approx(fit["epoch_seconds"] / fit["bare_seconds"])
    # EpochPhases saw epoch 2's steps: each part measured, the whole epoch projected from them.
    assert fit["train_seconds"] > 0 and fit["val_seconds"] > 0 and fit["fixed_seconds"] > 0
    # The tiny data's whole epoch is the capped one: the same bare steps.
    assert fit["study_bare_seconds"] == pytest.approx(fit["bare_seconds"])
    # A ratio of two timings: its value is for `make bench`, here only that it was measured.
    assert math.isfinite(fit["fused_norm_speedup"]) and fit["fused_norm_speedup"] > 0
    assert (tmp_path / "runs" / kseg_tiny.NAME / "history.csv").exists()


def test_bench_table_measures_sizes_training_and_frames(tmp_path):
    """`kseg bench --table` on the tiny model: its parameters and FLOPs by hand, and times."""
    from kseg.cli import main

    out = tmp_path / "table.json"
    args = ["bench", kseg_tiny.NAME, "--table", "--steps", "1", "--json", str(out)]
    result = CliRunner().invoke(main, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    # tiny_test: 3x3 convs 3->8 and 8->8 with biases, a 1x1 head to CamVid's 11 classes.
    assert row["params"] == (9 * 3 * 8 + 8) + (9 * 8 * 8 + 8) + (8 * 11 + 11)
    assert row["frame"] == [360, 480]  # stride 4 divides both sides
    assert row["gflops"] == pytest.approx(2 * 360 * 480 * (9 * 3 * 8 + 9 * 8 * 8 + 8 * 11) / 1e9)
    assert row["train_patches_s"] > 0 and 0 < row["predict_ms_min"] <= row["predict_ms"]
    assert "Networks (float32, short runs)" in result.output and "360x480" in result.output


def test_bench_pipeline_script_writes_its_json_and_ends_with_the_scaling_line(tmp_path, capsys):
    """`make bench-pipeline`'s script on a tiny dataset: the JSON, and its last line's format."""
    import re
    import runpy
    from pathlib import Path

    from kseg.data.synth import write_synthetic

    data, out = tmp_path / "data", tmp_path / "runs" / "pipeline.json"
    write_synthetic(data, n_train=2, n_val=1, n_test=1, size=(64, 64))
    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pipeline.py"))
    script["main"](["--data", str(data), "--json", str(out), "--ceiling-batches", "4"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"pipeline 1->2 workers: \d+\.\d\dx", last), last
    doc = json.loads(out.read_text())
    assert last.endswith(f"{doc['processes']['scaling_1_to_2']:.2f}x")
    assert doc["patches"] == 2 * 16 and set(doc["by_workers"]) == {"1", "2"}  # the threads, for comparison
    processes = doc["processes"]
    assert set(processes["by_workers"]) == {"1", "2"} and processes["projected_cores"] == 16
    assert "capped by the training process" in processes["projection_assumption"]
    ceiling = doc["independent"]  # 1 and 2 processes that share nothing, alternated twice
    assert [count for count, _ in ceiling["runs"]] == [1, 2, 1, 2] and ceiling["scaling_1_to_2"] > 0
