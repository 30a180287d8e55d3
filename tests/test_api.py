"""The Python API, recipes and config files, the generated `kseg fit` options, quiet start-up."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import kseg_tiny
import numpy as np
import pytest
from click.testing import CliRunner

import kseg
from kseg.cli import main
from kseg.errors import KsegError
from kseg.runs import RunDir
from kseg.training import session
from kseg.training.config import FitConfig, fields
from kseg.training.recipes import load_recipe, recipe_names, resolve

TINY = kseg_tiny.NAME
SMALL = dict(patch=32, grid=(2, 2), batch_size=2, epochs=1)


class EpochSpy(keras.callbacks.Callback):
    """A user's Keras callback: what it saw at each epoch's end, and how many epochs
    kseg had committed to history.csv by then."""

    def __init__(self, history_csv):
        super().__init__()
        self.history_csv, self.seen = history_csv, []

    def on_epoch_end(self, epoch, logs=None):
        rows = self.history_csv.read_text().splitlines()[1:] if self.history_csv.exists() else []
        self.seen.append((epoch, "val_loss" in logs, len(rows)))


class OptimizerSpy(keras.callbacks.Callback):
    """The optimizer each fit trains with: class name and weight decay."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self.seen.append((type(optimizer).__name__, float(optimizer.weight_decay or 0)))


@pytest.fixture(scope="module")
def fit_spy(tmp_path_factory):
    """The runs folder of api_run, and the callback it passes to kseg.fit."""
    runs = tmp_path_factory.mktemp("runs")
    return EpochSpy(runs / TINY / "history.csv"), runs


@pytest.fixture(scope="module")
def api_run(data_dir, fit_spy):
    spy, runs = fit_spy
    return kseg.fit(TINY, data=data_dir, runs=runs, progress=False, callbacks=[spy], **SMALL), runs


def test_fit_returns_a_run_with_history_config_and_best_model(api_run):
    run, _ = api_run
    assert [r["epoch"] for r in run.history()] == [1]
    assert run.config["recipe"] == "study" and run.config["patch"] == 32
    assert run.state.status == "finished"
    model = run.load_model("best")
    assert model.output_shape[-1] == run.spec.num_classes


def test_fit_calls_the_users_callbacks_after_the_epoch_is_committed(api_run, fit_spy):
    # Epoch 0 ended with validation logs, and history.csv already held its row.
    assert fit_spy[0].seen == [(0, True, 1)]


def test_weight_decay_trains_with_adamw_and_a_resumed_run_keeps_it(data_dir, tmp_path):
    spy = OptimizerSpy()
    for name, epochs, decay in (("decayed", 1, 0.25), ("decayed", 2, None), ("plain", 1, None)):
        settings = {**SMALL, "epochs": epochs} | ({"weight_decay": decay} if decay else {})
        kseg.fit(TINY, data=data_dir, runs=tmp_path, name=name, progress=False, callbacks=[spy], **settings)
    # The second fit continues "decayed" without repeating the option: config.json holds it.
    assert spy.seen == [("AdamW", 0.25), ("AdamW", 0.25), ("Adam", 0.0)]


def test_evaluate_and_predict_return_data(api_run, data_dir, tmp_path):
    run, runs = api_run
    scores = kseg.evaluate(run, splits=["val"], write=False)
    assert set(scores["splits"]) == {"val"} and 0 <= scores["splits"]["val"]["miou"] <= 1
    assert not (run.path / "eval.json").exists()  # write=False writes nothing
    image = np.random.default_rng(0).uniform(0, 255, (40, 52, 3)).astype(np.uint8)
    (labels,) = kseg.predict(TINY, [image], runs=runs)  # by name under `runs`
    assert labels.shape == (40, 52) and labels.dtype == np.uint8
    assert kseg.load_run(run.path).config == run.config


