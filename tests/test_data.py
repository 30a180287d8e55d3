"""kseg.data: spec, readers, checks, patches, augmentation, weights, frames, CLI."""

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kseg.data import io, synth
from kseg.data.augment import AugmentConfig, affine_matrix, augment_pair, warp
from kseg.data.check import check_dataset
from kseg.data.dataset_spec import CAMVID, CAMVID_ROAD_MARKING, DatasetSpec, load_spec
from kseg.data.readers import Pair, open_dataset
from kseg.errors import DataError
from kseg.writes import MANIFEST

CAMVID_DIR = Path(os.environ.get("KSEG_CAMVID") or Path(__file__).parents[2] / "shared" / "camvid")
needs_camvid = pytest.mark.skipif(not (CAMVID_DIR / "train").is_dir(),
                                  reason=f"CamVid not found at {CAMVID_DIR} (set $KSEG_CAMVID)")
SMALL = (64, 96)  # tiny synthetic frames keep the tests fast


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return synth.write_synthetic(tmp_path_factory.mktemp("synth"), 4, 2, 2, SMALL, seed=3)


def copy_of(src, tmp_path):
    return Path(shutil.copytree(src, tmp_path / "copy"))


# --- spec -------------------------------------------------------------------------


@needs_camvid
def test_camvid_colours_equal_palette12_png():
    px = np.asarray(Image.open(CAMVID_DIR / "palette12.png").convert("RGB"))[0]
    # palette12.png: 11 classes with Road_marking at position 3, then Unlabelled (black).
    expected = [tuple(int(v) for v in px[i]) for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11)]
    assert CAMVID.colors == tuple(expected)
    assert tuple(px[3]) == CAMVID_ROAD_MARKING and tuple(px[12]) == CAMVID.void_color


def test_spec_round_trip_and_json(tmp_path):
    assert DatasetSpec.from_dict(CAMVID.to_dict()) == CAMVID
    assert CAMVID.num_classes == 11 and CAMVID.void == 11
    (tmp_path / "s.json").write_text(json.dumps({"name": "x", "classes": ["a", "b"], "void": 255}))
    spec = load_spec(tmp_path / "s.json")
    assert spec.classes == ("a", "b") and spec.void == 255 and not spec.color_map
    (tmp_path / "bad.json").write_text('{"classes": ["a"], "void": 0}')
    with pytest.raises(DataError, match="bad.json"):
        load_spec(tmp_path / "bad.json")


# --- synthetic data and readers ------------------------------------------------------


def test_synthetic_is_deterministic_and_has_the_classes(synth_dir, tmp_path):
    again = synth.write_synthetic(tmp_path, 4, 0, 0, SMALL, seed=3)
    a = io.read_image(synth_dir / "train" / "train_0002.png")
    assert np.array_equal(a, io.read_image(again / "train" / "train_0002.png"))
    assert a.shape == (*SMALL, 3) and a.dtype == np.uint8
    big = np.concatenate([synth.render_scene(np.random.default_rng(i), 120, 160)[1].ravel()
                          for i in range(8)])
    assert set(np.unique(big)) >= set(range(12)) - {7}  # fence is drawn 60 % of the time


def test_default_dataset_dir_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KSEG_CACHE", str(tmp_path))
    monkeypatch.setattr(synth, "DEFAULT_SIZE", SMALL)
    monkeypatch.setattr(synth, "DEFAULT_COUNTS", {"train": 2, "val": 1, "test": 1})
    root = synth.default_dataset_dir()
    stamp = (root / "train.txt").stat().st_mtime_ns
    assert synth.default_dataset_dir() == root and (root / "train.txt").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temp dir left behind
    counts = {s: len(v) for s, v in open_dataset(root).splits.items()}
    assert counts == {"train": 2, "val": 1, "test": 1}


def test_segnet_reader(synth_dir):
    ds = open_dataset(synth_dir)
    assert ds.layout == "segnet" and ds.spec.classes == CAMVID.classes
    assert {s: len(p) for s, p in ds.splits.items()} == {"train": 4, "val": 2, "test": 2}
    assert ds.splits["val"][1] == Pair(synth_dir / "val" / "val_0001.png",
                                       synth_dir / "valannot" / "val_0001.png")


