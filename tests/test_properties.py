"""Property-based tests (hypothesis): whatever a user types or a file holds, kseg answers
with success or one KsegError line, never an internal error, and changes no file.

Covered: FitConfig's settings as keyword arguments and through a --config file, a
dataset's kseg.json, the files a run reads back (state.json, config.json), the public
API's argument checks (splits, inference modes, prediction arrays), and `kseg fit`
end to end on random config files (slow). Each test counts the examples it ran and
prints the count (`pytest -s`); the counts are asserted to be non-zero.
"""

import dataclasses
import json
import math

import kseg_tiny
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oneline import cli, snapshot

from kseg.errors import KsegError
from kseg.training.config import FitConfig

TINY = kseg_tiny.NAME
# database=None: no .hypothesis/ folder in the checkout; a failure prints its example.
QUICK = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, and a few Python ones a notebook could pass (tuples, huge ints, nan).
LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-3, 300)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
          | st.sampled_from(["4x4", "0.5:2", "1:inf", "100x100", "auto", "ce+dice", "80/20", "val", "cosine",
                             "float32", "abc", "-1", "", "synthetic", "nan", "inf"]))
JSON = st.recursive(LEAVES, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.text(max_size=8), kids, max_size=4), max_leaves=8)
AUGMENT = st.dictionaries(st.sampled_from(["rotation", "width_shift", "height_shift", "zoom", "hflip", "x"]),
                          JSON, max_size=4)
FIELDS = [f.name for f in dataclasses.fields(FitConfig) if f.name not in ("arch", "data", "init_from",
                                                                        "encoder_weights")]
SETTINGS = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5).flatmap(
    lambda d: st.just(d) if "augment" not in d else AUGMENT.map(lambda a: {**d, "augment": a}))


class Count:
    """Examples run per test, printed at the end."""

    def __init__(self, name):
        self.name, self.n = name, 0

    def __call__(self):
        self.n += 1

    def report(self):
        print(f"\n{self.name}: {self.n} hypothesis examples")
        assert self.n > 0


def one_line_or_success(call):
    """Run `call()`; a KsegError must be one line. Returns the error or None."""
    try:
        call()
    except KsegError as exc:
        assert "\n" not in exc.format_message() and exc.format_message().strip()
        return exc
    return None


def test_fit_settings_are_accepted_or_refused_in_one_line():
    from kseg.training.recipes import resolve

    count = Count("FitConfig settings")

    @QUICK
    @given(SETTINGS)
    def check(values):
        count()
        one_line_or_success(lambda: resolve(TINY, **values))

    check()
    count.report()


def test_a_config_file_is_accepted_or_refused_in_one_line(tmp_path):
    from kseg.training.recipes import resolve

    count = Count("--config files")
    path = tmp_path / "fit.json"

    @settings(max_examples=150, deadline=None, database=None)
    @given(SETTINGS | JSON)
    def check(content):
        count()
        path.write_text(json.dumps(content))
        error = one_line_or_success(lambda: resolve(TINY, config=path))
        if error is not None and isinstance(content, dict) and set(content) <= set(FIELDS):
            assert str(path) in str(error) or "augment" in str(error) or "--" in str(error)

    check()
    count.report()


SPECS = st.fixed_dictionaries({}, optional={
    "name": JSON, "classes": st.lists(st.text(max_size=5), max_size=4) | JSON,
    "colors": st.lists(st.lists(st.integers(-1, 256), min_size=2, max_size=4), max_size=4) | JSON,
    "void": st.integers(-1, 256) | JSON, "void_color": JSON, "color_map": JSON, "label_map": JSON,
})


def test_a_kseg_json_is_accepted_or_refused_in_one_line(tmp_path):
    from kseg.data.dataset_spec import load_spec

    count = Count("kseg.json files")
    path = tmp_path / "kseg.json"

    @QUICK
    @given(SPECS | JSON)
    def check(content):
        count()
        path.write_text(json.dumps(content))
        error = one_line_or_success(lambda: load_spec(path))
        assert error is None or str(path) in str(error)

    check()
    count.report()


