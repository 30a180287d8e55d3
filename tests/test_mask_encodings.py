"""Mask encodings of a generic images/ + masks/ folder with no kseg.json: what `kseg data
check` infers (binary 0/1 and 0/255, palette PNGs, 16-bit, RGB colour masks) and the
sets it refuses (one class, too much void, a class absent from train)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kseg.cli import main
from kseg.data import io
from kseg.data.check import check_dataset
from kseg.data.readers import open_dataset
from kseg.errors import DataError

H, W = 16, 16


def disk(cy=8, cx=8, r=4):
    """bool (H, W): a disk, the foreground of the binary sets."""
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def write_set(root, masks, save=lambda array, path: Image.fromarray(array).save(path)):
    """images/<split>/ and masks/<split>/ from {split: [mask arrays]}; grey images."""
    for split, arrays in masks.items():
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i, mask in enumerate(arrays):
            Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "images" / split / f"{i}.png")
            save(mask, root / "masks" / split / f"{i}.png")
    return root


def binary_masks(fg, void=None):
    """Two train and one val mask: disks of value `fg` on 0, an optional void corner."""
    out = []
    for cy in (6, 9, 8):
        m = disk(cy=cy).astype(np.uint8) * fg
        if void is not None:
            m[:2, :2] = void
        out.append(m)
    return {"train": out[:2], "val": out[2:]}


def test_0_255_masks_are_two_classes_without_void(tmp_path):
    s = check_dataset(write_set(tmp_path, binary_masks(255)))
    assert s["spec"]["classes"] == ["background", "foreground"] and s["spec"]["void"] is None
    info = s["inferred"]
    assert info["task"] == "binary" and info["void"] is None and "255 = foreground" in info["encoding"]
    # 2 disks of 49 px each (r=4) in 2 x 256 px: the foreground share is the disks'
    assert info["classes"][1]["share"] == pytest.approx(2 * disk().sum() / (2 * H * W))
    ds = open_dataset(tmp_path)
    mask = io.read_mask(ds.splits["train"][0].mask, ds.spec)
    assert set(np.unique(mask)) == {0, 1} and mask.sum() == disk(cy=6).sum()


def test_data_check_json_reports_the_binary_task(tmp_path):
    root = write_set(tmp_path, binary_masks(255))
    result = CliRunner().invoke(main, ["data", "check", str(root), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["spec"]["classes"] == ["background", "foreground"]
    assert summary["inferred"]["task"] == "binary" and summary["inferred"]["void"] is None
    assert all(d["void"] == 0 for d in summary["splits"].values())
    text = CliRunner().invoke(main, ["data", "check", str(tmp_path)], terminal_width=200).output
    assert "task: binary" in text and "void: none" in text and "0 and 255" in text


def test_0_1_masks_and_0_1_255_masks(tmp_path):
    s = check_dataset(write_set(tmp_path / "a", binary_masks(1)))
    assert s["inferred"]["task"] == "binary" and s["spec"]["void"] is None
    s = check_dataset(write_set(tmp_path / "b", binary_masks(1, void=255)))
    assert s["spec"]["classes"] == ["background", "foreground"] and s["spec"]["void"] == 255
    assert s["inferred"]["void"]["share"] == pytest.approx(4 / (H * W))  # the 2x2 corner


def test_grey_0_255_saved_as_rgb_is_binary(tmp_path):
    def as_rgb(array, path):
        Image.fromarray(np.repeat(array[..., None], 3, axis=2)).save(path)

    root = write_set(tmp_path, binary_masks(255), save=as_rgb)
    ds = open_dataset(root)
    assert ds.spec.classes == ("background", "foreground")
    assert io.read_mask(ds.splits["val"][0].mask, ds.spec).max() == 1


def _three_class_masks():
    """Masks with classes 0, 1 (a disk) and 2 (a bar), in train and val."""
    masks = []
    for cy in (6, 9, 8):
        m = disk(cy=cy).astype(np.uint8)
        m[12:, :] = 2
        masks.append(m)
    return {"train": masks[:2], "val": masks[2:]}


def test_palette_png_holds_indices_and_gives_the_colours(tmp_path):
    palette = [10, 20, 30, 200, 0, 0, 0, 200, 0] + [0] * (768 - 9)

    def as_palette(array, path):
        im = Image.fromarray(array, mode="P")
        im.putpalette(palette)
        im.save(path)

    ds = open_dataset(write_set(tmp_path, _three_class_masks(), save=as_palette))
    assert ds.spec.num_classes == 3 and ds.spec.colors == ((10, 20, 30), (200, 0, 0), (0, 200, 0))
    assert "palette PNG" in ds.origin["encoding"] and not ds.spec.color_map
    assert set(np.unique(io.read_mask(ds.splits["train"][0].mask, ds.spec))) == {0, 1, 2}
    assert check_dataset(ds)["inferred"]["task"] == "multiclass"


def _save16(scale):
    def save(array, path):
        Image.fromarray(array.astype(np.uint16) * scale).save(path)  # mode I;16
    return save


def test_16_bit_masks_of_indices_and_of_scaled_binary_values(tmp_path):
    ds = open_dataset(write_set(tmp_path / "a", _three_class_masks(), save=_save16(1)))
    assert Image.open(ds.splits["train"][0].mask).mode.startswith("I")
    assert ds.spec.num_classes == 3 and "16-bit" in ds.origin["encoding"]
    # 0/65535 (8-bit 0/255 widened by 257, as 16-bit tools store it): binary
    ds = open_dataset(write_set(tmp_path / "b", binary_masks(255), save=_save16(257)))
    assert ds.spec.classes == ("background", "foreground")
    assert io.read_mask(ds.splits["train"][0].mask, ds.spec).sum() == disk(cy=6).sum()


def test_16_bit_label_ids_above_255_are_one_line_errors(tmp_path):
    root = write_set(tmp_path, {"train": [disk().astype(np.uint16) * 1000]}, save=_save16(1))
    with pytest.raises(DataError, match=r"0\.mask|0\.png: 16-bit mask has values up to 1000"):
        open_dataset(root)


RED, GREEN = (200, 0, 0), (0, 200, 0)


def _color_masks():
    out = []
    for cy in (6, 9, 8):
        m = np.zeros((H, W, 3), np.uint8)
        m[disk(cy=cy)] = RED
        m[12:, :] = GREEN
        out.append(m)
    return {"train": out[:2], "val": out[2:]}


def test_rgb_colour_masks_infer_a_palette_written_to_kseg_json(tmp_path):
    root = write_set(tmp_path, _color_masks())
    s = check_dataset(root)
    assert s["spec"]["colors"] == [[0, 0, 0], [0, 200, 0], [200, 0, 0]]  # black first, then RGB order
    assert s["spec"]["classes"][0] == "background" and s["spec"]["color_map"] is True
    written = json.loads((root / "kseg.json").read_text())
    assert s["kseg_json"] == str(root / "kseg.json") and written["colors"] == s["spec"]["colors"]
    # The user names the classes; the next check reads them from kseg.json and writes nothing.
    written["classes"] = ["bg", "grass", "apple"]
    (root / "kseg.json").write_text(json.dumps(written))
    again = check_dataset(root)
    assert again["spec"]["classes"] == ["bg", "grass", "apple"] and again["kseg_json"] is None
    ds = open_dataset(root)
    mask = io.read_mask(ds.splits["val"][0].mask, ds.spec)
    assert mask[8, 8] == 2 and mask[13, 0] == 1 and mask[0, 0] == 0


def test_rgb_masks_with_many_colours_or_mixed_with_grey_are_refused(tmp_path):
    noisy = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="colours, more than the 64"):
        open_dataset(write_set(tmp_path / "a", {"train": [noisy]}))
    masks = {"train": [_color_masks()["train"][0], disk().astype(np.uint8)]}
    with pytest.raises(DataError, match="RGB colour mask among grayscale masks"):
        open_dataset(write_set(tmp_path / "b", masks))
    assert not (tmp_path / "a" / "kseg.json").exists()


# --- refusals: one line that says what to do --------------------------------------------


def refusal(root):
    with pytest.raises(DataError) as info:
        check_dataset(root)
    message = info.value.format_message()
    assert "\n" not in message and str(root) in message
    return message


def test_one_class_only_is_refused(tmp_path):
    blank = np.zeros((H, W), np.uint8)
    message = refusal(write_set(tmp_path, {"train": [blank, blank], "val": [blank]}))
    assert "hold 'class_0'" in message and "two or more classes" in message


def test_void_above_30_percent_is_refused_unless_kseg_json_allows_it(tmp_path):
    masks = binary_masks(1)
    for m in masks["train"]:
        m[:8, :] = 255  # half of each train mask is void
    root = write_set(tmp_path, masks)
    message = refusal(root)
    assert "void (mask value 255) is 50.0 %" in message and '"max_void": 0.55' in message
    spec = {"classes": ["background", "foreground"], "void": 255, "max_void": 0.55}
    (root / "kseg.json").write_text(json.dumps(spec))
    assert check_dataset(root)["inferred"]["void"]["share"] == pytest.approx(0.5)


def test_a_declared_class_absent_from_train_is_refused(tmp_path):
    root = write_set(tmp_path, binary_masks(1))
    (root / "kseg.json").write_text(json.dumps({"classes": ["background", "disk", "car"]}))
    message = refusal(root)
    assert "class 'car' (2) has no pixel in the train masks" in message and "kseg.json" in message


def test_an_inferred_class_seen_only_in_val_is_refused(tmp_path):
    masks = binary_masks(1)
    masks["val"][0][0, 0] = 2
    assert "'class_2' (2) has no pixel in the train masks" in refusal(write_set(tmp_path, masks))


def test_known_class_lists_report_absent_classes_without_refusing(tmp_path):
    from kseg.data import synth

    root = synth.write_synthetic(tmp_path, 1, 1, 0, (32, 48), seed=0)  # its one frame has no Pedestrian
    info = check_dataset(root)["inferred"]  # its kseg.json restates CamVid's classes
    assert info["task"] == "multiclass" and "Pedestrian" in info["absent"]
    assert info["spec_source"].endswith("kseg.json")
    (root / "kseg.json").unlink()
    info = check_dataset(root)["inferred"]
    assert info["spec_source"].startswith("camvid") and info["absent"]


def test_fit_refuses_before_creating_a_run_folder(tmp_path):
    blank = np.zeros((H, W), np.uint8)
    data = write_set(tmp_path / "ds", {"train": [blank, blank], "val": [blank]})
    import kseg_tiny

    args = ["fit", kseg_tiny.NAME, "--data", str(data), "--runs", str(tmp_path / "runs"), "--patch", "16",
            "--grid", "1x1", "--epochs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "two or more classes" in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "runs" / kseg_tiny.NAME).exists()


def test_0_255_masks_with_smoothed_edges_are_refused_with_a_hint(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    mask[15, 1:101 // 2 + 1] = np.arange(1, 101, 2)  # an edge of in-between values, as a resize leaves
    mask[48, 1:101 // 2 + 1] = np.arange(2, 102, 2)
    root = write_set(tmp_path, {"train": [mask]})
    with pytest.raises(DataError, match=r"hold 102 values, 98 % of pixels 0 or 255: .* at 128"):
        open_dataset(root)