def test_segnet_list_with_absolute_paths(synth_dir, tmp_path):
    root = copy_of(synth_dir, tmp_path)
    (root / "val.txt").write_text("/SegNet/CamVid/val/val_0001.png /SegNet/CamVid/valannot/val_0001.png\n")
    want = Pair(root / "val/val_0001.png", root / "valannot/val_0001.png")
    assert open_dataset(root).splits["val"] == [want]


def _generic(root, names, split=None, size=(8, 8), value=1):
    for name in names:
        for sub, arr, ext in (("images", np.full((*size, 3), 99, np.uint8), ".jpg"),
                              ("masks", np.full(size, value, np.uint8), ".png")):
            folder = root / sub / split if split else root / sub
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / (name + ext))
    return root


def test_generic_layout_hash_split_and_inferred_spec(tmp_path):
    names = [f"f{i:02d}" for i in range(30)]
    ds = open_dataset(_generic(tmp_path, names, value=2))
    import zlib
    want_test = sorted(n for n in names if zlib.crc32(n.encode()) % 10 == 0)
    assert [p.image.stem for p in ds.splits["test"]] == want_test
    assert sum(len(v) for v in ds.splits.values()) == 30
    assert ds.spec.classes == ("class_0", "class_1", "class_2") and ds.spec.void is None


def test_generic_layout_split_folders(tmp_path):
    _generic(tmp_path, ["a", "b"], "train")
    _generic(tmp_path, ["c"], "val")
    ds = open_dataset(tmp_path)
    assert ds.layout == "generic" and list(ds.splits) == ["train", "val"]
    assert ds.splits["train"][0].image == tmp_path / "images/train/a.jpg"


# --- bad inputs: one line naming the file ----------------------------------------


def _bad(root):
    with pytest.raises(DataError) as info:
        check_dataset(root)
    msg = info.value.format_message()
    assert "\n" not in msg
    return msg


def test_missing_folder_and_empty_split(synth_dir, tmp_path):
    root = copy_of(synth_dir, tmp_path)
    (root / "val.txt").unlink()
    shutil.rmtree(root / "valannot")
    assert "valannot: missing folder" in _bad(root)
    shutil.rmtree(root / "val")
    (root / "test.txt").unlink()
    for f in (root / "test").iterdir():
        f.unlink()
    for f in (root / "testannot").iterdir():
        f.unlink()
    assert "test: empty split" in _bad(root)


def test_unpaired_names_are_listed(synth_dir, tmp_path):
    root = copy_of(synth_dir, tmp_path)
    (root / "train.txt").unlink()
    (root / "trainannot" / "train_0001.png").rename(root / "trainannot" / "other.png")
    msg = _bad(root)
    assert "2 file(s) without a partner" in msg and "train_0001.png" in msg and "other.png" in msg


def test_size_mismatch_names_file_and_shapes(synth_dir, tmp_path):
    root = copy_of(synth_dir, tmp_path)
    io.write_png(root / "trainannot" / "train_0003.png", np.zeros((32, 48), np.uint8))
    msg = _bad(root)
    assert "train_0003.png" in msg and "64x96" in msg and "32x48" in msg


def test_bad_mask_values(synth_dir, tmp_path):
    root = copy_of(synth_dir, tmp_path)
    mask = np.zeros(SMALL, np.uint8)
    mask[0, :3] = [12, 40, 11]  # 11 is void: fine; 12 and 40 are not classes
    io.write_png(root / "valannot" / "val_0000.png", mask)
    msg = _bad(root)
    # Judge the text after the file name: pytest's tmp folders (pytest-111) may hold "11".
    text = msg.split("val_0000.png", 1)[-1]
    assert "valannot/val_0000.png" in msg and "12, 40" in text and "11" not in text.split("nor void")[0]