STATE_FIELDS = ["status", "epoch", "epochs", "best_value", "best_epoch", "monitor", "lr", "lr_changes",
                "plateau", "schedule", "train_seconds", "sessions", "message", "updated"]
CONFIG_KEYS = ["arch", "stride", "patch", "grid", "channels", "spec", "data", "data_path", "epochs"]


def test_files_read_back_are_accepted_or_refused_naming_the_file(tmp_path):
    from kseg.runs import RunDir

    count = Count("state.json / config.json read back")
    run = RunDir(tmp_path)

    @QUICK
    @given(st.dictionaries(st.sampled_from(STATE_FIELDS), JSON, max_size=5) | JSON,
           st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON, max_size=5) | JSON)
    def check(state, config):
        count()
        run.state_path.write_text(json.dumps(state))
        run.config_path.write_text(json.dumps(config))
        readers = [lambda: run.state, lambda: run.config, lambda: run.stride, run.grid, lambda: run.spec]
        for read, path in zip(readers, [run.state_path] + [run.config_path] * 4, strict=True):
            error = one_line_or_success(read)
            assert error is None or str(path) in str(error)

    check()
    count.report()


NESTED_STATE = st.fixed_dictionaries({"status": st.sampled_from(["running", "finished"]),
                                     "epoch": st.integers(0, 3)}, optional={
    "lr_changes": st.lists(st.dictionaries(st.sampled_from(["epoch", "lr", "x"]), JSON, max_size=3),
                           max_size=2) | JSON,
    "plateau": st.dictionaries(st.sampled_from(["wait", "cooldown_counter", "best"]), JSON,
                               max_size=3) | JSON,
    "lr": JSON})


def test_the_nested_parts_of_state_json_are_checked():
    from kseg.runs import RunState

    count = Count("state.json lr_changes / plateau")

    @QUICK
    @given(NESTED_STATE)
    def check(state):
        count()
        error = one_line_or_success(lambda: RunState.from_dict(state, "runs/x/state.json"))
        assert error is None or "runs/x/state.json" in str(error)

    check()
    count.report()


SPLIT_KEYS = ["loss", "accuracy", "f1", "dice", "soft_dice", "specificity", "sensitivity", "miou",
              "iou_per_class", "frames", "eval_seconds", "predict_ms_per_frame"]
SPLIT = st.fixed_dictionaries({k: st.floats(0, 1) for k in SPLIT_KEYS[:8]} | {
    "iou_per_class": st.lists(st.floats(0, 1) | st.none(), max_size=3), "frames": st.integers(1, 5),
    "eval_seconds": st.floats(0, 9), "predict_ms_per_frame": st.floats(0, 9)}).flatmap(
    lambda d: st.dictionaries(st.sampled_from(SPLIT_KEYS), JSON, max_size=2).map(lambda bad: {**d, **bad}))
EVAL = st.fixed_dictionaries({"run": st.just("r"), "mode": st.just("full-frame"), "data": st.just("d"),
                              "classes": st.just(["a", "b"]), "train_seconds": st.just(1.0),
                              "skipped": st.just({}), "grid": st.none(), "patch": st.none(),
                              "arch": st.just(TINY), "splits": st.dictionaries(
                                  st.sampled_from(["val", "test"]), SPLIT, max_size=2)}).flatmap(
    lambda d: st.dictionaries(st.sampled_from(list(d)), JSON, max_size=1).map(lambda bad: {**d, **bad}))


def test_eval_json_read_back_is_refused_in_one_line_or_tabulated(tmp_path):
    """A damaged eval.json is one line naming it; one that passes makes both tables and eval.md."""
    from kseg.inference.scoring import read_eval
    from kseg.reporting import study_tables
    from kseg.runs import RunDir

    count = Count("eval.json read back and tabulated")
    run = RunDir(tmp_path)

    @QUICK
    @given(EVAL | JSON)
    def check(content):
        count()
        (tmp_path / "eval.json").write_text(json.dumps(content))
        error = one_line_or_success(lambda: read_eval(run))
        if error is None:
            result = read_eval(run)
            study_tables.table2([result])
            for split in study_tables.result_splits([result]):
                study_tables.table1([result], split)
                study_tables.per_class_table([result], split)
        else:
            assert "eval.json" in str(error)

    check()
    count.report()