def test_cli_verbs_and_the_api_give_the_same_run(api_run, data_dir, tmp_path):
    run, _ = api_run
    argv = ["fit", TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--patch", "32", "--grid", "2x2",
            "--batch-size", "2", "--epochs", "1"]
    assert CliRunner().invoke(main, argv).exit_code == 0
    cli_run = kseg.load_run(tmp_path / TINY)
    assert cli_run.history()[0]["loss"] == run.history()[0]["loss"]  # same seed, same CPU


def test_a_runs_config_json_reproduces_it(api_run, data_dir, tmp_path):
    run, _ = api_run
    again = kseg.fit(config=run.config_path, runs=tmp_path, progress=False)
    assert again.name == TINY and again.history()[0]["loss"] == run.history()[0]["loss"]
    assert {k: v for k, v in again.config.items() if k != "data_path"} == \
        {k: v for k, v in run.config.items() if k != "data_path"}


def test_kseg_fit_config_with_an_option_over_it(api_run, tmp_path):
    """The CLI passes only the options given, so the file's settings stand but --epochs."""
    run, _ = api_run
    argv = ["fit", "--config", str(run.config_path), "--runs", str(tmp_path), "--epochs", "2"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    again = kseg.load_run(tmp_path / TINY)
    assert {k for k, v in run.config.items() if again.config[k] != v} - {"data_path"} == {"epochs"}
    assert [r["epoch"] for r in again.history()] == [1, 2]
    assert again.history()[0]["loss"] == run.history()[0]["loss"]


def test_precedence_defaults_recipe_file_options(tmp_path):
    cfg, explicit = resolve(TINY)
    assert cfg.epochs == 20 and cfg.recipe == "study" and explicit == set()
    cfg, explicit = resolve(TINY, recipe="camvid")
    assert (cfg.patch, cfg.grid, cfg.loss, cfg.schedule) == (256, None, "ce+lovasz", "poly")
    assert "patch" in explicit and cfg.recipe == "camvid"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"patch": 64, "loss": "dice"}))
    cfg, _ = resolve(TINY, recipe="camvid", config=path, loss="focal")
    assert (cfg.patch, cfg.loss, cfg.schedule) == (64, "focal", "poly")  # file over recipe, option over file


def test_study_recipe_is_the_defaults():
    assert load_recipe("study") == {"recipe": "study"}
    assert {"study", "camvid"} <= set(recipe_names())
    for name in recipe_names():  # every shipped recipe is valid
        resolve(TINY, recipe=name)


