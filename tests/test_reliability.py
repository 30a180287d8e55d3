"""Bad input and failing disks end in one line that names the file, never a traceback.

Each case goes through the real CLI (click's CliRunner on `kseg.cli.main`, or
`python -m kseg` in a subprocess) and checks the exit status, that the error is one
line naming the file, and that no traceback is printed. Faults that need root or a
full disk are injected by monkeypatching kseg's atomic writer.
"""

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import kseg_tiny
import pytest
from click.testing import CliRunner
from oneline import cli, error_line

from kseg import atomic, registry
from kseg.cli.main import main
from kseg.errors import InternalError, KsegError, user_error

ROOT = Path(__file__).resolve().parents[1]
TINY = kseg_tiny.NAME
FIT_ARGS = ("--patch", "32", "--grid", "2x2", "--batch-size", "2")




def bomb_png():
    """83 bytes or so: a valid PNG whose header claims 100000 x 100000 pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A run of one epoch, shared by the tests that only read it."""
    runs = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(main, ["fit", TINY, "--data", str(data_dir), "--runs", str(runs),
                                       "--epochs", "1", *FIT_ARGS])
    assert result.exit_code == 0, result.output
    return runs / TINY


def copy_of(run, tmp_path):
    dest = tmp_path / run.name
    shutil.copytree(run, dest)
    return dest


# --- images ------------------------------------------------------------------------


@pytest.fixture
def bomb_data(data_dir, tmp_path):
    root = tmp_path / "bomb"
    shutil.copytree(data_dir, root)
    bomb = root / "train" / "train_0000.png"
    bomb.write_bytes(bomb_png())
    return root, bomb


def test_decompression_bomb_fails_data_check_in_one_line(bomb_data):
    root, bomb = bomb_data
    assert len(bomb.read_bytes()) < 100
    result = cli("data", "check", root)
    line = error_line(result, bomb.relative_to(root))
    assert "huge image" in line
    assert result.output.count("\n") == 1  # nothing but the error


def test_decompression_bomb_fails_fit_in_one_line(bomb_data, tmp_path):
    root, bomb = bomb_data
    result = cli("fit", TINY, "--data", root, "--runs", tmp_path / "runs", "--epochs", "1", *FIT_ARGS)
    assert "huge image" in error_line(result, bomb.relative_to(root))


# --- a failing disk ------------------------------------------------------------------


def test_full_disk_during_fit_loses_nothing_written_before(data_dir, tmp_path, monkeypatch):
    """The disk fills at epoch 2's first write: one line, epoch 1 stays, and the same
    command continues once there is space again."""
    import keras

    real_fsync, full = atomic._fsync, []

    def fsync(path):
        if ".e0002." in Path(path).name:
            full.append(path)
        if full:  # from then on every write fails, state.json's "failed" too
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # write() gives no file name
        real_fsync(path)

    monkeypatch.setattr(atomic, "_fsync", fsync)
    argv = ("fit", TINY, "--data", data_dir, "--runs", tmp_path, "--epochs", "2", *FIT_ARGS)
    result = cli(*argv)
    run = tmp_path / TINY
    line = error_line(result, run / ".last.e0002.keras")
    assert "no space left on device" in line and "run the same command again" in line

    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1
    assert len((run / "history.csv").read_text().strip().splitlines()) == 2  # header + epoch 1
    for name in ("last.keras", "best.keras"):
        assert keras.saving.load_model(run / name, compile=False).name == TINY
    assert [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []

    monkeypatch.setattr(atomic, "_fsync", real_fsync)  # space again
    again = cli(*argv)
    assert again.exit_code == 0, again.output
    rows = (run / "history.csv").read_text().strip().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]


