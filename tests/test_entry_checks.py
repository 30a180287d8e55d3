"""Every value a user can give is checked where it enters, before any folder is made.

Through the CLI: nested augment dicts in --config, --grid larger than the frames,
--scale with an infinite end, --warmup inf, a builder argument the network refuses, a
damaged --encoder-weights file, a bad --init-from: one line, exit 1, no run folder.
Through the Python API: splits given as text, grey and 4-channel arrays, callbacks that
are not callbacks, a --name outside the runs folder. Also: a full disk's advice is a
command that works, and train/val listing the same frames is a warning.
"""

import errno
import json
import os
import shutil
import struct
from pathlib import Path

import kseg_tiny
import numpy as np
import pytest
from oneline import cli, error_line, snapshot

import kseg
from kseg import atomic
from kseg.errors import KsegError

TINY = kseg_tiny.NAME
FIT_ARGS = ("--epochs", "1", "--patch", "32", "--grid", "2x2", "--batch-size", "2")


def refused_fit(data_dir, tmp_path, *args, arch=TINY, named=None):
    """`kseg fit` refused in one line naming `named`, leaving no runs folder behind."""
    runs = tmp_path / "runs"
    common = FIT_ARGS[:-4] + ("--batch-size", "2") if "--crops" in args else FIT_ARGS  # crops: no grid
    result = cli("fit", arch, "--data", data_dir, "--runs", runs, *common, *args)
    line = error_line(result, named if named is not None else "")
    assert not runs.exists(), sorted(p.name for p in runs.rglob("*"))
    return line


@pytest.mark.parametrize("augment, words", [
    ({"rotation": "abc"}, "augment: rotation must be a finite number"),
    ({"rotation": {"a": [1, 2]}}, "augment: rotation must be a finite number"),
    ({"rotation": -1e9, "zoom": 5}, "augment: rotation must be in [0, 180]"),
    ({"zoom": 5}, "augment: zoom must be in [0, 0.99]"),
    ({"hflip": "yes"}, "augment: hflip must be true or false"),
    ({"spin": 3}, "augment: unknown key 'spin'"),
])
def test_nested_augment_settings_are_checked(data_dir, tmp_path, augment, words):
    config = tmp_path / "fit.json"
    config.write_text(json.dumps({"augment": augment}))
    assert words in refused_fit(data_dir, tmp_path, "--config", config)


@pytest.mark.parametrize("args, words", [
    (("--grid", "100x100"), "train_0000.png is only 64x64 pixels"),
    (("--crops", "--scale", "1:inf"), "--scale needs 0 < low <= high, both finite"),
    (("--warmup", "inf"), "warmup_epochs must be a finite number"),
    (("--lr", "nan"), "lr must be a finite number"),
    (("--seed", "-1"), "--seed must be in [0, 4294967295]"),
    (("--epochs", "1000000000"), "--epochs must be in [1, 1000000]"),
    (("--workers", "1000000"), "--workers must be auto or a whole number from 0 to 64"),
    (("--frame-cache", "inf"), "frame_cache_mb must be a finite number"),
])
def test_numbers_and_sizes_are_checked_before_a_run_exists(data_dir, tmp_path, args, words):
    assert words in refused_fit(data_dir, tmp_path, *args)


def test_a_builder_argument_the_network_refuses_leaves_nothing(data_dir, tmp_path):
    line = refused_fit(data_dir, tmp_path, "--model-arg", "decoder_filters=[-1,2,3,4,5]", arch="unet")
    assert line.startswith("Error: unet: decoder_filters must be a list of 5 positive ints")
    # A plugin's builder that checks nothing: Keras' own refusal, as the user's value.
    line = refused_fit(data_dir, tmp_path, "--model-arg", "width=-1")
    assert "tiny_test rejected --model-arg {'width': -1}: Invalid value for argument `filters`" in line


def safetensors(path, header):
    data = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data + b"\0" * 16)
    return path


@pytest.mark.parametrize("header, words", [
    ({"conv1.weight": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}, "malformed header"),
    (["conv1.weight"], "its header is a JSON list"),
    ({"conv1.weight": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, "malformed header"),
])
def test_a_damaged_encoder_weights_file_is_one_line_and_leaves_nothing(data_dir, tmp_path, header, words):
    weights = safetensors(tmp_path / "resnet34.safetensors", header)
    assert words in refused_fit(data_dir, tmp_path, "--encoder-weights", weights, arch="unet", named=weights)


def test_a_bad_init_from_leaves_nothing(data_dir, tmp_path):
    source = tmp_path / "weights.keras"
    source.write_bytes(b"PK\x03\x04 not really a zip")
    refused_fit(data_dir, tmp_path, "--init-from", source, named=source)


def test_a_full_disk_says_the_same_command_again_and_that_works(data_dir, tmp_path, monkeypatch):
    """Only epoch 2's checkpoint does not fit (state.json, a small file, still does): the
    run is left interrupted, and the same command, without --resume, continues it."""
    real_fsync = atomic._fsync

    def fsync(path):
        if ".e0002." in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(path)

    monkeypatch.setattr(atomic, "_fsync", fsync)
    argv = ("fit", TINY, "--data", data_dir, "--runs", tmp_path, *FIT_ARGS, "--epochs", "2")
    line = error_line(cli(*argv), ".e0002.keras")
    assert "run the same command again" in line
    state = json.loads((tmp_path / TINY / "state.json").read_text())
    assert (state["status"], state["epoch"]) == ("interrupted", 1)
    monkeypatch.setattr(atomic, "_fsync", real_fsync)
    again = cli(*argv)
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / TINY / "state.json").read_text())["epoch"] == 2


