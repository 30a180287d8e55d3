"""kseg.data.dataset_spec: the dataset description (kseg.json / --spec), its checks and defaults.

tests/test_reliability.py sends one bad value of each field through `kseg data check`;
here are the remaining checks, the file errors, the default colours and inferred specs.
"""

import json

import pytest
from click.testing import CliRunner

from kseg.cli.main import main
from kseg.data.dataset_spec import CAMVID, CAMVID_COLORS, DatasetSpec, default_colors, infer_spec, load_spec
from kseg.errors import DataError


def error(d):
    with pytest.raises(DataError) as err:
        DatasetSpec.from_dict(d, source="roads/kseg.json")
    return str(err.value)


@pytest.mark.parametrize("d, message", [
    ({"classes": ["a"], "colour": [[1, 2, 3]]},
     "roads/kseg.json: unknown spec keys ['colour']; the keys are name, classes, colors, void, void_color, "
     "color_map, label_map, max_void, multilabel"),
    ({"classes": ["a", "b"], "color_map": True},
     "roads/kseg.json: 'color_map' is true but there are no 'colors' to map RGB masks through; add 'colors' "
     "or drop 'color_map'"),
    ({"classes": ["a", "b"], "colors": [[1, 2, 3], [1, 2, 3]]},
     "roads/kseg.json: 'colors' must be distinct to map RGB masks to classes"),
    ({"classes": ["sky", "road"], "colors": [[0, 0, 0], [9, 9, 9]], "void": 255, "void_color": [0, 0, 0]},
     "roads/kseg.json: 'void_color' [0, 0, 0] is also the colour of class 'sky'; an RGB mask could not tell "
     "them apart"),
    ({"classes": ["a"], "colors": "red"},
     "roads/kseg.json: 'colors' must be a list with one [R, G, B] (three ints 0-255) per class. "
     "Received: \"red\""),
    ({"classes": ["a"], "colors": [[1, 2, True]]},
     "roads/kseg.json: 'colors'[0] must be [R, G, B] (three ints 0-255). Received: [1, 2, true]"),
    ({"classes": ["a"], "void": True},
     "roads/kseg.json: 'void' must be an int (the mask value of unlabelled pixels) or null. Received: true"),
    ({"classes": ["a"], "void": 256}, "roads/kseg.json: 'void' must be in [1, 255] (after the 1 classes). "
                                      "Received: 256"),
    ({"classes": ["a"], "name": ""}, "roads/kseg.json: 'name' must be a non-empty string. Received: \"\""),
    ({"classes": [f"c{i}" for i in range(256)]}, "roads/kseg.json: 'classes' needs 1 to 255 class names. "
                                                "Received: 256"),
    ({"classes": ["a"], "label_map": [0] * 255},
     "roads/kseg.json: 'label_map' must be 256 ints 0-255 (the class of each raw mask value). Received: "
     "[" + "0, " * 25 + "0..."),  # cut to 80 characters
    ({"classes": ["a"], "label_map": [0] * 255 + [256]},
     "roads/kseg.json: 'label_map' must be 256 ints 0-255 (the class of each raw mask value). Received: "
     "[" + "0, " * 25 + "0..."),  # cut to 80 characters
    ({"classes": ["a"], "max_void": 1.5},
     "roads/kseg.json: 'max_void' must be a number from 0 to 1 (a share of the train pixels). Received: 1.5"),
    ("sky,road", "roads/kseg.json: a dataset spec is a JSON object such as "
                 "{\"classes\": [\"sky\", \"road\"]}. Received: \"sky,road\""),
])
def test_each_check_names_the_source_and_the_field(d, message):
    assert error(d) == message


def test_a_good_spec_keeps_every_field_through_json():
    d = {"name": "roads", "classes": ["sky", "road", "car"], "colors": [[1, 1, 1], [2, 2, 2], [3, 3, 3]],
         "void": 255, "void_color": [0, 0, 0], "color_map": True, "label_map": [v % 4 for v in range(256)]}
    spec = DatasetSpec.from_dict(d)
    assert spec.num_classes == 3 and spec.colors[2] == (3, 3, 3) and spec.void_color == (0, 0, 0)
    assert spec.label_map[:6] == (0, 1, 2, 3, 0, 1)
    assert spec.to_dict() == d
    assert DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # Without colours: display colours, no colour map, and no label_map key written.
    plain = DatasetSpec.from_dict({"classes": ["a", "b"]})
    assert plain.name == "dataset" and not plain.color_map and plain.colors == CAMVID_COLORS[:2]
    assert "label_map" not in plain.to_dict()


def test_default_colours_are_camvids_then_distinct():
    assert default_colors(3) == CAMVID_COLORS[:3]
    many = default_colors(40)
    assert many[:11] == CAMVID_COLORS and len(set(many)) == 40
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in many)
    assert default_colors(40) == many  # deterministic: a run's colours do not change between commands
    # A spec of 40 classes without colours gets them, and can be written back.
    spec = DatasetSpec.from_dict({"classes": [f"c{i}" for i in range(40)]})
    assert spec.colors == many and DatasetSpec.from_dict(spec.to_dict()) == spec


def test_infer_spec_from_mask_values():
    spec = infer_spec({0, 2, 255})
    assert spec.classes == ("class_0", "class_1", "class_2") and spec.void == 255 and not spec.color_map
    assert infer_spec([1, 0]).void is None and infer_spec([1, 0]).num_classes == 2
    assert infer_spec([255]).classes == ("class_0",)  # only void seen: one class


def test_load_spec_file_errors(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path / 'none.json'}: spec file not found$"):
        load_spec(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"classes": ["a",]}')
    with pytest.raises(DataError, match=rf"^{bad}: not a readable JSON spec \(Expecting value"):
        load_spec(bad)
    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"classes": ["caf\xe9"]}'.encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{latin}: not a readable JSON spec \('utf-8' codec can't decode"):
        load_spec(latin)
    with pytest.raises(DataError, match=rf"^{tmp_path}: not a readable JSON spec \(\[Errno 21\] Is a"):
        load_spec(tmp_path)


def test_data_check_with_a_bad_spec_file_is_one_line(data_dir, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text("{not json")
    result = CliRunner().invoke(main, ["data", "check", str(data_dir), "--spec", str(spec)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {spec}: not a readable JSON spec (")
    # The same file with CamVid's description checks the dataset.
    spec.write_text(json.dumps(CAMVID.to_dict()))
    assert CliRunner().invoke(main, ["data", "check", str(data_dir), "--spec", str(spec)]).exit_code == 0
