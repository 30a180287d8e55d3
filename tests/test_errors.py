"""kseg.errors.user_error: the one line each failure becomes (tests/test_reliability.py
drives the common ones through the CLI; here are the rarer OS, decoder and Keras errors,
made for real where a library can make them)."""

import errno
import zipfile

import click
import keras
import pytest

from kseg.errors import TRACEBACK_HINT, InternalError, KsegError, debug_requested, user_error

DISK_FULL = "free some space, then run the same command again (what was written before is intact)"
KERAS_HINT = "replace it with a good copy, or train again"


def raised(fn, *args):
    """The exception `fn(*args)` raises (with its traceback, as the CLI sees it)."""
    with pytest.raises(BaseException) as info:
        fn(*args)
    return info.value


def line(exc):
    message = user_error(exc).format_message()
    assert "\n" not in message
    return message


# --- OSError -------------------------------------------------------------------------


@pytest.mark.parametrize("code, strerror, problem", [
    (errno.EDQUOT, "Disk quota exceeded", f"disk quota exceeded; {DISK_FULL}"),
    (errno.EEXIST, "File exists", "exists and is in the way (a file where a folder is needed?); remove it or "
                                  "choose another path"),
    (errno.EISDIR, "Is a directory", "is a folder, not a file; give a file name"),
    (errno.EIO, "Input/output error",
     "input/output error; the disk or network file system is failing; check it"),
    (errno.EMFILE, "Too many open files", "too many open files; raise the limit (ulimit -n) or close other "
                                          "programs"),
    (errno.ENAMETOOLONG, "File name too long", "file name too long; choose a shorter path"),
    # Not in kseg's table: the system's own words, no advice.
    (errno.EXDEV, "Invalid cross-device link", "Invalid cross-device link"),
    (errno.ENOTEMPTY, "", "Directory not empty"),
])
def test_os_errors_name_the_file_and_what_to_do(code, strerror, problem):
    exc = OSError(code, strerror, "runs/u/last.keras")
    assert line(exc) == f"runs/u/last.keras: {problem}"
    assert isinstance(user_error(exc), KsegError) and user_error(exc).exit_code == 1


def test_a_failed_rename_names_both_paths():
    exc = OSError(errno.EXDEV, "Invalid cross-device link", "runs/u/.last.e0002.keras", None,
                  "/mnt/last.keras")
    assert line(exc) == "runs/u/.last.e0002.keras -> /mnt/last.keras: Invalid cross-device link"


def save(filepath):
    raise OSError(errno.ENOSPC, "No space left on device")  # a library that does not set filename


def anonymous():
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_os_error_without_a_filename_takes_it_from_the_failing_call():
    expected = f"runs/u/best.keras: no space left on device; {DISK_FULL}"
    assert line(raised(save, "runs/u/best.keras")) == expected
    assert line(raised(anonymous)) == f"(file not known): no space left on device; {DISK_FULL}"


def test_the_first_error_of_a_full_disk_chain_is_the_one_named():
    def write_then_clean_up():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "runs/u/.last.e0002.keras")
        except OSError:
            # Cleaning up on the same full disk fails too, for another file.
            raise OSError(errno.ENOSPC, "No space left on device", "runs/u/.tmp123")  # noqa: B904

    assert line(raised(write_then_clean_up)).startswith("runs/u/.last.e0002.keras: no space left on device")

    def another_kind_while_handling():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "a")
        except OSError:
            raise PermissionError(errno.EACCES, "Permission denied", "b")  # noqa: B904

    assert line(raised(another_kind_while_handling)).startswith("b: permission denied")


def h5_open(filename):
    raise OSError("Unable to synchronously open file (truncated file: eof = 96, sblock->base_addr = 0)")


def test_an_os_error_without_errno_quotes_the_library():
    assert line(raised(h5_open, "weights.h5")) == ("weights.h5: OSError: Unable to synchronously open file "
                                                  "(truncated file: eof = 96, sblock->base_addr = 0)")


# --- images, memory ------------------------------------------------------------------


def test_an_undecodable_image_names_its_file(tmp_path):
    from PIL import Image

    bad = tmp_path / "frame.png"
    bad.write_bytes(b"not a png at all")
    message = line(raised(Image.open, str(bad)))
    assert message.startswith(f"{bad}: cannot decode image (UnidentifiedImageError: ")
    assert message.endswith("; replace or remove the file")


def test_out_of_memory_says_what_to_lower():
    class ResourceExhaustedError(Exception):  # TensorFlow's, recognised by name
        pass

    exc = ResourceExhaustedError("OOM when allocating tensor with shape[16,64,512,512]")
    assert line(exc) == ("out of memory (ResourceExhaustedError: OOM when allocating tensor with "
                         "shape[16,64,512,512]); lower --batch-size or --patch, or close other programs")


# --- Keras checkpoints ---------------------------------------------------------------


@pytest.fixture(scope="module")
def good_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.keras"
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 1, name="segmentation_output")(inputs)).save(path)
    return path


def load(filepath):
    return keras.saving.load_model(filepath, compile=False)


