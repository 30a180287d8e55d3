"""kseg.parsing: the small values users type (--grid, --size, --scale, --model-arg), directly
and through the CLI, where a bad one is a one-line error naming the option and the value."""

import pytest
from click.testing import CliRunner

from kseg.cli.main import main
from kseg.errors import KsegError
from kseg.parsing import parse_hw, parse_key_values, parse_range


@pytest.mark.parametrize("value, expected", [("384x480", (384, 480)), ("4X4", (4, 4)), ((32, 64), (32, 64)),
                                             (["2", "3"], (2, 3))])
def test_parse_hw_reads_text_and_pairs(value, expected):
    assert parse_hw(value) == expected


@pytest.mark.parametrize("value, message", [
    ("384", "--size must look like 384x480. Received: '384'"),
    ("384x480x3", "--size must look like 384x480. Received: '384x480x3'"),
    ("ax4", "--size must look like 384x480. Received: 'ax4'"),
    (5, "--size must look like 384x480. Received: 5"),
    ("0x480", "--size needs both sides >= 1. Received: '0x480'"),
])
def test_parse_hw_errors_name_the_option_and_the_value(value, message):
    with pytest.raises(KsegError) as err:
        parse_hw(value)
    assert str(err.value) == message


def test_parse_hw_minimum():
    assert parse_hw("32x40", minimum=32) == (32, 40)
    with pytest.raises(KsegError, match=r"^--grid needs both sides >= 32. Received: '16x64'$"):
        parse_hw("16x64", "--grid", minimum=32)


@pytest.mark.parametrize("value, expected", [("0.5:2", (0.5, 2.0)), ("1:1", (1.0, 1.0)),
                                             ([0.25, 4], (0.25, 4.0))])
def test_parse_range_reads_text_and_pairs(value, expected):
    assert parse_range(value) == expected


@pytest.mark.parametrize("value, message", [
    ("0.5", "--scale must look like 0.5:2.0. Received: '0.5'"),
    ("a:b", "--scale must look like 0.5:2.0. Received: 'a:b'"),
    (2.0, "--scale must look like 0.5:2.0. Received: 2.0"),
    ("2:1", "--scale needs 0 < low <= high, both finite. Received: '2:1'"),
    ("0:1", "--scale needs 0 < low <= high, both finite. Received: '0:1'"),
    ("nan:1", "--scale needs 0 < low <= high, both finite. Received: 'nan:1'"),
    ("1:inf", "--scale needs 0 < low <= high, both finite. Received: '1:inf'"),
])
def test_parse_range_errors(value, message):
    with pytest.raises(KsegError) as err:
        parse_range(value)
    assert str(err.value) == message


def test_parse_key_values_reads_json_values_and_bare_words():
    got = parse_key_values(["depth=3", "dropout=0.1", "filters=[16, 8]", "flag=true", "name=x", "eq=a=b",
                            "empty="])
    assert got == {"depth": 3, "dropout": 0.1, "filters": [16, 8], "flag": True, "name": "x", "eq": "a=b",
                   "empty": ""}
    assert parse_key_values([]) == {}


@pytest.mark.parametrize("item", ["depth", "=3"])
def test_parse_key_values_needs_a_key_and_an_equals_sign(item):
    with pytest.raises(KsegError) as err:
        parse_key_values([item], "--model-arg")
    assert str(err.value) == f"--model-arg must be key=value. Received: {item!r}"


@pytest.mark.parametrize("args, line", [
    (["fit", "unet", "--grid", "4y4"], "Error: --grid must look like 384x480. Received: '4y4'"),
    (["fit", "unet", "--crops", "--scale", "2:0.5"],
     "Error: --scale needs 0 < low <= high, both finite. Received: '2:0.5'"),
    (["fit", "unet", "--model-arg", "decoder_filters"],
     "Error: --model-arg must be key=value. Received: 'decoder_filters'"),
    (["data", "synth", "DIR", "--size", "16x64"], "Error: --size needs both sides >= 32. Received: '16x64'"),
])
def test_the_cli_refuses_a_bad_value_in_one_line(args, line, tmp_path):
    # Checked before any dataset is read or model built: the data folder does not exist.
    args = [str(tmp_path / "out") if a == "DIR" else a for a in args]
    if args[0] == "fit":
        args += ["--data", str(tmp_path / "nowhere"), "--runs", str(tmp_path / "runs")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [line]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
