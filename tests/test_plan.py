"""One plan per fit: `plan_fit` resolves a fit once into a frozen FitPlan, `kseg fit --dry-run`
prints it and writes nothing, and a real fit writes what the plan says."""

import dataclasses
import json

import numpy as np
import pytest
from oneline import FIT_ARGS, TINY, cli, error_line, fit_tiny, snapshot
from PIL import Image

import kseg
from kseg.errors import KsegError
from kseg.training.inputs import first_batches, training_datasets

SETTINGS = dict(patch=32, grid=(2, 2), batch_size=2)  # FIT_ARGS, for the API


def dry_run(data_dir, runs, **settings):
    return kseg.fit(TINY, data_dir, runs=runs, dry_run=True, **{**SETTINGS, **settings})


def test_the_plan_is_frozen_and_dry_run_makes_no_run_folder(data_dir, tmp_path):
    plan = dry_run(data_dir, tmp_path / "runs", epochs=2)
    assert not (tmp_path / "runs").exists()
    assert plan.fresh and plan.first_epoch == 0 and plan.config.epochs == 2
    for target, field in ((plan, "config"), (plan.config, "epochs"), (plan.hardware, "workers"),
                          (plan.epoch, "batches")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(target, field, None)
    with pytest.raises(TypeError):
        plan.fingerprint["files"] = 0  # a read-only view


def write_colour_set(root, size=16):
    """A generic images/ + masks/ set of RGB colour masks: a fit infers its palette and
    writes it to root/kseg.json."""
    for split, count in (("train", 2), ("val", 1)):
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True)
        for i in range(count):
            mask = np.zeros((size, size, 3), np.uint8)
            mask[: 4 + 4 * i, :, 0] = 200  # red stripes of different heights, black below
            Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(root / "images" / split / f"{i}.png")
            Image.fromarray(mask).save(root / "masks" / split / f"{i}.png")
    return root


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    data = write_colour_set(tmp_path / "data")
    before = snapshot(data)
    args = ("--data", data, "--runs", tmp_path / "runs", "--patch", "8", "--grid", "2x2", "--batch-size", "2")
    result = cli("fit", TINY, *args, "--epochs", "3", "--dry-run")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "runs").exists() and snapshot(data) == before  # no kseg.json either
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines if str(tmp_path) not in line), result.output  # paths whole
    text = " ".join(" ".join(lines).split())
    assert f"run a new run, epochs 1 to 3 folder {tmp_path / 'runs' / TINY} " in text
    assert "2 patches a batch, 4 steps per epoch: 8 patches of 2 train frames" in text
    assert "validation 2 steps: 4 patches of 1 val frames" in text
    for label in ("precision", "XLA", "workers", "devices one device", "loss ce", "optimizer Adam, lr 0.001"):
        assert label in text, label
    fit = cli("fit", TINY, *args, "--epochs", "1")  # the same without --dry-run writes the palette
    assert fit.exit_code == 0 and "wrote the inferred palette" in fit.output, fit.output
    assert (data / "kseg.json").is_file() and (tmp_path / "runs" / TINY / "state.json").is_file()


@pytest.mark.parametrize("option, named", [
    (("--monitor", "foo"), "Unknown --monitor 'foo'"),
    (("--patch", "30"), "--patch 30 is not a multiple of tiny_test's stride 4"),
    (("--grid", "80x2"), "--grid 80x2"),
    (("--task", "binary"), "--task binary needs a dataset of two classes"),
])
def test_bad_settings_fail_the_dry_run_with_the_fits_error(data_dir, tmp_path, option, named):
    args = ("fit", TINY, "--data", data_dir, "--runs", tmp_path / "runs", *FIT_ARGS, "--epochs", "1", *option)
    planned = error_line(cli(*args, "--dry-run"), named)
    assert not (tmp_path / "runs").exists()
    assert error_line(cli(*args), named) == planned