def test_keras_loading_errors_in_kseg_words(good_keras, tmp_path):
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good_keras.read_bytes()[: good_keras.stat().st_size // 2])
    assert line(raised(load, truncated)) == (f"{truncated}: not a complete .keras file (truncated, damaged "
                                            f"or another format); {KERAS_HINT}")
    other = tmp_path / "weights.txt"
    other.write_text("hello")
    expected = f"{other}: not a Keras model file (a .keras file is expected); {KERAS_HINT}"
    assert line(raised(load, other)) == expected
    missing = tmp_path / "gone.keras"
    assert line(raised(load, missing)) == f"{missing}: file not found; {KERAS_HINT}"


def rewritten(source, path, old, new):
    """A copy of the .keras file `source` whose config.json has `old` replaced by `new`."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                assert old in data
                data = data.replace(old, new)
            dst.writestr(item, data)
    return path


@pytest.mark.parametrize("module, detail", [
    # A plugin's layer, the plugin not installed: Keras names the class after a generic first line.
    ("myplugin.layers", "Could not locate class 'PluginConv'"),
    # A built-in layer of a newer Keras than this one.
    ("keras.layers", "Could not deserialize 'keras.layers.PluginConv'"),
])
def test_a_checkpoint_with_an_unknown_layer_names_the_class(good_keras, tmp_path, module, detail):
    path = rewritten(good_keras, tmp_path / "foreign.keras",
                     b'"module": "keras.layers", "class_name": "Conv2D"',
                     f'"module": "{module}", "class_name": "PluginConv"'.encode())
    exc = raised(load, path)
    assert isinstance(user_error(exc), KsegError)  # the file's fault, not kseg's: exit 1
    assert line(exc) == f"{path}: uses a layer or object kseg does not know ({detail}); {KERAS_HINT}"


def test_a_kseg_error_quoting_a_keras_error_is_reworded(good_keras, tmp_path):
    """RunDir.load_model quotes Keras' error; the user reads kseg's words and what to do."""
    from kseg.runs import RunDir

    run = RunDir(tmp_path)
    run.best_path.write_bytes(good_keras.read_bytes()[:100])
    exc = raised(run.load_model, "best")
    assert isinstance(exc, KsegError)
    assert line(exc) == (f"{run.best_path}: cannot load model (not a complete .keras file (truncated, "
                         f"damaged or another format)); {KERAS_HINT}")
    with pytest.raises(KsegError, match=r"last.keras does not exist; train the run first \(kseg fit\)"):
        run.load_model("last")
    with pytest.raises(KsegError, match="Unknown checkpoint 'worst'; choose 'best' or 'last'"):
        run.load_model("worst")


# --- bugs ----------------------------------------------------------------------------


def buggy():
    return 1 + "a"


def test_a_bug_is_an_internal_error_with_its_place():
    exc = raised(buggy)
    internal = user_error(exc)
    assert isinstance(internal, InternalError) and internal.exit_code == 70
    lineno = buggy.__code__.co_firstlineno + 1
    assert line(exc) == (f"internal error: TypeError: unsupported operand type(s) for +: 'int' and 'str' "
                         f"(at test_errors.py:{lineno}). This is a bug in kseg or a plugin, not in your "
                         f"input; {TRACEBACK_HINT} and report it.")
    # Never raised (no traceback): no place to name.
    assert line(RuntimeError()) == (f"internal error: RuntimeError. This is a bug in kseg or a plugin, "
                                    f"not in your input; {TRACEBACK_HINT} and report it.")


def test_click_errors_pass_through():
    usage = click.UsageError("No such option: --epoch")
    assert user_error(usage) is usage
    mine = KsegError("--lr must be > 0.   Received: -1")
    assert user_error(mine) is mine and mine.format_message() == "--lr must be > 0. Received: -1"


@pytest.mark.parametrize("value, on", [("", False), ("0", False), ("1", True), ("yes", True)])
def test_kseg_debug(monkeypatch, value, on):
    monkeypatch.setenv("KSEG_DEBUG", value)
    assert debug_requested() is on


def test_errors_imports_neither_keras_nor_pillow(run_python):
    out = run_python("import sys, kseg.errors; print('keras' in sys.modules, 'PIL' in sys.modules)")
    assert out.split() == ["False", "False"]


def test_native_lines_at_exit_cannot_follow_the_error_line():
    # TensorFlow logs from its finalisers at shutdown (after Ctrl-C mid-epoch: "Error
    # occurred when finalizing GeneratorDataset iterator"), whatever TF_CPP_MIN_LOG_LEVEL
    # says. Stand-in: an exit handler registered before kseg's, writing to fd 2 as C++ does.
    import subprocess
    import sys

    code = ("import atexit, os; atexit.register(lambda: os.write(2, b'W0000 native noise\\n'));"
            "import sys; sys.argv = ['kseg', 'fit', 'no_such_network']; from kseg.cli.main import run; run()")
    for env, noisy in (({}, False), ({"KSEG_VERBOSE": "1"}, True)):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ, **env})
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        if noisy:  # --verbose keeps every native line, for bug reports
            assert lines[-1] == "W0000 native noise"
        else:
            assert lines == [lines[-1]] and lines[-1].startswith("Error: ") and "no_such_network" in lines[-1]