@pytest.mark.parametrize("content, fragment", [
    ({"epochz": 3}, "unknown key 'epochz'"),
    ({"loss": "ce+wrong"}, "wrong"),
    ({"grid": "4by4"}, "--grid"),
    ({"augment": {"spin": 3}}, "spin"),
    ([1, 2], "JSON object"),
    ({"epochs": "abc"}, "bad.json: epochs must be a whole number. Received: 'abc'"),
    ({"epochs": 1.5}, "epochs must be a whole number"),
    ({"epochs": True}, "epochs must be a whole number"),  # a bool is no count
    ({"batch_size": None}, "batch_size must be a whole number"),
    ({"lr": "fast"}, "lr must be a finite number"),
    ({"photometric": "no"}, "photometric must be true or false"),  # not a truthy string
    ({"augment": "maybe"}, "augment must be true or false or an object"),
    ({"model_kwargs": 5}, "model_kwargs must be an object"),
])
def test_bad_config_files_name_the_key(tmp_path, data_dir, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    result = CliRunner().invoke(main, ["fit", TINY, "--config", str(path), "--runs", str(tmp_path)])
    assert result.exit_code == 1 and fragment in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(KsegError, match="Unknown --recipe 'nope'"):
        resolve(TINY, recipe="nope")


def one_epoch_args(data_dir, runs):
    return ["fit", TINY, "--data", str(data_dir), "--runs", str(runs), "--patch", "32", "--epochs", "1"]


def test_a_refused_start_leaves_no_run_directory(data_dir, tmp_path):
    """An error found once the run is locked (the monitor needs the model's metrics)
    removes the directory it made; an existing run's directory is kept."""
    args = one_epoch_args(data_dir, tmp_path)
    result = CliRunner().invoke(main, args + ["--monitor", "foo"])
    assert result.exit_code == 1 and "Unknown --monitor 'foo'" in result.output
    assert not (tmp_path / TINY).exists()
    (tmp_path / TINY).mkdir()
    (tmp_path / TINY / "notes.txt").write_text("mine")
    assert CliRunner().invoke(main, args + ["--monitor", "foo"]).exit_code == 1
    assert (tmp_path / TINY / "notes.txt").read_text() == "mine"


def test_a_second_trainer_of_a_run_is_refused_while_the_first_holds_it(data_dir, tmp_path):
    run = RunDir(tmp_path / TINY)
    args = one_epoch_args(data_dir, tmp_path)
    with session.lock(run):  # flock: a second open of the file conflicts, even in one process
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "Another kseg fit is training" in result.output
        assert run.path.is_dir()  # the refused start did not make it, so does not remove it
    assert not run.path.exists()  # the holder wrote nothing but the lock


def test_settings_of_the_wrong_type_are_refused_from_python_too():
    with pytest.raises(KsegError, match="seed must be a whole number. Received: 'x'"):
        resolve(TINY, seed="x")
    cfg, _ = resolve(TINY, seed=np.int64(3), lr=1, grid=[2, 2])  # numpy ints, ints as rates, lists
    assert (cfg.seed, cfg.lr, cfg.grid) == (3, 1, (2, 2))


def test_fit_options_come_from_fitconfig():
    """Each option's default in --help is FitConfig's own; no second table of defaults."""
    text = CliRunner().invoke(main, ["fit", "--help"], terminal_width=200).output
    squashed = " ".join(text.split())
    for field in fields():
        assert field.metadata["flag"] in text, field.name
    assert "Epochs to train. [default: 20]" in squashed
    assert "[default: 64]" in squashed and "[default: 4x4]" in squashed
    defaults = {f.name: f.default for f in dataclasses.fields(FitConfig)}
    assert defaults["epochs"] == 20 and defaults["augment"] is True  # the study augmented


def test_an_option_left_out_is_not_explicit(data_dir, tmp_path):
    """A run continued without --seed keeps its seed; naming another seed is refused."""
    args = ["fit", TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--patch", "32", "--grid", "2x2",
            "--batch-size", "2", "--epochs", "1", "--seed", "3"]
    assert CliRunner().invoke(main, args).exit_code == 0
    extend = CliRunner().invoke(main, args[:-4] + ["--epochs", "2"])
    assert extend.exit_code == 0, extend.output
    assert kseg.load_run(tmp_path / TINY).config["seed"] == 3
    refused = CliRunner().invoke(main, args[:-4] + ["--epochs", "3", "--seed", "4"])
    assert refused.exit_code == 1 and "seed=3" in refused.output


def _kseg(*args, env=None):
    import os

    full = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KSEG_VERBOSE")}
    return subprocess.run([sys.executable, "-m", "kseg", *args], capture_output=True, text=True,
                          env={**full, **(env or {})}, timeout=300)


def test_quiet_by_default_and_verbose_on_request():
    # Counting parameters builds the network, so TensorFlow is imported.
    quiet = _kseg("models", "unet")
    assert quiet.returncode == 0 and "unet" in quiet.stdout
    for noise in ("absl::InitializeLog", "oneDNN", "cuInit", "cuda drivers"):
        assert noise not in quiet.stderr, quiet.stderr
    loud = _kseg("--verbose", "models", "unet")
    assert loud.returncode == 0 and "unet" in loud.stdout
    assert "absl::InitializeLog" in loud.stderr or "oneDNN" in loud.stderr  # TensorFlow's own lines


@pytest.mark.parametrize("backend, jax_loaded", [("tensorflow", False), ("jax", True)])
def test_jax_stays_out_of_other_backends_imports(backend, jax_loaded):
    # TensorFlow and Keras import jax eagerly where it is installed (133 MB); the kseg
    # command hides it while they import, unless it is the backend, and `import jax` still
    # works afterwards.
    pytest.importorskip("jax")
    code = ("import sys, kseg.quiet; kseg.quiet.install(); import keras, tensorflow; "
            "loaded = 'jax' in sys.modules; "
            "import jax.numpy as jnp; print(keras.backend.backend(), loaded, float(jnp.ones(3).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KERAS_BACKEND": backend})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [backend, str(jax_loaded), "3.0"]