def test_a_continued_run_is_planned_from_its_saved_settings(data_dir, tmp_path):
    run_dir = fit_tiny(data_dir, tmp_path / "runs", epochs=1)
    run = kseg.load_run(run_dir)
    before = snapshot(run_dir)
    plan = dry_run(data_dir, tmp_path / "runs", epochs=3, lr=0.01)
    assert snapshot(run_dir) == before
    assert plan.saved is not None and not plan.fresh and plan.first_epoch == 1
    assert dict(plan.saved.config) == run.config and plan.saved.state.epoch == run.state.epoch == 1
    assert [r["epoch"] for r in plan.saved.history] == [1]
    # --lr on a continued run: a change recorded from epoch 2; config.json keeps the first rate
    assert plan.saved.state.lr_changes == [{"epoch": 2, "lr": 0.01}] and run.state.lr_changes == []
    assert plan.config_json() == {**run.config, "epochs": 3}
    printed = cli("fit", TINY, "--data", data_dir, "--runs", tmp_path / "runs", *FIT_ARGS, "--epochs", "3",
                  "--dry-run")
    assert "extends the run after epoch 1 (was finished), epochs 2 to 3" in " ".join(printed.output.split())


def test_a_commit_killed_before_its_rename_is_planned_without_touching_it(data_dir, tmp_path):
    """state.json committed epoch 1 but last.keras still has its pending name: the dry run
    plans the continuation (a real start would rename it first) and renames nothing."""
    run_dir = fit_tiny(data_dir, tmp_path / "runs", epochs=1)
    (run_dir / "last.keras").rename(run_dir / ".last.e0001.keras")
    plan = dry_run(data_dir, tmp_path / "runs", epochs=2)
    assert plan.first_epoch == 1 and not (run_dir / "last.keras").exists()
    assert (run_dir / ".last.e0001.keras").is_file()


def test_an_option_that_differs_from_the_saved_run_is_refused_at_planning(data_dir, tmp_path):
    run_dir = fit_tiny(data_dir, tmp_path / "runs", epochs=1)
    before = snapshot(run_dir)
    with pytest.raises(KsegError, match="was started with seed=0, not 4"):
        dry_run(data_dir, tmp_path / "runs", epochs=2, seed=4)
    with pytest.raises(KsegError, match="already finished 1 epochs"):
        dry_run(data_dir, tmp_path / "runs", epochs=1)
    assert snapshot(run_dir) == before


def test_a_fit_writes_the_config_and_choice_its_plan_holds(data_dir, tmp_path):
    runs = tmp_path / "runs"
    plan = dry_run(data_dir, runs, epochs=1, seed=2)
    run = kseg.fit(TINY, data_dir, runs=runs, progress=False, epochs=1, seed=2, **SETTINGS)
    assert run.config == json.loads(json.dumps(plan.config_json()))
    assert run.env["chosen"] == dataclasses.asdict(plan.hardware)
    assert run.env["data_fingerprint"] == dict(plan.fingerprint)
    assert len(run.history()) == 1
    extended = dry_run(data_dir, runs, epochs=2)  # a continued run: its config.json, epochs grown
    kseg.fit(TINY, data_dir, runs=runs, progress=False, epochs=2, **SETTINGS)
    assert run.config == json.loads(json.dumps(extended.config_json())) and run.config["epochs"] == 2
    assert run.state.sessions == 2 and [r["epoch"] for r in run.history()] == [1, 2]


@pytest.mark.parametrize("settings", [
    {},
    {"grid": None, "crops_per_image": 3},
    {"split": "80/20", "batch_size": 3},
    {"max_steps": 1},
])
def test_the_planned_batches_are_the_ones_trained(data_dir, tmp_path, settings):
    max_steps = settings.pop("max_steps", None)
    plan = kseg.fit(TINY, data_dir, runs=tmp_path, dry_run=True, max_steps=max_steps,
                    **{**SETTINGS, **settings})
    train, val = training_datasets(plan.config, plan.dataset, 0)
    patches = (train.num_patches, val.num_patches)
    train, val = first_batches(train, val, max_steps)
    assert plan.epoch.patches == patches and plan.epoch.batches == (len(train), len(val))


def test_a_dataset_without_val_is_refused_at_planning_unless_80_20(tmp_path):
    from kseg.data.synth import write_synthetic

    data = tmp_path / "no-val"
    write_synthetic(data, n_train=2, n_val=0, n_test=0, size=(32, 32))
    args = ("fit", TINY, "--data", data, "--runs", tmp_path / "runs", *FIT_ARGS, "--epochs", "1")
    line = error_line(cli(*args, "--dry-run"), data)
    assert "no val split" in line and "--split 80/20" in line and not (tmp_path / "runs").exists()
    assert error_line(cli(*args), data) == line  # the fit itself refuses it the same way
    assert dry_run(data, tmp_path / "runs", split="80/20").epoch.frames == (2, None)