def test_rgb_masks_need_a_colour_map(tmp_path):
    root = _generic(tmp_path, ["a"], "train")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = CAMVID.colors[3]  # Road
    Image.fromarray(rgb).save(root / "masks/train/a.png")
    (root / "kseg.json").write_text('{"classes": ["a", "b", "c", "d"]}')  # no "colors": no colour map
    assert "a.png: RGB/RGBA mask but the dataset spec has no colour map" in _bad(root)
    # With CamVid's colour map: Road -> 3, black -> void 11.
    mask = io.read_mask(root / "masks/train/a.png", CAMVID)
    assert (mask[:4] == 3).all() and (mask[4:] == 11).all()
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(root / "masks/train/a.png")
    with pytest.raises(DataError, match=r"a\.png: RGB mask has colours not in the spec: \(1,2,3\)"):
        io.read_mask(root / "masks/train/a.png", CAMVID)


def test_truncated_image(synth_dir, tmp_path):
    root = copy_of(synth_dir, tmp_path)
    f = root / "test" / "test_0001.png"
    f.write_bytes(f.read_bytes()[:200])
    assert "test/test_0001.png: unreadable or truncated image" in _bad(root)


# --- patches -----------------------------------------------------------------------


def test_grid_patches_hand_checked():
    from kseg.data.patches import PatchDataset, resize_bilinear, resize_nearest

    # Resizing a 2x2 block of values to 4x4: half-pixel centres give these by hand.
    assert np.allclose(resize_bilinear(np.array([[0.0, 4.0], [8.0, 12.0]])[..., None], (4, 4))[..., 0],
                       [[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]])
    assert np.array_equal(resize_nearest(np.array([[1, 2], [3, 4]]), (4, 4))[1], [1, 1, 2, 2])
    # An 8x8 frame, grid 2x2, patch 4: each 4x4 cell is served unchanged.
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    mask = (np.arange(64) % 11).astype(np.uint8).reshape(8, 8)

    from kseg.data.patches import Frames

    ds = PatchDataset(Frames.from_arrays([image], [mask], CAMVID), CAMVID, batch_size=3, patch=4,
                      grid=(2, 2))
    x, y = ds[0]
    assert x.shape == (3, 4, 4, 3) and x.dtype == np.float32 and y.dtype == np.uint8
    assert np.array_equal(x[1], image[:4, 4:]) and np.array_equal(y[2], mask[4:, :4])
    assert len(ds) == 2 and ds[1][0].shape == (1, 4, 4, 3)


