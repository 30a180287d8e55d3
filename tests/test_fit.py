"""`kseg fit` end to end on a tiny model and 64x64 synthetic scenes (CPU, seconds each)."""

import csv
import json
import math
import re

import keras
import kseg_tiny
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.runs import HISTORY_COLUMNS, RunDir, find_runs

TINY = kseg_tiny.NAME


def fit(data_dir, runs, *args, arch=TINY):
    """Run `kseg fit` in-process with the tiny settings; returns click's Result."""
    argv = [
        "fit",
        arch,
        "--data",
        str(data_dir),
        "--runs",
        str(runs),
        "--patch",
        "32",
        "--grid",
        "2x2",
        "--batch-size",
        "2",
        *args,
    ]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def read_history(run):
    with open(run.history_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """One 2-epoch run (seed 1), shared by the tests that only read it."""
    runs = tmp_path_factory.mktemp("runs")
    result = fit(data_dir, runs, "--epochs", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    return RunDir(runs / TINY), result.output


def test_fit_writes_a_complete_run_directory(data_dir, trained):
    run, out = trained
    names = {p.name for p in run.path.iterdir() if not p.name.startswith(".")}
    assert names == {"config.json", "env.json", "history.csv", "best.keras", "last.keras", "state.json"}
    assert "epoch 2/2" in out  # plain progress lines: CliRunner is not a terminal

    rows = read_history(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert all(math.isfinite(float(r[k])) for r in rows for k in HISTORY_COLUMNS)
    assert float(rows[0]["lr"]) == pytest.approx(1e-3)

    config = json.loads(run.config_path.read_text())
    expected = {
        "arch": TINY,
        "epochs": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "patch": 32,
        "grid": [2, 2],
        "seed": 1,
        "split": "val",
        "stride": 4,
        "monitor": "val_accuracy",
        "monitor_mode": "max",
        "data": str(data_dir.resolve()),
        "model_kwargs": {},
        "precision": "auto",
    }
    assert {k: config[k] for k in expected} == expected
    assert run.spec.num_classes == 11 and run.spec.void == 11

    env = run.env
    assert env["backend"] == keras.backend.backend() and env["keras"] == keras.__version__
    assert env["data_fingerprint"]["files"] == 6  # 2 train + 1 val images and masks

    state = run.state
    val_acc = [float(r["val_accuracy"]) for r in rows]
    assert state.status == "finished" and state.epoch == 2
    assert state.best_value == pytest.approx(max(val_acc))
    assert state.best_epoch == 1 + int(np.argmax(val_acc))
    assert state.train_seconds == pytest.approx(sum(float(r["seconds"]) for r in rows), abs=0.01)

    model = run.load_model("best")
    assert model.name == TINY
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 32, 32, 11)
    assert TINY in [r.name for r in find_runs(run.path.parent)]


def test_same_seed_gives_the_same_history(data_dir, trained):
    runs = trained[0].path.parent
    assert fit(data_dir, runs, "--epochs", "2", "--seed", "1", "--name", "again").exit_code == 0
    a, b = trained[0].history(), RunDir(runs / "again").history()
    metrics = [k for k in HISTORY_COLUMNS if k != "seconds"]
    assert [[r[k] for k in metrics] for r in a] == [[r[k] for k in metrics] for r in b]


def test_wrong_monitor_fails_at_start_naming_the_choices(data_dir, tmp_path):
    result = fit(data_dir, tmp_path, "--monitor", "val_acc")
    assert result.exit_code == 1
    assert "'val_acc'" in result.output and "val_accuracy" in result.output and "val_miou" in result.output
    assert not (tmp_path / TINY / "state.json").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    assert fit(data_dir, tmp_path, "--epochs", "1").exit_code == 0
    again = fit(data_dir, tmp_path, "--epochs", "1")
    assert again.exit_code == 1 and "already finished 1 epochs" in again.output and "--name" in again.output
    changed = fit(data_dir, tmp_path, "--epochs", "2", "--seed", "9")
    assert changed.exit_code == 1 and "seed=0" in changed.output
    run = RunDir(tmp_path / TINY)
    best, last = run.best_path.read_bytes(), run.last_path.read_bytes()

    # Extending the finished run with a new rate. Adam moves every weight by about lr
    # per step: at 1e12 the logits overflow at once.
    result = fit(data_dir, tmp_path, "--epochs", "3", "--lr", "1e12")
    assert result.exit_code == 1
    assert re.search(r"training loss became (nan|inf) at epoch 2", result.output)
    assert "checkpoints of epoch 1 are kept" in result.output
    assert run.best_path.read_bytes() == best and run.last_path.read_bytes() == last
    assert run.state.status == "failed" and run.state.epoch == 1
    assert [r["epoch"] for r in run.history()] == [1]

    refused = fit(data_dir, tmp_path, "--epochs", "3")
    assert refused.exit_code == 1 and "--resume" in refused.output
    fixed = fit(data_dir, tmp_path, "--epochs", "2", "--resume", "--lr", "1e-3")
    assert fixed.exit_code == 0, fixed.output
    assert [r["epoch"] for r in run.history()] == [1, 2]
    assert run.state.epochs == 2 and run.config["epochs"] == 2 and run.config["lr"] == 1e-3
    assert run.state.lr_changes == [{"epoch": 2, "lr": 1e12}, {"epoch": 2, "lr": 1e-3}]


def test_checkpoint_of_another_model_is_rejected(data_dir, tmp_path, trained):
    other = tmp_path / "five_classes.keras"
    kseg_tiny.tiny_test(num_classes=5, input_shape=(None, None, 3)).save(other)
    result = fit(data_dir, tmp_path, "--epochs", "1", "--init-from", str(other))
    assert result.exit_code == 1 and "5 classes" in result.output and "11" in result.output

    base = trained[0].path
    wide = fit(
        data_dir,
        tmp_path,
        "--epochs",
        "1",
        "--init-from",
        str(base),
        "--model-arg",
        "width=16",
        "--name",
        "wide",
    )
    assert wide.exit_code == 1 and "layers differ" in wide.output
    ok = fit(data_dir, tmp_path, "--epochs", "1", "--init-from", str(base), "--name", "warm", "--seed", "1")
    assert ok.exit_code == 0, ok.output
    # Warm-started from epoch 2 of run a: its first loss is below a's first.
    assert RunDir(tmp_path / "warm").history()[0]["loss"] < trained[0].history()[0]["loss"]

    arch = fit(data_dir, base.parent, "--name", TINY, arch=kseg_tiny.OTHER)
    assert arch.exit_code == 1 and f"holds a '{TINY}' run" in arch.output


def test_fit_all_trains_each_registered_model_and_skips_finished(data_dir, trained, monkeypatch):
    from kseg import registry

    runs = trained[0].path.parent  # tiny_test already finished 2 epochs there
    monkeypatch.setattr(registry, "list_models", lambda pattern="*": [TINY, kseg_tiny.OTHER])
    result = fit(data_dir, runs, "--epochs", "2", "--seed", "1", arch="--all")
    assert result.exit_code == 0, result.output
    assert f"{TINY}: " in result.output and "skipped" in result.output
    other = RunDir(runs / kseg_tiny.OTHER)
    assert other.config["arch"] == kseg_tiny.OTHER and other.state.epoch == 2


def test_fit_trains_each_architecture_named_and_checks_every_name_first(data_dir, tmp_path):
    runs = tmp_path / "runs"
    typo = CliRunner().invoke(main, ["fit", TINY, "tiny_tset", "--data", str(data_dir), "--runs",
                                          str(runs), "--epochs", "1", "--patch", "32", "--grid", "2x2"])
    assert typo.exit_code == 1 and "tiny_tset" in typo.output and not runs.exists()  # nothing trained
    twice = CliRunner().invoke(main, ["fit", TINY, TINY, "--data", str(data_dir)])
    assert twice.exit_code == 1 and "named twice" in twice.output
    both = fit(data_dir, runs, "--epochs", "1", kseg_tiny.OTHER, arch=TINY)
    assert both.exit_code == 0, both.output
    assert [RunDir(runs / a).config["arch"] for a in (TINY, kseg_tiny.OTHER)] == [TINY, kseg_tiny.OTHER]
    assert RunDir(runs / kseg_tiny.OTHER).state.epoch == 1
    again = fit(data_dir, runs, "--epochs", "1", kseg_tiny.OTHER, arch=TINY)  # both finished: skipped
    assert again.exit_code == 0 and again.output.count("skipped") == 2, again.output


@pytest.mark.parametrize(
    "options, config_key, expected",
    [
        (["--split", "80/20"], "split", "80/20"),
        (["--class-weights"], "class_weights", True),
        (["--augment"], "augment", True),
        (["--crops"], "grid", None),
    ],
)
def test_study_options_train_and_are_recorded(data_dir, tmp_path, options, config_key, expected):
    result = fit(data_dir, tmp_path, "--epochs", "1", *options)
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / TINY)
    assert run.config[config_key] == expected
    (row,) = read_history(run)
    assert all(math.isfinite(float(row[k])) for k in ("loss", "accuracy", "val_loss", "val_accuracy"))
    assert run.state.status == "finished"


def test_jit_really_compiles_with_xla_and_refuses_determinism(data_dir, tmp_path, monkeypatch):
    # Keras drops jit_compile=True (with only a warning) while TF op determinism is on,
    # which kseg turns on for CPUs; --jit must win over that default.
    seen = []
    original = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        seen.append(self.jit_compile)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    result = fit(data_dir, tmp_path / "xla", "--epochs", "1", "--jit")
    assert result.exit_code == 0, result.output
    result = fit(data_dir, tmp_path / "plain", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert seen == [True, False]
    result = CliRunner().invoke(main, ["fit", TINY, "--jit", "--deterministic", "--runs", str(tmp_path)])
    assert result.exit_code == 1 and "--jit and --deterministic" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's tf.function retracing")
def test_a_fit_traces_its_train_step_once(data_dir, tmp_path, monkeypatch):
    """Keras' TensorFlow trainer creates the optimizer's and the metrics' variables in the
    train step's first trace, and TensorFlow then traces the step again (run J: 27 s of
    a U-Net fit's start-up). kseg builds them first: one trace per fit, fresh or resumed;
    without build_training_state the same fit traces twice, and trains alike."""
    from keras.src.backend.tensorflow import trainer

    from kseg.training import loop

    traces, real = [], trainer.TensorFlowTrainer.train_step
    monkeypatch.setattr(trainer.TensorFlowTrainer, "train_step",
                        lambda self, data: traces.append(1) or real(self, data))
    assert fit(data_dir, tmp_path / "runs", "--epochs", "2").exit_code == 0
    assert fit(data_dir, tmp_path / "runs", "--epochs", "3").exit_code == 0  # resumed from last.keras
    assert len(traces) == 2  # one per fit
    monkeypatch.setattr(loop, "build_training_state", lambda model, patch: None)
    assert fit(data_dir, tmp_path / "old", "--epochs", "1").exit_code == 0
    assert len(traces) == 4
    first = [read_history(RunDir(tmp_path / d / TINY))[0] for d in ("runs", "old")]
    assert first[0]["loss"] == first[1]["loss"] and first[0]["val_loss"] == first[1]["val_loss"]


@pytest.mark.parametrize("options", [
    ["--loss", "ce+dice"],
    ["--loss", "lovasz", "--class-weights"],
    ["--weight-decay", "0.5"],
    ["--crops", "--scale", "0.5:2"],
    ["--photometric"],
    ["--no-augment"],
])
def test_training_options_change_what_training_does(data_dir, tmp_path, trained, options):
    """Same seed and data as the shared run: each option must change the first epoch's loss."""
    result = fit(data_dir, tmp_path, "--epochs", "2", "--seed", "1", *options)
    assert result.exit_code == 0, result.output
    loss = RunDir(tmp_path / TINY).history()[0]["loss"]
    assert loss != pytest.approx(trained[0].history()[0]["loss"], rel=1e-6)


def test_schedule_and_warmup_set_the_recorded_rates(data_dir, tmp_path):
    # 2 frames x 4 cells / batch 2 = 4 steps an epoch; 1 warmup epoch, then poly over 3.
    result = fit(data_dir, tmp_path, "--epochs", "4", "--schedule", "poly", "--warmup", "1", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / TINY)
    rates = [r["lr"] for r in run.history()]
    # Epoch 1 starts warmup at lr/4 (step 0 of 4); epochs 2-4 start poly at t = 0, 1/3, 2/3.
    expected = [0.01 / 4, 0.01, 0.01 * (2 / 3) ** 0.9, 0.01 * (1 / 3) ** 0.9]
    assert rates == pytest.approx(expected, rel=1e-5)
    assert run.state.schedule["schedule"] == "poly" and run.state.plateau is None


def test_encoder_weights_need_a_builder_that_takes_them(data_dir, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    result = fit(data_dir, tmp_path, "--epochs", "1", "--encoder-weights", str(weights))
    assert result.exit_code == 1 and "takes no pretrained weights" in result.output


def test_run_checkpoints_load_in_bare_keras(trained, run_python):
    """best.keras and last.keras carry no compile config: a process without kseg loads them."""
    run, _ = trained
    out = run_python(f"""
        import sys
        import keras
        for name in ("best", "last"):
            model = keras.saving.load_model({str(run.path)!r} + f"/{{name}}.keras", safe_mode=True)
            print(name, model.output_shape[-1], "kseg" in sys.modules)
    """)
    k = run.spec.num_classes
    assert out.split() == ["best", str(k), "False", "last", str(k), "False"]


def test_the_readmes_camvid_recipe_command_trains_and_loads_in_bare_keras(data_dir, tmp_path, run_python):
    """`kseg fit unet --recipe camvid --data DIR` (the README's), shrunk to one epoch of 32 px
    crops: the recipe's whole path (scaled crops, photometric jitter, ce+lovasz, AdamW, poly,
    best on val_miou) runs, and its best.keras loads without kseg, safe_mode on."""
    argv = ["fit", "unet", "--recipe", "camvid", "--data", str(data_dir), "--runs", str(tmp_path),
            "--epochs", "1", "--warmup", "0", "--patch", "32", "--crops-per-image", "2"]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "unet")
    config = {k: run.config[k] for k in ("recipe", "loss", "schedule", "grid", "weight_decay", "monitor")}
    assert config == {"recipe": "camvid", "loss": "ce+lovasz", "schedule": "poly", "grid": None,
                      "weight_decay": 1e-4, "monitor": "val_miou"}
    assert run.state.status == "finished" and 0 <= run.history()[0]["val_miou"] <= 1
    out = run_python(f"""
        import sys
        import keras
        import numpy as np
        model = keras.saving.load_model({str(run.best_path)!r}, safe_mode=True)
        print(model.predict(np.zeros((1, 64, 96, 3), "float32"), verbose=0).shape, "kseg" in sys.modules)
    """)
    assert out.split() == ["(1,", "64,", "96,", f"{run.spec.num_classes})", "False"]


def test_a_bad_builder_argument_is_named_and_a_corrected_command_starts_afresh(data_dir, tmp_path):
    bad = fit(data_dir, tmp_path, "--epochs", "1", "--name", "run", "--model-arg", "decoder_filters=abc",
              arch="unet")
    assert bad.exit_code == 1 and "decoder_filters" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "run").exists()  # a refused start leaves nothing behind
    # The same --name, corrected: a new run.
    good = fit(data_dir, tmp_path, "--epochs", "1", "--name", "run", arch=TINY)
    assert good.exit_code == 0, good.output
    assert RunDir(tmp_path / "run").config["model_kwargs"] == {}