def test_train_and_val_listing_the_same_frames_warn(data_dir, tmp_path):
    root = shutil.copytree(data_dir, tmp_path / "leaky")
    first_train = (root / "train.txt").read_text().splitlines()[0]
    (root / "val.txt").write_text((root / "val.txt").read_text() + first_train + "\n")
    check = cli("data", "check", root)
    assert check.exit_code == 0, check.output
    warning = "Warning: train and val share 1 frame (e.g. "
    assert warning in check.output and "train_0000.png" in check.output
    fit = cli("fit", TINY, "--data", root, "--runs", tmp_path / "runs", *FIT_ARGS)
    assert fit.exit_code == 0 and warning in fit.output, fit.output


# --- the Python API ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return kseg.fit(TINY, data_dir, runs=runs, epochs=1, patch=32, grid="2x2", batch_size=2, progress=False)


def test_evaluate_takes_one_split_as_text(run, data_dir, tmp_path):
    copy = kseg.load_run(shutil.copytree(run.path, tmp_path / "copy"))
    result = kseg.evaluate(copy, splits="val", data=data_dir)
    assert list(result["splits"]) == ["val"] and result["skipped"] == {}
    with pytest.raises(KsegError, match="Unknown split 'v'"):
        kseg.evaluate(copy, splits=["v", "a", "l"])
    with pytest.raises(KsegError, match="splits must be a list"):
        kseg.evaluate(copy, splits=3)


def test_predict_checks_the_channels_of_an_array(run):
    rgb = np.zeros((32, 48, 3), np.uint8)
    (labels,) = kseg.predict(run, rgb)  # one array, not a list of its rows
    assert labels.shape == (32, 48)
    with pytest.raises(KsegError, match=r"images\[0\]: shape \(32, 48\) \(a grey image\) does not fit"):
        kseg.predict(run, [rgb[..., 0]])
    with pytest.raises(KsegError, match=r"shape \(32, 48, 4\) does not fit the run, which takes \(H, W, 3\)"):
        kseg.predict(run, [np.zeros((32, 48, 4), np.uint8)])
    with pytest.raises(KsegError, match="NaN or infinite"):
        kseg.predict(run, [np.full((32, 48, 3), np.nan, np.float32)])


@pytest.mark.parametrize("kwargs, words", [
    ({"callbacks": "abc"}, "callbacks must be a list of keras.callbacks.Callback"),
    ({"callbacks": [print]}, "is not one"),
    ({"name": "../elsewhere"}, "--name must be a folder name"),
    ({"max_steps": 0}, "max_steps must be a whole number >= 1"),
    ({"config": {"epochs": 1}}, "config must be a name or a JSON file's path"),
])
def test_fit_refuses_bad_arguments_before_any_folder(data_dir, tmp_path, kwargs, words):
    with pytest.raises(KsegError, match=words.replace(".", r"\.")):
        kseg.fit(TINY, data_dir, runs=tmp_path / "runs", epochs=1, patch=32, grid="2x2", **kwargs)
    assert not (tmp_path / "runs").exists() and sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call, words", [
    (lambda run: kseg.evaluate(run, data=123), "data must be a path"),
    (lambda run: kseg.evaluate(run, patches="yes"), "patches must be True or False"),
    (lambda run: kseg.evaluate(run, log="print"), "log must be a function"),
    (lambda run: kseg.evaluate(run, window="abc"), "--window must be a positive number"),
    (lambda run: kseg.evaluate(run, tta=5), "tta must be text"),
    (lambda run: kseg.predict(run, [], out=7), "out must be a path"),
    (lambda run: kseg.predict(run, 42), "predict takes image paths or arrays"),
    (lambda run: kseg.load_run(3.5), "run must be a run's name"),
    (lambda run: kseg.load_run("x", runs=["a"]), "runs must be a path"),
])
def test_the_api_names_a_bad_argument(run, call, words):
    before = snapshot(run.path)
    with pytest.raises(KsegError, match=words):
        call(run)
    assert snapshot(run.path) == before


@pytest.mark.parametrize("args, words", [
    (("--size", "100000x100000"), "--size must be from 32x32 to 8192x8192"),
    (("--train", "1000000000"), "--train must be a whole number from 0 to 100000"),
])
def test_data_synth_checks_its_sizes_before_writing(tmp_path, args, words):
    assert words in error_line(cli("data", "synth", tmp_path / "s", *args), "")
    assert not (tmp_path / "s").exists()


def test_a_grey_array_is_taken_by_a_one_channel_run():
    from kseg.inference.outputs import check_input_array

    assert check_input_array(np.zeros((4, 5), np.uint8), channels=1).shape == (4, 5, 1)
    with pytest.raises(KsegError, match="a grey image"):
        check_input_array(np.zeros((4, 5), np.uint8), channels=3)