def test_api_splits_and_inference_modes_are_checked():
    from kseg.api import check_splits
    from kseg.inference.mode import make_mode

    count = Count("splits and inference modes")

    @QUICK
    @given(JSON | st.tuples(JSON, JSON), JSON, JSON, JSON)
    def check(splits, window, overlap, tta):
        count()
        one_line_or_success(lambda: check_splits(splits))
        one_line_or_success(lambda: make_mode(window=window, overlap=overlap, tta=tta))

    check()
    count.report()


def test_fit_and_api_arguments_are_checked():
    """kseg.fit's own arguments (checked before any folder), kseg.evaluate/predict's paths,
    flags and functions: accepted or refused in one line, whatever their type."""
    from kseg.api import check_arguments as api_arguments
    from kseg.training.arguments import check_callbacks, check_fit_arguments

    count = Count("fit / API arguments")
    values = JSON | st.sampled_from([print, object(), "runs", "a/b", "..", "x"]) | st.lists(JSON, max_size=2)

    @QUICK
    @given(values, values, values, values, values)
    def check(a, b, c, d, e):
        count()
        one_line_or_success(lambda: check_fit_arguments(a, b, c, d, e))
        one_line_or_success(lambda: check_callbacks(a))
        one_line_or_success(lambda: api_arguments(paths={"data": b}, flags={"write": c},
                                                  functions={"log": d}))

    check()
    count.report()


ARRAYS = st.one_of(
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    st.tuples(st.integers(1, 24), st.integers(1, 24), st.integers(0, 5)),
    st.tuples(st.integers(0, 3), st.integers(1, 8), st.integers(1, 8), st.integers(1, 4)),
).flatmap(lambda shape: st.tuples(st.just(shape), st.sampled_from(["uint8", "float32", "bool", "int64"]),
                                  st.sampled_from([0.0, 255.0, math.nan, -1e30])))


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    import kseg

    runs = tmp_path_factory.mktemp("runs")
    return kseg.fit(TINY, data_dir, runs=runs, epochs=1, patch=32, grid="2x2", batch_size=2, progress=False)


def test_predict_takes_any_array_or_refuses_it_in_one_line(run):
    import kseg

    count = Count("kseg.predict arrays")
    model_dir = snapshot(run.path)

    @settings(max_examples=25, deadline=None, database=None)
    @given(ARRAYS)
    def check(case):
        shape, dtype, fill = case
        count()
        with np.errstate(invalid="ignore"):  # nan to an int dtype: any value will do
            array = np.full(shape, fill).astype(dtype)
        one_line_or_success(lambda: kseg.predict(run, array))

    check()
    count.report()
    assert snapshot(run.path) == model_dir


@pytest.mark.slow
def test_kseg_fit_on_random_config_files_changes_nothing_outside_the_run(data_dir, tmp_path):
    """End to end: a run is trained or refused in one line (never exit 70), the data and
    the config file keep their md5, and a refused start leaves no run folder."""
    count = Count("kseg fit --config end to end")
    data_before = snapshot(data_dir)
    config = tmp_path / "fit.json"

    @settings(max_examples=8, deadline=None, database=None)
    @given(st.dictionaries(st.sampled_from(["augment", "lr", "warmup_epochs", "grid", "scale",
                                            "class_uniform", "plateau_factor", "seed"]), JSON, max_size=3))
    def check(values):
        count()
        config.write_text(json.dumps(values))
        written = config.read_bytes()
        runs = tmp_path / f"runs{count.n}"
        result = cli("fit", TINY, "--data", data_dir, "--runs", runs, "--config", config, "--epochs", "1",
                     "--patch", "32", "--batch-size", "2")
        assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
        if result.exit_code == 1:
            assert result.output.strip().splitlines()[-1].startswith("Error:")
            assert not runs.exists()
        assert config.read_bytes() == written

    check()
    count.report()
    assert snapshot(data_dir) == data_before
