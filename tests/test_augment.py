"""Scale-jittered random crops and photometric jitter (kseg.data.crops, kseg.data.augment)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kseg.data import io
from kseg.data.augment import LUMA, PhotometricConfig, adjust_colors, draw_photometric
from kseg.data.crops import class_anchor, resample_window
from kseg.data.dataset_spec import CAMVID, DatasetSpec
from kseg.data.patches import Frames, PatchDataset, split_patches

VOID = CAMVID.void  # 11


def _random_frames(shapes, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(1, 256, (*s, 3), dtype=np.uint8) for s in shapes]  # no 0: 0 is "empty"
    masks = [rng.integers(0, 11, s, dtype=np.uint8) for s in shapes]
    return Frames.from_arrays(images, masks, CAMVID)


def _coordinate_frame(h=200, w=250):
    """Red = x, green = y (a linear ramp: bilinear sampling of it is exact); mask of 10 px tiles."""
    ys, xs = np.mgrid[0:h, 0:w]
    image = np.stack([xs, ys, np.full_like(xs, 7)], -1).astype(np.uint8)
    mask = ((xs // 10) + (ys // 10)) % 11
    return image, mask.astype(np.uint8)


def _batches(ds, order):
    return {i: ds[i] for i in order}


# --- scale jitter --------------------------------------------------------------------


def test_scale_one_is_todays_random_crop_exactly():
    frames = _random_frames([(40, 50), (45, 60), (36, 70)])
    kw = dict(batch_size=4, patch=24, grid=None, crops_per_image=3, shuffle=True, seed=9)
    plain, one = PatchDataset(frames, CAMVID, **kw), PatchDataset(frames, CAMVID, scale=(1, 1), **kw)
    for ds in (plain, one):
        ds.set_epoch(2)
    # Today's crops, replayed by hand: per batch rng (seed, epoch, index), then for each
    # patch y0 = integers(0, h - p + 1), x0 = integers(0, w - p + 1).
    order = plain.order()
    for index in range(len(plain)):
        rng = np.random.default_rng(np.random.SeedSequence([9, 2, index]))
        x, y = one[index]
        assert all(np.array_equal(a, b) for a, b in zip(plain[index], (x, y), strict=True))
        for k, pid in enumerate(order[index * 4:(index + 1) * 4]):
            image, mask = frames[int(pid) // 3]
            y0, x0 = rng.integers(0, mask.shape[0] - 23), rng.integers(0, mask.shape[1] - 23)
            assert np.array_equal(x[k], image[y0:y0 + 24, x0:x0 + 24])
            assert np.array_equal(y[k], mask[y0:y0 + 24, x0:x0 + 24])


def test_resample_window_is_a_resize_of_the_window():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = rng.integers(0, 11, (30, 40), dtype=np.uint8)
    img, msk = resample_window(image, mask, (0, 0, 30, 40), (17, 53), VOID)  # whole frame
    np.testing.assert_allclose(img, io.resize_bilinear(image, (17, 53)), atol=1e-3)
    assert np.array_equal(msk, io.resize_nearest(mask, (17, 53)))
    # A 20x24 window at (3, 5) halved: samples at 3 + 2i + 0.5, inside the window.
    img, msk = resample_window(image, mask, (3, 5, 20, 24), (10, 12), VOID)
    np.testing.assert_allclose(img, io.resize_bilinear(image[3:23, 5:29], (10, 12)), atol=1e-3)
    assert np.array_equal(msk, io.resize_nearest(mask[3:23, 5:29], (10, 12)))


def test_scaled_crops_read_a_window_of_side_patch_over_s():
    image, mask = _coordinate_frame()
    p = 32
    ds = PatchDataset(Frames.from_arrays([image], [mask], CAMVID), CAMVID, batch_size=40,
                      patch=p, grid=None, crops_per_image=40, scale=(0.5, 2.0), seed=3)
    xs, ys = ds[0]
    scales = []
    for img, msk in zip(xs, ys, strict=True):
        red, green = img[..., 0], img[..., 1]
        # Window side from the ramp's slope away from the borders (where clamping to the
        # frame can flatten it), then the whole patch must be that ramp.
        step = (red[p // 2, -2] - red[p // 2, 1]) / (p - 3)
        assert abs((green[-2, p // 2] - green[1, p // 2]) / (p - 3) - step) < 1e-3  # square
        scales.append(1 / step)  # s = patch / window side = 1 / (source pixels per pixel)
        x0, y0 = red[p // 2, 1] - step, green[1, p // 2] - step  # sample 0's source
        want_x = np.clip(x0 + np.arange(p) * step, 0, image.shape[1] - 1)
        want_y = np.clip(y0 + np.arange(p) * step, 0, image.shape[0] - 1)
        np.testing.assert_allclose(red, np.broadcast_to(want_x, (p, p)), atol=2e-3)
        np.testing.assert_allclose(green, np.broadcast_to(want_y[:, None], (p, p)), atol=2e-3)
        # The mask holds the class of the nearest source pixel (ties at .5 left out).
        clear = (np.abs(red % 1 - 0.5) > 1e-2) & (np.abs(green % 1 - 0.5) > 1e-2)
        want = mask[np.floor(green + 0.5).astype(int), np.floor(red + 0.5).astype(int)]
        assert clear.mean() > 0.8 and np.array_equal(msk[clear], want[clear])
    assert 0.5 - 1e-3 <= min(scales) < 0.75 and 1.4 < max(scales) <= 2 + 1e-3


def test_zoomed_out_crop_is_void_and_zero_where_the_frame_ends():
    frames = _random_frames([(30, 40)] * 2)
    ds = PatchDataset(frames, CAMVID, batch_size=12, patch=64, grid=None, crops_per_image=6,
                      scale=(0.25, 0.5), seed=1)
    x, y = ds[0]
    corners = set()
    for img, msk in zip(x, y, strict=True):
        data = msk != VOID
        rows, cols = data.any(1), data.any(0)
        assert np.array_equal(data, rows[:, None] & cols[None, :])  # the frame: a rectangle
        assert (img[~data] == 0).all() and (img[data].max(-1) > 0).all()
        s_rows, s_cols = rows.sum() / 30, cols.sum() / 40  # the frame shrunk by s
        assert 0.25 - 0.05 < s_rows < 0.5 + 0.05 and abs(s_rows - s_cols) < 0.05
        corners.add((rows.argmax(), cols.argmax()))
    assert len(corners) > 6  # placed at random, not in a corner
    # With no void value the frame's edge pixels are repeated instead.
    spec = DatasetSpec("novoid", CAMVID.classes, (), void=None)
    x, y = PatchDataset(frames, spec, batch_size=4, patch=64, grid=None, crops_per_image=2,
                        scale=(0.25, 0.5))[0]
    assert (x.max(-1) > 0).all() and y.max() < 11


def test_non_square_patches():
    frames = _random_frames([(40, 50)])
    for kw in (dict(grid=(2, 2)), dict(grid=None), dict(grid=None, scale=(0.5, 2))):
        x, y = PatchDataset(frames, CAMVID, batch_size=4, patch=(16, 24), **kw)[0]
        assert x.shape == (4, 16, 24, 3) and y.shape == (4, 16, 24)
    square = PatchDataset(frames, CAMVID, batch_size=4, patch=16, grid=None, seed=2)
    pair = PatchDataset(frames, CAMVID, batch_size=4, patch=(16, 16), grid=None, seed=2)
    assert square.patch == 16 and np.array_equal(square[0][0], pair[0][0])


def test_scale_arguments_are_checked():
    frames = _random_frames([(40, 50)])
    with pytest.raises(ValueError, match=r"0 < lo <= hi.*scale=\(2, 1\)"):
        PatchDataset(frames, CAMVID, grid=None, scale=(2, 1))
    with pytest.raises(ValueError, match="scale=1.5"):
        PatchDataset(frames, CAMVID, grid=None, scale=1.5)
    with pytest.raises(ValueError, match="random crops"):
        PatchDataset(frames, CAMVID, grid=(2, 2), scale=(0.5, 2))
    assert PatchDataset(frames, CAMVID, grid=(2, 2), scale=(1, 1)).scale is None
    with pytest.raises(ValueError, match="patch"):
        PatchDataset(frames, CAMVID, patch=(16, 0))


# --- class-uniform crops -------------------------------------------------------------


def _rare_blob_frames(n=3, h=120, w=160):
    """Left half class 0, right half class 1, one 3x3 blob of class 2 (0.05 % of pixels)."""
    masks = []
    for _ in range(n):
        m = np.zeros((h, w), np.uint8)
        m[:, w // 2:] = 1
        m[10:13, 20:23] = 2
        masks.append(m)
    images = [np.full((h, w, 3), 9, np.uint8) for _ in range(n)]
    return Frames.from_arrays(images, masks, CAMVID)


def test_class_anchor_is_a_pixel_of_each_present_class_alike():
    mask = np.full((30, 40), VOID, np.uint8)
    mask[5, 7], mask[20:30, :] = 2, 4
    rng = np.random.default_rng(0)
    anchors = [class_anchor(mask, rng, CAMVID.num_classes) for _ in range(400)]
    labels = np.array([mask[a] for a in anchors])
    assert set(labels) == {2, 4}  # never void, never an absent class
    assert 0.4 < np.mean(labels == 2) < 0.6  # 1 pixel of 2 against 400 of 4: drawn alike
    assert (5, 7) in anchors
    assert class_anchor(np.full((4, 4), VOID, np.uint8), rng, CAMVID.num_classes) is None


@pytest.mark.parametrize("scale", [None, (0.5, 2.0)])
def test_class_uniform_puts_a_rare_class_in_a_third_of_the_crops(scale):
    """Classes 0, 1, 2 present: with every crop anchored, at least the third anchored on 2
    hold its 3x3 blob (rows and cols 10-12, 20-22); at uniform positions only the starts
    y0 <= 12, x0 <= 22 of 89 x 129 do: 13 * 23 / (89 * 129) = 2.6 %."""
    frames = _rare_blob_frames()
    share = {}
    for fraction in (0.0, 1.0):
        ds = PatchDataset(frames, CAMVID, batch_size=30, patch=32, grid=None, seed=1,
                          crops_per_image=100, scale=scale, class_uniform=fraction)
        crops = np.concatenate([ds[i][1] for i in range(len(ds))])
        share[fraction] = np.mean((crops == 2).any(axis=(1, 2)))
    assert share[1.0] > 0.25 and share[0.0] < 0.15, share


def test_class_uniform_zero_leaves_the_crops_as_they_were():
    frames = _rare_blob_frames()
    kw = dict(batch_size=4, patch=32, grid=None, seed=3, crops_per_image=4, scale=(0.5, 2.0))
    plain, zero = PatchDataset(frames, CAMVID, **kw), PatchDataset(frames, CAMVID, class_uniform=0, **kw)
    half = PatchDataset(frames, CAMVID, class_uniform=0.5, **kw)
    assert np.array_equal(plain[1][1], zero[1][1])
    assert np.array_equal(half[1][1], PatchDataset(frames, CAMVID, class_uniform=0.5, **kw)[1][1])


def test_class_uniform_is_checked():
    frames = _rare_blob_frames(1)
    with pytest.raises(ValueError, match=r"\[0, 1\].*class_uniform=1.5"):
        PatchDataset(frames, CAMVID, grid=None, class_uniform=1.5)
    with pytest.raises(ValueError, match="random crops"):
        PatchDataset(frames, CAMVID, grid=(2, 2), class_uniform=0.5)


# --- photometric ----------------------------------------------------------------------


def test_photometric_formulas_by_hand():
    flat = np.full((2, 4, 4, 3), 100, np.float32)
    # Brightness multiplies (per sample) and clips; contrast leaves a constant image alone.
    assert np.allclose(adjust_colors(flat, brightness=[1.2, 3.0])[:, 0, 0, 0], [120, 255])
    assert np.allclose(adjust_colors(flat, contrast=[0.5, 1.5]), 100)
    # Gamma: 255 (100 / 255) ** 2 = 39.2157; g < 1 brightens.
    assert np.allclose(adjust_colors(flat, gamma=[2.0, 0.5])[:, 0, 0, 0], [39.2157, 159.687], atol=1e-3)
    # Contrast about the mean grey level: 50 and 150 (mean 100) -> 75 and 125 at c = 0.5.
    two = np.full((1, 2, 2, 3), 50, np.float32)
    two[0, 1] = 150
    assert np.allclose(adjust_colors(two, contrast=0.5)[0, :, 0, 0], [75, 125])
    # Empty pixels (0) are left out of the mean and stay 0: mean of the rest is still 100.
    holes = np.concatenate([two, np.zeros((1, 2, 2, 3), np.float32)], axis=1)
    out = adjust_colors(holes, contrast=0.5, brightness=1.1)
    assert np.allclose(out[0, :2, 0, 0], [82.5, 137.5]) and (out[0, 2:] == 0).all()
    # Saturation 0 gives the grey level 0.299 * 200 + 0.587 * 100 = 118.5 in every channel.
    colour = np.zeros((1, 1, 1, 3), np.float32) + [200, 100, 10]
    assert np.allclose(adjust_colors(colour, saturation=0), 0.299 * 200 + 0.587 * 100 + 0.114 * 10)
    # Hue rotates the colour and keeps its grey level (no clipping for this pale colour).
    pale = np.zeros((1, 1, 1, 3), np.float32) + [140, 120, 100]
    turned = adjust_colors(pale, hue=90)[0, 0, 0]
    assert np.abs(turned - pale[0, 0, 0]).max() > 10 and np.isclose(turned @ LUMA, pale[0, 0, 0] @ LUMA)
    assert np.allclose(adjust_colors(pale), pale)  # the defaults are the identity


def test_photometric_draws_stay_in_their_ranges():
    cfg = PhotometricConfig(brightness=0.3, contrast=0.1, saturation=0.5, hue=20, gamma=0.25)
    f = draw_photometric(np.random.default_rng(0), 2000, cfg)
    for name, lo, hi in [("brightness", 0.7, 1.3), ("contrast", 0.9, 1.1), ("saturation", 0.5, 1.5),
                         ("hue", -20, 20), ("gamma", 0.75, 1.25)]:
        assert lo <= f[name].min() < lo + 0.05 * (hi - lo) and hi - 0.05 * (hi - lo) < f[name].max() <= hi
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (8, 8, 8, 3)).astype(np.float32)
    strong = PhotometricConfig(brightness=1, contrast=1, saturation=1, hue=180, gamma=0.9)
    out = adjust_colors(x, **draw_photometric(rng, 8, strong))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255


def test_photometric_config_is_checked():
    assert PhotometricConfig.coerce(True) == PhotometricConfig()
    assert PhotometricConfig.coerce(False) is None and PhotometricConfig.coerce(None) is None
    assert PhotometricConfig.coerce({"hue": 5}).hue == 5
    with pytest.raises(ValueError, match="photometric must be a bool, dict or PhotometricConfig"):
        PhotometricConfig.coerce("yes")
    with pytest.raises(ValueError, match="brightness=1.5"):
        PhotometricConfig(brightness=1.5)
    with pytest.raises(ValueError, match="gamma=1"):
        PhotometricConfig(gamma=1)


def test_photometric_changes_the_image_never_the_mask():
    frames = _random_frames([(40, 50), (36, 44)])
    kw = dict(batch_size=6, patch=24, grid=None, crops_per_image=3, seed=4, augment=True)
    plain = PatchDataset(frames, CAMVID, **kw)
    jitter = PatchDataset(frames, CAMVID, photometric=True, **kw)
    for i in range(len(plain)):
        (x0, y0), (x1, y1) = plain[i], jitter[i]
        assert np.array_equal(y0, y1)  # photometric draws come after the patches' draws
        assert x1.dtype == np.float32 and x1.min() >= 0 and x1.max() <= 255
        per_sample = np.abs(x1 - x0).reshape(len(x0), -1).mean(1)
        assert (per_sample > 0.5).all()
        empty = (x0 == 0).all(-1)  # pixels the warp left empty stay 0
        assert empty.any() and (x1[empty] == 0).all()


# --- the (seed, epoch, index) rule, and what training sees -----------------------------


def test_batches_are_a_function_of_seed_epoch_index():
    frames = _random_frames([(40, 50), (45, 60), (36, 70)])
    kw = dict(batch_size=4, patch=24, grid=None, crops_per_image=3, shuffle=True, seed=5,
              augment=True, scale=(0.5, 2.0), photometric=dict(hue=10))
    a, b, c = (PatchDataset(frames, CAMVID, **kw) for _ in range(3))
    for ds in (a, b, c):
        ds.set_epoch(2)
    forward = _batches(a, range(len(a)))
    backward = _batches(b, reversed(range(len(b))))
    with ThreadPoolExecutor(2) as pool:  # two threads, out of order
        threaded = dict(zip([2, 0, 1], pool.map(lambda i: c[i], [2, 0, 1]), strict=True))
    for i, (x, y) in forward.items():
        assert np.array_equal(x, backward[i][0]) and np.array_equal(y, backward[i][1])
        if i in threaded:
            assert np.array_equal(x, threaded[i][0]) and np.array_equal(y, threaded[i][1])
    a.set_epoch(3)
    assert not np.array_equal(a[0][0], forward[0][0]) and not np.array_equal(a[0][1], forward[0][1])


def test_the_options_change_what_training_sees():
    frames = _random_frames([(40, 50), (45, 60)])
    kw = dict(batch_size=6, patch=24, grid=None, crops_per_image=3, seed=8)
    base = PatchDataset(frames, CAMVID, **kw)[0]
    scaled = PatchDataset(frames, CAMVID, scale=(0.5, 2.0), **kw)[0]
    coloured = PatchDataset(frames, CAMVID, photometric=True, **kw)[0]
    assert not np.array_equal(base[0], scaled[0]) and not np.array_equal(base[1], scaled[1])
    assert not np.array_equal(base[0], coloured[0]) and np.array_equal(base[1], coloured[1])
    grid = dict(kw, grid=(2, 2))
    assert not np.array_equal(PatchDataset(frames, CAMVID, **grid)[0][0],
                              PatchDataset(frames, CAMVID, photometric=True, **grid)[0][0])


def test_split_patches_keeps_jitter_for_training_only():
    frames = _random_frames([(40, 50), (45, 60)])
    ds = PatchDataset(frames, CAMVID, batch_size=4, patch=16, grid=None, crops_per_image=5,
                      scale=(0.5, 2), photometric=True, shuffle=True)
    train, val = split_patches(ds, 0.2, seed=1)
    assert train.scale == (0.5, 2.0) and train.photometric == PhotometricConfig()
    assert val.scale is None and val.photometric is None and val.augment is None


def test_flip_only_config_slices_instead_of_warping():
    """With no rotation, shift or zoom, augment_pair flips exactly like the warp would."""
    from kseg.data.augment import AugmentConfig, augment_pair, warp

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (6, 9, 3)).astype(np.float32)
    mask = rng.integers(0, 5, (6, 9)).astype(np.uint8)
    cfg = AugmentConfig(rotation=0, width_shift=0, height_shift=0, zoom=0, hflip=True)
    flip = np.array([[-1, 0, 8], [0, 1, 0], [0, 0, 1]], np.float64)  # x -> W-1-x
    seen = set()
    for seed in range(8):
        img, msk = augment_pair(image, mask, np.random.default_rng(seed), cfg, void=5)
        flipped = not np.array_equal(msk, mask)
        seen.add(flipped)
        want_img, want_msk = warp(image, mask, flip, 5) if flipped else (image, mask)
        np.testing.assert_allclose(img, want_img, atol=1e-4)
        np.testing.assert_array_equal(msk, want_msk)
    assert seen == {True, False}  # both outcomes occur