def test_predict_out_under_a_file_is_one_line(trained, data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = cli("predict", trained, data_dir / "test", "--out", blocker / "masks")
    assert "not a folder" in error_line(result, blocker / "masks")


def test_read_only_out_is_one_line(trained, data_dir, tmp_path, monkeypatch):
    """Tests run as root, where chmod does not stop writes: the refusal is injected into
    the temporary files that every writer starts with (atomic.py's and export's)."""
    import tempfile

    def read_only(make):
        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).is_relative_to(tmp_path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return make(*args, dir=dir, **kwargs)

        return refuse

    for name in ("mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, read_only(getattr(tempfile, name)))
    out = tmp_path / "masks"
    assert "read-only" in error_line(cli("predict", trained, data_dir / "test", "--out", out), out)
    target = tmp_path / "export"
    assert "read-only" in error_line(cli("export", trained, "--out", target / "m.keras"), target)


def test_export_out_under_a_file_is_one_line(trained, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    error_line(cli("export", trained, "--out", blocker / "model.keras"), blocker)


# --- damaged checkpoints ---------------------------------------------------------------


@pytest.fixture
def truncated(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    best = run / "best.keras"
    best.write_bytes(best.read_bytes()[:300])
    return run, best


def test_truncated_best_keras_fails_export_in_one_line(truncated):
    run, best = truncated
    line = error_line(cli("export", run), best)
    assert "not a complete .keras file" in line and "File not found" not in line


def test_truncated_best_keras_fails_eval_in_one_line(truncated, data_dir):
    run, best = truncated
    result = cli("eval", run, "--data", data_dir)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    named = [line for line in result.output.splitlines() if str(best) in line]
    assert len(named) == 1 and "not a complete .keras file" in named[0], result.output
    assert "File not found" not in result.output


def test_truncated_last_keras_fails_resume_in_one_line(trained, tmp_path, data_dir):
    run = copy_of(trained, tmp_path)
    (run / "last.keras").write_bytes((run / "last.keras").read_bytes()[:300])
    result = cli("fit", TINY, "--data", data_dir, "--runs", tmp_path, "--epochs", "2", *FIT_ARGS)
    assert "not a complete .keras file" in error_line(result, run / "last.keras")


@pytest.mark.parametrize("content", [b"hello", b"PK\x03\x04 not really a zip"])
def test_init_from_a_file_that_is_not_keras_is_one_line(data_dir, tmp_path, content):
    source = tmp_path / "weights.keras"
    source.write_bytes(content)
    result = cli("fit", TINY, "--data", data_dir, "--runs", tmp_path / "runs", "--epochs", "1",
                 "--init-from", source, *FIT_ARGS)
    line = error_line(result, source)
    assert "File not found" not in line


def test_lambda_checkpoint_refused_by_safe_mode_is_one_line(data_dir, tmp_path):
    import keras

    image = keras.Input((None, None, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0)(image)
    x = keras.layers.Conv2D(12, 1, name="segmentation_output")(x)
    source = tmp_path / "lambda.keras"
    keras.Model(image, x, name=TINY).save(source)
    result = cli("fit", TINY, "--data", data_dir, "--runs", tmp_path / "runs", "--epochs", "1",
                 "--init-from", source, *FIT_ARGS)
    assert "safe mode" in error_line(result, source)


# --- the dataset description -------------------------------------------------------------


BAD_SPECS = {
    "classes-string": ({"classes": "abcdefghijk"}, "'classes' must be a list"),
    "classes-int": ({"classes": 5}, "'classes' must be a list"),
    "classes-lists": ({"classes": [["a"], ["b"]]}, "'classes'[0] must be a non-empty string"),
    "classes-dicts": ({"classes": [{"a": 1}]}, "'classes'[0] must be a non-empty string"),
    "classes-null": ({"classes": ["a", None]}, "'classes'[1] must be a non-empty string"),
    "classes-twice": ({"classes": ["a", "a"]}, "'classes' names 'a' more than once"),
    "classes-empty": ({"classes": []}, "'classes' needs 1 to 255"),
    "classes-missing": ({"name": "x"}, "'classes' is missing"),
    "void-float": ({"classes": ["a", "b"], "void": 11.5}, "'void' must be an int"),
    "void-string": ({"classes": ["a", "b"], "void": "255"}, "'void' must be an int"),
    "void-range": ({"classes": ["a", "b"], "void": 1}, "'void' must be in [2, 255]"),
    "color-2": ({"classes": ["a"], "colors": [[1, 2]]}, "'colors'[0] must be [R, G, B]"),
    "color-4": ({"classes": ["a"], "colors": [[1, 2, 3, 4]]}, "'colors'[0] must be [R, G, B]"),
    "color-300": ({"classes": ["a"], "colors": [[300, 0, 0]]}, "'colors'[0] must be [R, G, B]"),
    "color-name": ({"classes": ["a"], "colors": ["red"]}, "'colors'[0] must be [R, G, B]"),
    "colors-count": ({"classes": ["a", "b"], "colors": [[1, 2, 3]]}, "'colors' has 1 entries for 2"),
    "void-color": ({"classes": ["a"], "void": 255, "void_color": "black"}, "'void_color' must be"),
    "name": ({"classes": ["a"], "name": 5}, "'name' must be a non-empty string"),
    "color-map": ({"classes": ["a"], "color_map": "yes"}, "'color_map' must be true or false"),
    "not-object": (["a", "b"], "a dataset spec is a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_each_bad_spec_field_is_named_in_one_line(data_dir, tmp_path, case):
    spec, expected = BAD_SPECS[case]
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    (root / "kseg.json").write_text(json.dumps(spec))
    result = cli("data", "check", root)
    line = error_line(result, root / "kseg.json")
    assert expected in line, line
    assert result.output.count("\n") == 1


def test_a_wrong_builder_argument_names_the_argument():
    from kseg.models.layers import check_args

    with pytest.raises(KsegError, match=r"unet: decoder_filters must be a list of 5 positive ints\. "
                                         r"Received: decoder_filters='abc' \(str\)"):
        check_args("unet", 3, (None, None, 3), 32, None, decoder_filters=("abc", "ints", 5))
    with pytest.raises(KsegError, match=r"num_classes must be a positive int\. Received: num_classes=True"):
        check_args("unet", True, (None, None, 3), 32, None)
    with pytest.raises(KsegError, match=r"input_shape sides must be positive ints or None"):
        check_args("unet", 3, (64, "a", 3), 32, None)


# --- plugins ---------------------------------------------------------------------------


class FakeEntryPoint:
    """What load_plugins reads from an importlib.metadata.EntryPoint."""

    def __init__(self, name, dist, load):
        self.name, self.value, self.load = name, f"{name}_module", load
        self.dist = type("Dist", (), {"name": dist})()


@pytest.fixture
def plugins(monkeypatch):
    """Install fake entry points; the built-ins stay registered, plugins load again."""
    import importlib.metadata

    registry.load_plugins()  # the built-ins (and kseg_tiny) first, as in a real process
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_LOAD_ERRORS", {})
    monkeypatch.setattr(registry, "_FAILED_IMPORTS", set())
    monkeypatch.setattr(registry, "_loaded", False)

    def install(*eps):
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: list(eps))

    return install


def hijacker():
    @registry.register_model("unet")
    def unet(**kwargs):
        """Not the real U-Net."""

    @registry.register_model("evil_net")
    def evil_net(**kwargs):
        """A model of its own."""


def test_a_plugin_cannot_take_a_builtin_name(plugins):
    plugins(FakeEntryPoint("aaa_evil", "kseg-evil", hijacker))  # sorts before the built-ins
    result = cli("models", "--json", "--no-params")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[result.output.index("{"):])
    sources = {m["name"]: m["source"] for m in found["models"]}
    assert sources["unet"] == "builtin" and sources["evil_net"] == "kseg-evil"
    assert "'unet' is already registered by builtin" in found["plugin_errors"]["aaa_evil"]
    assert registry.get_entry("unet").builder.__module__ == "kseg.models.unet"


def test_a_second_plugin_cannot_take_the_first_ones_name(plugins):
    def first():
        registry.register_model("shared")(lambda **kw: "first")

    def second():
        registry.register_model("shared")(lambda **kw: "second")

    plugins(FakeEntryPoint("b_second", "kseg-b", second), FakeEntryPoint("a_first", "kseg-a", first))
    assert registry.create_model("shared") == "first"
    assert "refused" in registry.plugin_errors()["b_second"]


def test_a_plugin_calling_sys_exit_does_not_end_kseg_models(plugins):
    def exits():
        sys.exit(3)

    plugins(FakeEntryPoint("quitter", "kseg-quit", exits))
    result = cli("models", "unet", "--no-params")
    assert result.exit_code == 0, result.output
    assert "unet" in result.output and "quitter" in result.output and "sys.exit(3)" in result.output


def test_a_model_of_a_failed_plugin_says_why(plugins, data_dir, tmp_path):
    def broken():
        registry.register_model("badplug")(lambda **kw: None)
        raise ImportError("No module named 'torchvision'")

    plugins(FakeEntryPoint("badplug", "kseg-badplug", broken))
    result = cli("fit", "badplug", "--data", data_dir, "--runs", tmp_path, "--epochs", "1", *FIT_ARGS)
    line = error_line(result, "badplug")
    assert "plugin 'badplug' failed to import" in line and "torchvision" in line
    assert "Unknown model" not in line
    assert "badplug" not in registry.list_models()  # what it registered before failing is dropped


def test_plugins_for_real_entry_points_in_a_subprocess(tmp_path):
    """Entry points of installed distributions (a dist-info folder on PYTHONPATH): one
    takes 'unet', one exits on import; kseg models still lists the real U-Net."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "kseg_evil.py").write_text(textwrap.dedent('''
        import kseg

        @kseg.register_model("unet")
        def unet(**kwargs):
            """Hijacked."""
    '''))
    (site / "kseg_quit.py").write_text("import sys\nsys.exit('bye')\n")
    for dist, module in (("kseg_evil", "kseg_evil"), ("kseg_quit", "kseg_quit")):
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[kseg.models]\na_{dist} = {module}\n")
    env = dict(os.environ, PYTHONPATH=str(site), KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "kseg", "models", "unet", "--json", "--no-params"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [(m["name"], m["source"]) for m in found["models"]] == [("unet", "builtin")]
    assert "already registered" in found["plugin_errors"]["a_kseg_evil"]
    assert "sys.exit('bye')" in found["plugin_errors"]["a_kseg_quit"]


# --- bugs and tracebacks ----------------------------------------------------------------


def test_a_bug_says_internal_error_and_how_to_see_the_traceback(monkeypatch, tmp_path):
    from kseg.data import check

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(check, "check_dataset", bug)
    result = cli("data", "check", tmp_path)
    line = error_line(result, "internal error: TypeError", status=InternalError.exit_code)
    assert "KSEG_DEBUG=1" in line and "--verbose" in line


def test_kseg_debug_shows_the_traceback(bomb_data, monkeypatch):
    root, bomb = bomb_data
    monkeypatch.setenv("KSEG_DEBUG", "1")
    result = cli("data", "check", root)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "DecompressionBombError" in result.output
    last = result.output.rstrip("\n").splitlines()[-1]
    assert last.startswith("Error:") and str(bomb) in last


def test_verbose_shows_the_traceback_in_a_subprocess(bomb_data):
    root, bomb = bomb_data
    env = {k: v for k, v in os.environ.items() if k not in ("KSEG_DEBUG", "KSEG_VERBOSE")}
    argv = [sys.executable, "-m", "kseg", "data", "check", str(root)]
    quiet = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    loud = subprocess.run(argv[:3] + ["--verbose"] + argv[3:], env=env, capture_output=True, text=True,
                          timeout=300)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and quiet.stderr.strip().count("\n") == 0
    assert str(bomb) in quiet.stderr
    assert "Traceback" in loud.stderr and str(bomb) in loud.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("exc, words", [
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/state.json"), "runs/x/state.json: no space"),
    (PermissionError(errno.EACCES, "Permission denied", "/out"), "/out: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/a.png"), "/mnt/ro/a.png: read-only"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/sub"), "f/sub: a part of the path is a file"),
    (MemoryError(), "out of memory"),
])
def test_user_error_translates_without_a_traceback(exc, words):
    translated = user_error(exc)
    assert isinstance(translated, KsegError) and words in translated.format_message()
    assert "\n" not in translated.format_message()