@pytest.mark.parametrize("flags, gpus_found, expected", [
    (["avx2", "avx512f", "avx512_bf16"], [], "mixed_bfloat16"),
    (["avx2", "amx_bf16"], [], "mixed_bfloat16"),
    (["avx2", "fma"], [], "float32"),
    (["avx512_bf16"], [("NVIDIA H100", (9, 0))], "mixed_bfloat16"),
    (["avx512_bf16"], [("Tesla T4", (7, 5))], "float32"),  # the GPU trains, not the CPU
])
def test_precision_auto_picks_native_bfloat16(flags, gpus_found, expected):
    from kseg.training.hardware import pick_jit, pick_precision

    assert pick_precision("auto", flags, gpus_found)[0] == expected
    assert pick_precision("float32", flags, gpus_found) == ("float32", "asked for")
    float16, why = pick_precision("mixed_float16", flags, gpus_found)
    assert float16 == "mixed_float16"
    assert ("no GPU" in why) is not gpus_found  # a warning where only a CPU would run it
    assert pick_jit(None, gpus_found)[0] is bool(gpus_found)  # XLA on GPUs only
    assert pick_jit(None, [], "jax")[0] is None  # JAX always compiles


def test_precision_auto_needs_onednn_for_bfloat16_on_a_cpu():
    """TensorFlow without oneDNN (TF_ENABLE_ONEDNN_OPTS=0) has no fast bfloat16 kernels,
    even on a CPU with bfloat16 units: auto trains in float32 there and says why."""
    from kseg.training.hardware import pick_precision

    flags = ["avx2", "avx512_bf16"]
    precision, why = pick_precision("auto", flags, [], onednn=False)
    assert precision == "float32" and "oneDNN" in why
    assert pick_precision("auto", flags, [], onednn=None)[0] == "mixed_bfloat16"  # unknown: by the CPU
    assert pick_precision("mixed_bfloat16", flags, [], onednn=False)[0] == "mixed_bfloat16"  # asked for


def test_jit_auto_stays_off_on_cpus_and_says_when_jit_would_pay():
    """Run J: without oneDNN (AVX2 CPUs) XLA trains U-Net faster, so the reason names
    --jit there; with oneDNN it names oneDNN; a GPU turns XLA on whatever oneDNN says."""
    from kseg.training.hardware import pick_jit

    without, with_onednn = pick_jit(None, [], onednn=False), pick_jit(None, [], onednn=True)
    assert without[0] is False and "--jit" in without[1] and "U-Net" in without[1]
    assert with_onednn[0] is False and "--jit" not in with_onednn[1] and "oneDNN" in with_onednn[1]
    assert pick_jit(None, [("NVIDIA H100", (9, 0))], onednn=False)[0] is True
    assert pick_jit(True, [], onednn=True) == (True, "asked for")


def test_the_choice_is_printed_and_recorded(api_run):
    from kseg.training.environment import cpu_info, onednn
    from kseg.training.hardware import pick_precision

    run, _ = api_run
    chosen = run.env["chosen"]
    assert run.config["precision"] == "auto"
    assert chosen["precision"] == pick_precision("auto", cpu_info()["flags"], [], onednn())[0]
    assert chosen["jit"] is False and "CPU" in chosen["jit_reason"]
    assert run.env["onednn"] is onednn() and isinstance(onednn(), bool)  # TensorFlow: known
    assert ("--jit" in chosen["jit_reason"]) is (not onednn())