def test_patch_dataset_on_synthetic(synth_dir):
    from kseg.data.patches import PatchDataset

    pairs = open_dataset(synth_dir).splits["train"]
    ds = PatchDataset(pairs, CAMVID, batch_size=5, patch=32, grid=(2, 3))
    assert ds.num_patches == 4 * 6 and len(ds) == 5
    x, y = ds[0]
    assert x.shape == (5, 32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    assert y.shape == (5, 32, 32) and y.dtype == np.uint8 and y.max() <= 11
    crops = PatchDataset(pairs, CAMVID, batch_size=4, patch=48, grid=None, crops_per_image=3)
    assert crops.num_patches == 12 and crops[2][0].shape == (4, 48, 48, 3)


@needs_camvid
def test_camvid_patch_count_and_batch():
    from kseg.data.patches import PatchDataset

    ds = open_dataset(CAMVID_DIR)
    assert len(ds.splits["train"]) == 367 and len(ds.splits["val"]) == 101
    lazy = PatchDataset(ds.splits["train"], ds.spec, grid=(4, 4), patch=128, cache_mb=0)
    assert lazy.num_patches == 5872 and len(lazy) == 367
    x, y = lazy[100]
    assert x.shape == (16, 128, 128, 3) and y.shape == (16, 128, 128) and y.dtype == np.uint8
    assert set(np.unique(y)) <= set(range(12))


def test_frame_cache_budget_keeps_batches(synth_dir):
    from kseg.data.patches import Frames, PatchDataset

    pairs = open_dataset(synth_dir).splits["train"]
    h, w = Frames(pairs[:1], CAMVID).shapes[0]
    frame_mb = h * w * 4 / 2**20
    whole = PatchDataset(pairs, CAMVID, batch_size=4, patch=32, augment=True, shuffle=True, seed=3)
    part = PatchDataset(pairs, CAMVID, batch_size=4, patch=32, augment=True, shuffle=True, seed=3,
                        cache_mb=2.5 * frame_mb)
    assert part.frames.num_cached == 2 and part.frames.nbytes <= 2.5 * frame_mb * 2**20
    assert whole.frames.num_cached == len(pairs)
    for i in (0, len(whole) - 1):  # the same pixels, decoded now or before
        for a, b in zip(whole[i], part[i], strict=True):
            np.testing.assert_array_equal(a, b)


def test_split_patches_80_20(synth_dir):
    from kseg.data.patches import PatchDataset, split_patches

    ds = PatchDataset(open_dataset(synth_dir).splits["train"], CAMVID, batch_size=4, patch=16,
                      grid=(2, 2), augment=True, shuffle=True)
    train, val = split_patches(ds, 0.2, seed=1)
    assert (train.num_patches, val.num_patches) == (13, 3)
    assert sorted(np.concatenate([train.indices, val.indices])) == list(range(16))
    assert val.augment is None and train.augment is not None and train.frames is ds.frames


# --- augmentation --------------------------------------------------------------------


def test_flip_is_exact():
    rng = np.random.default_rng(0)
    image, mask = rng.uniform(0, 255, (5, 7, 3)), rng.integers(0, 11, (5, 7)).astype(np.uint8)
    img, msk = warp(image, mask, affine_matrix(5, 7, flip=True), void=11)
    assert np.allclose(img, image[:, ::-1]) and np.array_equal(msk, mask[:, ::-1])


def test_augmentation_keeps_mask_aligned_with_image():
    # The image encodes its own mask: red = 20 * class + 10. After a random warp, the
    # class read back from red must equal the warped mask on non-void pixels, except
    # where bilinear interpolation mixes two classes at a boundary.
    rng = np.random.default_rng(7)
    mask = np.kron(rng.integers(0, 11, (4, 4)), np.ones((16, 16), int)).astype(np.uint8)  # 64x64
    image = np.stack([20.0 * mask + 10, np.full(mask.shape, 200.0), np.full(mask.shape, 50.0)], -1)
    cfg = AugmentConfig(rotation=30, width_shift=0.2, height_shift=0.2, zoom=0.2)
    voids = 0
    for seed in range(6):
        img, msk = augment_pair(image, mask, np.random.default_rng(seed), cfg, void=11)
        assert msk.dtype == np.uint8 and set(np.unique(msk)) <= set(np.unique(mask)) | {11}
        data = msk != 11
        voids += (~data).sum()
        assert (img[~data] == 0).all() and (img[data, 1] > 100).mean() > 0.99
        decoded = np.rint((img[..., 0] - 10) / 20)
        agree = decoded[data] == msk[data]
        assert agree.mean() > 0.9, agree.mean()
        # Disagreements sit on class boundaries: a neighbour has another class.
        pad = np.pad(msk, 1, mode="edge")
        edge = np.zeros_like(data)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                edge |= pad[dy:dy + 64, dx:dx + 64] != msk
        assert edge[data][~agree].all()
    assert voids > 0  # rotations and shifts did leave empty corners


def test_augmentation_mask_follows_the_source_pixel_exactly():
    # Red and green are the pixel's own x and y; bilinear interpolation of a ramp is
    # exact, so after the warp they say which source point each pixel came from, and
    # the mask must hold the class of the nearest source pixel, everywhere.
    ys, xs = np.mgrid[0:48, 0:64]
    mask = ((xs // 16) + 4 * (ys // 16)).astype(np.uint8) % 11
    image = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.float32)
    cfg = AugmentConfig(rotation=40, width_shift=0.2, height_shift=0.2, zoom=0.3)
    for seed in range(5):
        img, msk = augment_pair(image, mask, np.random.default_rng(seed), cfg, void=11)
        data = msk != 11
        sx, sy = img[..., 0][data], img[..., 1][data]
        clear = (np.abs(sx % 1 - 0.5) > 1e-3) & (np.abs(sy % 1 - 0.5) > 1e-3)  # no rounding ties
        want = mask[np.rint(sy).astype(int), np.rint(sx).astype(int)]
        assert clear.mean() > 0.99 and np.array_equal(msk[data][clear], want[clear])


def test_a_grid_cells_resize_folds_into_its_warp():
    # The study's cells are resized to the patch size and then warped; kseg does both in
    # one interpolation (augment_pair's size). On ramps (red = x, green = y of the cell)
    # bilinear is exact, so one pass must read the same source points as two, and the
    # mask the class of the nearest source pixel.
    ys, xs = np.mgrid[0:30, 0:40]
    mask = ((xs // 8) + 5 * (ys // 8)).astype(np.uint8) % 11
    image = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.float32)
    size, cfg = (48, 64), AugmentConfig(rotation=30, width_shift=0.2, height_shift=0.2, zoom=0.2)
    for seed in range(5):
        img, msk = augment_pair(image, mask, np.random.default_rng(seed), cfg, void=11, size=size)
        ref, ref_msk = augment_pair(io.resize_bilinear(image, size), io.resize_nearest(mask, size),
                                    np.random.default_rng(seed), cfg, void=11)
        assert img.shape == (*size, 3) and msk.shape == size
        assert ((msk == 11) == (ref_msk == 11)).mean() > 0.99
        data = (msk != 11) & (ref_msk != 11)
        sx, sy = img[..., 0][data], img[..., 1][data]
        interior = (sx > 1) & (sx < 38) & (sy > 1) & (sy < 28)  # no clamping at the edges
        assert interior.mean() > 0.5
        assert np.allclose(img[data][interior], ref[data][interior], atol=1e-3)
        clear = (np.abs(sx % 1 - 0.5) > 1e-3) & (np.abs(sy % 1 - 0.5) > 1e-3)
        want = mask[np.rint(sy).astype(int), np.rint(sx).astype(int)]
        assert np.array_equal(msk[data][clear], want[clear])


def test_batches_are_reproducible_across_runs_orders_and_workers(synth_dir):
    from kseg.data.patches import PatchDataset

    pairs = open_dataset(synth_dir).splits["train"]
    kw = dict(batch_size=3, patch=24, grid=(2, 2), augment=True, shuffle=True, seed=5)
    a, b = PatchDataset(pairs, CAMVID, **kw), PatchDataset(pairs, CAMVID, workers=2, **kw)
    a.set_epoch(2)
    b.set_epoch(2)
    serial = [a[i] for i in range(len(a))]
    with ThreadPoolExecutor(2) as pool:  # out of order, two threads
        parallel = list(pool.map(lambda i: b[i], reversed(range(len(b)))))[::-1]
    for (x1, y1), (x2, y2) in zip(serial, parallel, strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    a.set_epoch(3)
    assert not np.array_equal(a[0][0], serial[0][0])  # a new epoch draws new patches
    # Through Keras' own PyDataset runner: workers=1 vs workers=2 (threads).
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    runs = []
    for workers in (1, 2):
        ds = PatchDataset(pairs, CAMVID, workers=workers, use_multiprocessing=False, **kw)
        ds.set_epoch(2)
        adapter = PyDatasetAdapter(ds, shuffle=False)
        adapter.on_epoch_begin()
        runs.append([(x.copy(), y.copy()) for x, y in adapter.get_numpy_iterator()])
        adapter.on_epoch_end()
    for (x1, y1), (x2, y2), (x3, _) in zip(*runs, serial, strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and np.array_equal(x1, x3)


# --- class weights -------------------------------------------------------------------


def test_median_frequency_weights_by_hand(tmp_path):
    from kseg.data.patches import PatchDataset
    from kseg.data.weights import median_frequency_weights

    spec = DatasetSpec("two", ("a", "b"), (), void=11)
    masks = {"A": [[0, 0], [0, 1]], "B": [[1, 1], [11, 11]]}
    pairs = []
    for name, m in masks.items():
        io.write_png(tmp_path / f"{name}.png", np.full((2, 2, 3), 50, np.uint8))
        io.write_png(tmp_path / f"{name}_m.png", np.array(m, np.uint8))
        pairs.append(Pair(tmp_path / f"{name}.png", tmp_path / f"{name}_m.png"))
    # freq(a) = 3 / 4 (only in A); freq(b) = 3 / 8 (in A and B); median = 0.5625.
    w = median_frequency_weights(pairs, spec)
    assert w.dtype == np.float32 and np.allclose(w, [0.75, 1.5])
    x, y, sw = PatchDataset(pairs, spec, batch_size=2, patch=2, grid=(1, 1), class_weights=w)[0]
    assert np.allclose(sw[1], [[1.5, 1.5], [0, 0]]) and sw.dtype == np.float32


# --- whole frames --------------------------------------------------------------------


def _tiny_model(pool=2):
    import keras

    # Pool and upsample give the net a stride of `pool`; the 1x1 conv then returns the
    # (smoothed) RGB values as 3 "logits", so the argmax is the dominant channel.
    inputs = keras.Input((None, None, 3))
    x = keras.layers.AveragePooling2D(pool)(inputs)
    x = keras.layers.UpSampling2D(pool)(x)
    conv = keras.layers.Conv2D(3, 1, use_bias=False)
    model = keras.Model(inputs, conv(x))
    conv.set_weights([np.eye(3, dtype="float32")[None, None]])  # (1, 1, 3, 3) identity
    return model


def test_predict_frames_pads_and_crops():
    from kseg.inference.frames import pad_to_stride, predict_frames

    assert pad_to_stride(np.zeros((9, 11, 3)), 4).shape == (12, 12, 3)
    # 9x11 frame of 3 vertical colour bands, each a multiple of 2 wide except the last.
    image = np.zeros((9, 11, 3), np.uint8)
    image[:, :4, 0], image[:, 4:8, 1], image[:, 8:, 2] = 200, 200, 200
    model = _tiny_model(2)
    for mode in ("reflect", "zero"):
        out = predict_frames(model, [image, image], stride=2, batch_size=2, pad_mode=mode)
        assert out.shape == (2, 9, 11) and out.dtype == np.uint8
        assert (out[:, :, :4] == 0).all() and (out[:, :, 4:8] == 1).all() and (out[:, :, 8:] == 2).all()


def test_predicting_frames_does_not_keep_the_model_alive():
    # kseg eval --all loads one model after the other; a cached graph must not pin them.
    import gc
    import weakref

    from kseg.inference.frames import predict_frames

    model = _tiny_model(2)
    predict_frames(model, np.zeros((1, 4, 4, 3), np.uint8), stride=2)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_predict_patch_grid_stitches_cells():
    from kseg.inference.frames import predict_patch_grid

    # 4 cells, each one colour: the stitched label map is the cell's dominant channel.
    image = np.zeros((12, 16, 3), np.uint8)
    image[:6, :8, 0] = image[:6, 8:, 1] = image[6:, :8, 2] = 200
    image[6:, 8:, 0] = 200
    out = predict_patch_grid(_tiny_model(2), image[None], grid=(2, 2), patch=8)
    expected = np.zeros((12, 16), np.uint8)
    expected[:6, 8:], expected[6:, :8] = 1, 2
    assert out.shape == (1, 12, 16) and np.array_equal(out[0], expected)


# --- CLI -----------------------------------------------------------------------------


def test_cli_check_and_synth(synth_dir, tmp_path, monkeypatch):
    from kseg.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["data", "check", str(synth_dir)])
    assert res.exit_code == 0, res.output
    assert "Pedestrian" in res.output and "train" in res.output
    res = runner.invoke(main, ["data", "check", str(synth_dir), "--json"])
    summary = json.loads(res.output)
    assert {s: d["pairs"] for s, d in summary["splits"].items()} == {"train": 4, "val": 2, "test": 2}
    assert abs(sum(summary["splits"]["train"]["frequency"]) - 1) < 1e-9
    broken = copy_of(synth_dir, tmp_path)
    (broken / "valannot" / "val_0001.png").write_bytes(b"not a png")
    res = runner.invoke(main, ["data", "check", str(broken)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "valannot/val_0001.png: not an image file" in res.output
    res = runner.invoke(main, ["data", "synth", str(tmp_path / "s"), "--train", "2", "--val", "1",
                               "--test", "0", "--size", "48x64"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name != MANIFEST) == [
        "kseg.json", "train", "train.txt", "trainannot", "val", "val.txt", "valannot"]
    monkeypatch.setenv("KSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(synth, "DEFAULT_SIZE", SMALL)
    monkeypatch.setattr(synth, "DEFAULT_COUNTS", {"train": 2, "val": 1, "test": 1})
    res = runner.invoke(main, ["data", "check"])
    assert res.exit_code == 0 and "synthetic" in res.output
