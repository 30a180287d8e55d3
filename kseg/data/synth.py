"""The embedded default dataset: synthetic road scenes in the CamVid layout.

Each frame is a street seen from a car: sky and a skyline of buildings with windows, a
road narrowing to a vanishing point with lane dashes, pavements, fences, trees, poles
with signs, cars, pedestrians and bicyclists drawn far to near (so occlusion is right),
and a few void patches (about 1-3 % of pixels). Every object is drawn into the image
and the mask at once, so masks are exact. Textures (window grids, fence slats, paving
lines), smooth colour fields, lighting and sensor noise keep it from being trivially
separable by colour: a network's loss falls over a few epochs, not in one step.

Default: 240x320 frames, 32 train / 8 val / 8 test (about 1 s to generate, ~5 MB),
small enough for `make demo`, big enough for a falling learning curve. Frame i of a
split is drawn from SeedSequence([seed, split, i]), so it never depends on the counts.
"""

import json
from pathlib import Path

import numpy as np

from kseg import atomic
from kseg.data.dataset_spec import CAMVID
from kseg.data.io import resize_bilinear, write_png
from kseg.errors import KsegError

VERSION = 1
DEFAULT_SIZE = (240, 320)
DEFAULT_COUNTS = {"train": 32, "val": 8, "test": 8}
SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PED, BIKE, VOID = range(12)
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
MAX_SIDE, MAX_FRAMES = 8192, 100_000  # a frame of 8192x8192 is 200 MB as float32: enough


def default_dataset_dir():
    """The default synthetic dataset, generated into the cache on first use.

    Cache: $KSEG_CACHE or ~/.cache/kseg. Written to a temporary folder and renamed,
    so a crash or a concurrent first use never leaves a half-written dataset.
    """
    h, w = DEFAULT_SIZE
    c = DEFAULT_COUNTS
    final = atomic.cache_dir() / f"synthetic-v{VERSION}-{h}x{w}-{c['train']}-{c['val']}-{c['test']}-s0"
    return atomic.cached_folder(final, lambda tmp: write_synthetic(tmp, c["train"], c["val"], c["test"],
                                                                   DEFAULT_SIZE, seed=0))


def write_synthetic(root, n_train=32, n_val=8, n_test=8, size=DEFAULT_SIZE, seed=0):
    """Write synthetic scenes in the SegNet layout (train/ trainannot/ ... *.txt, kseg.json).

    `root` must be new, empty or a folder this function filled before (kseg.writes): a
    user's dataset is refused, never mixed with synthetic frames or its kseg.json replaced.
    """
    from kseg.writes import OutputFolder, check_empty_or_own

    root = Path(root)
    h, w = size
    if not (32 <= h <= MAX_SIDE and 32 <= w <= MAX_SIDE):
        raise KsegError(f"--size must be from 32x32 to {MAX_SIDE}x{MAX_SIDE}. Received: {h}x{w}")
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_FRAMES:
            raise KsegError(f"--{split} must be a whole number from 0 to {MAX_FRAMES}. Received: {n!r}")
    check_empty_or_own(root)
    counts = [(split, n) for split, n in (("train", n_train), ("val", n_val), ("test", n_test)) if n > 0]
    names = [f"{split}{sub}/{split}_{i:04d}.png" for split, n in counts for i in range(n)
             for sub in ("", "annot")]
    OutputFolder(root, option="DIRECTORY").claim([*names, *(f"{s}.txt" for s, _ in counts), "kseg.json"])
    for split, n in counts:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], i]))
            image, mask = render_scene(rng, h, w)
            name = f"{split}_{i:04d}.png"
            write_png(root / split / name, image)
            write_png(root / f"{split}annot" / name, mask)
            lines.append(f"{split}/{name} {split}annot/{name}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    (root / "kseg.json").write_text(json.dumps(CAMVID.to_dict() | {"name": "synthetic"}, indent=2))
    return root


class _Canvas:
    """Image (H, W, 3) float32 and mask (H, W) uint8 painted together."""

    def __init__(self, rng, h, w):
        self.rng, self.h, self.w = rng, h, w
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.img = np.zeros((h, w, 3), np.float32)
        self.lab = np.full((h, w), VOID, np.uint8)

    def smooth(self, cells=6, amp=1.0):
        """Low-frequency noise (H, W, 1) in about [-amp, amp]."""
        g = self.rng.uniform(-amp, amp, (cells, cells, 1))
        return resize_bilinear(g, (self.h, self.w))

    def paint(self, region, label, color, noise=8.0):
        """Fill `region` (bool (H, W)) with `color` ((3,) or (H, W, 3)) plus noise."""
        idx = np.flatnonzero(region)
        if idx.size == 0:
            return
        color = np.asarray(color, np.float32)
        values = color.reshape(-1, 3)[idx] if color.ndim == 3 else color
        if noise:
            values = values + self.rng.normal(0, noise, (idx.size, 1)).astype(np.float32)
        self.img.reshape(-1, 3)[idx] = values
        self.lab.reshape(-1)[idx] = label

    def ellipse(self, cx, cy, rx, ry):
        return ((self.xx - cx) / max(rx, 0.5)) ** 2 + ((self.yy - cy) / max(ry, 0.5)) ** 2 <= 1

    def rect(self, x0, y0, x1, y1):
        return (self.xx >= x0) & (self.xx < x1) & (self.yy >= y0) & (self.yy < y1)


def render_scene(rng, h, w):
    """One frame: uint8 image (h, w, 3) and uint8 mask (h, w) of CamVid class indices."""
    c = _Canvas(rng, h, w)
    hy, vx = h * rng.uniform(0.35, 0.5), w * rng.uniform(0.35, 0.65)
    t = np.clip((c.yy - hy) / (h - hy), 0, None)  # 0 at the horizon, 1 at the bottom
    spread_l, spread_r = w * rng.uniform(0.4, 0.8), w * rng.uniform(0.4, 0.8)
    pav_w = w * rng.uniform(0.2, 0.4)
    road_l, road_r = vx - t * spread_l, vx + t * spread_r
    below = c.yy >= hy
    road = below & (c.xx >= road_l) & (c.xx <= road_r)
    pave = below & ~road & (c.xx >= road_l - t * pav_w) & (c.xx <= road_r + t * pav_w)
    geo = dict(hy=hy, vx=vx, spread_l=spread_l, spread_r=spread_r, pav_w=pav_w)

    _sky_and_buildings(c, hy, road | pave)
    _road(c, road, t, vx)
    c.paint(pave, PAVEMENT, np.array([150, 140, 128]) + 15 * c.smooth(5), noise=10)
    tiles = pave & ((c.yy - hy) % np.maximum(3, 40 * t) < 1)  # paving joints
    c.paint(tiles, PAVEMENT, (110, 104, 96), noise=6)
    if rng.random() < 0.6:
        _fence(c, geo)
    objects = []
    for kind, n in (("tree", rng.integers(0, 4)), ("pole", rng.integers(1, 4)),
                    ("car", rng.integers(0, 5)), ("ped", rng.integers(0, 4)),
                    ("bike", rng.integers(0, 3))):
        objects += [(kind, _base(rng, kind)) for _ in range(n)]
    for kind, tb in sorted(objects, key=lambda o: o[1]):  # far (small t) first
        _DRAW[kind](c, geo, tb)
    for _ in range(rng.integers(0, 3)):  # unlabelled clutter: void in image and mask
        x0, y0 = rng.uniform(0, w * 0.9), rng.uniform(0, h * 0.9)
        box = c.rect(x0, y0, x0 + w * rng.uniform(0.03, 0.12), y0 + h * rng.uniform(0.03, 0.1))
        c.paint(box, VOID, rng.uniform(0, 255, 3), noise=25)
    image = c.img * rng.uniform(0.75, 1.15) + rng.normal(0, 4, c.img.shape)
    return np.clip(image, 0, 255).astype(np.uint8), c.lab


def _base(rng, kind):
    lo = {"tree": 0.05, "pole": 0.15, "car": 0.15, "ped": 0.25, "bike": 0.25}[kind]
    return rng.uniform(lo, 1.0)


def _row(geo, h, tb):
    return geo["hy"] + tb * (h - geo["hy"])


def _sky_and_buildings(c, hy, ground):
    rng, h, w = c.rng, c.h, c.w
    grad = (c.yy / max(hy, 1))[..., None]
    sky = np.array([95, 140, 205]) * (1 - grad) + np.array([200, 212, 228]) * grad
    c.paint(np.ones((h, w), bool), SKY, sky + 25 * c.smooth(4), noise=3)
    smooth = c.smooth(6)
    x0 = 0
    while x0 < w:
        x1 = min(w, x0 + int(w * rng.uniform(0.08, 0.3)) + 1)
        yy, xx = c.yy[:, x0:x1], c.xx[:, x0:x1]  # this block's columns only
        top = hy - h * rng.uniform(0.0, 0.4) if rng.random() < 0.85 else hy
        block = np.zeros((h, w), bool)
        block[:, x0:x1] = (yy >= top) & ~ground[:, x0:x1]
        base = rng.choice([(150, 70, 55), (170, 160, 140), (120, 115, 110), (200, 190, 165)])
        c.paint(block, BUILDING, np.array(base) * rng.uniform(0.8, 1.1) + 12 * smooth)
        px, py = rng.uniform(8, 18), rng.uniform(10, 20)
        windows = np.zeros((h, w), bool)
        windows[:, x0:x1] = block[:, x0:x1] & ((xx - x0) % px < px * 0.5) \
            & ((yy - top) % py < py * 0.55) & (yy < hy + 0.05 * h)
        c.paint(windows, BUILDING, rng.uniform(30, 90, 3), noise=6)
        x0 = x1


def _road(c, road, t, vx):
    c.paint(road, ROAD, np.array([98, 96, 100]) + 10 * c.smooth(6), noise=9)
    dash = road & (np.abs(c.xx - vx) < 0.5 + 0.012 * c.w * t) \
        & (np.log1p(25 * t) % 0.7 < 0.35)
    c.paint(dash, ROAD, (225, 225, 215), noise=8)


def _side_x(c, geo, tb, side, outside):
    """An x at depth tb on the road (outside=0), pavement (1) or building side (2)."""
    rng, vx = c.rng, geo["vx"]
    spread = geo["spread_l"] if side < 0 else geo["spread_r"]
    edges = [0, tb * spread, tb * (spread + geo["pav_w"]), tb * (spread + geo["pav_w"]) + c.w * 0.3]
    if outside == 0:
        return vx + side * rng.uniform(0.15, 0.85) * tb * spread
    return vx + side * rng.uniform(edges[outside], edges[outside + 1])


def _tree(c, geo, tb):
    side = c.rng.choice([-1, 1])
    x, yb = _side_x(c, geo, tb, side, 2), _row(geo, c.h, tb)
    r = c.h * 0.3 * max(tb, 0.15) * c.rng.uniform(0.7, 1.2)
    trunk = c.rect(x - r * 0.12, yb - r * 1.3, x + r * 0.12, yb)
    c.paint(trunk, TREE, (90, 65, 40), noise=10)
    crown = c.ellipse(x, yb - r * 1.8, r, r * 0.9) | c.ellipse(x + r * 0.5, yb - r * 1.5, r * 0.7, r * 0.6)
    leaves = np.array([60, 110, 45]) * c.rng.uniform(0.8, 1.2) + 30 * c.smooth(12)
    c.paint(crown, TREE, leaves, noise=20)


def _pole(c, geo, tb):
    side = c.rng.choice([-1, 1])
    x, yb = _side_x(c, geo, tb, side, 1), _row(geo, c.h, tb)
    height, half = c.h * 0.7 * tb, max(1.0, 3 * tb)
    c.paint(c.rect(x - half, yb - height, x + half, yb), POLE, (150, 150, 140), noise=8)
    if c.rng.random() < 0.7:
        s = max(3.0, c.h * 0.07 * tb)
        sign = c.rect(x - s, yb - height - s, x + s, yb - height + s) if c.rng.random() < 0.5 \
            else c.ellipse(x, yb - height, s, s)
        color = c.rng.choice([(200, 30, 30), (30, 60, 190), (230, 230, 230), (230, 190, 30)])
        c.paint(sign, SIGN, color, noise=10)


def _car(c, geo, tb):
    x, yb = _side_x(c, geo, tb, c.rng.choice([-1, 1]), 0), _row(geo, c.h, tb)
    cw = c.w * 0.32 * tb * c.rng.uniform(0.8, 1.1)
    ch = cw * 0.6
    body = c.rect(x - cw / 2, yb - ch * 0.65, x + cw / 2, yb - ch * 0.1)
    cabin = c.rect(x - cw * 0.32, yb - ch, x + cw * 0.32, yb - ch * 0.6)
    color = c.rng.uniform(20, 230, 3)
    c.paint(body, CAR, color, noise=8)
    c.paint(cabin, CAR, color * 0.4 + 40, noise=8)  # windows
    for dx in (-0.32, 0.32):
        c.paint(c.ellipse(x + dx * cw, yb - ch * 0.12, cw * 0.11, ch * 0.14), CAR, (25, 25, 25), noise=5)


def _ped(c, geo, tb):
    x, yb = _side_x(c, geo, tb, c.rng.choice([-1, 1]), 1), _row(geo, c.h, tb)
    ph = c.h * 0.4 * tb
    pw = ph * 0.28
    legs = c.rect(x - pw * 0.4, yb - ph * 0.45, x - pw * 0.05, yb) | \
        c.rect(x + pw * 0.05, yb - ph * 0.45, x + pw * 0.4, yb)
    c.paint(legs, PED, c.rng.uniform(20, 90, 3), noise=8)
    c.paint(c.rect(x - pw / 2, yb - ph * 0.8, x + pw / 2, yb - ph * 0.45), PED,
            c.rng.uniform(30, 220, 3), noise=8)
    c.paint(c.ellipse(x, yb - ph * 0.9, pw * 0.3, ph * 0.1), PED, (200, 160, 130), noise=8)


def _bike(c, geo, tb):
    side = c.rng.choice([-1, 1])
    x = geo["vx"] + side * c.rng.uniform(0.75, 0.95) * tb * (geo["spread_l"] if side < 0 else geo["spread_r"])
    yb, r = _row(geo, c.h, tb), c.h * 0.06 * tb + 1
    wheels = np.zeros((c.h, c.w), bool)
    for dx in (-1.3, 1.3):
        ring = c.ellipse(x + dx * r, yb - r, r, r) & ~c.ellipse(x + dx * r, yb - r, r * 0.7, r * 0.7)
        wheels |= ring
    frame = c.rect(x - r * 1.3, yb - r * 1.2, x + r * 1.3, yb - r * 0.9)
    c.paint(wheels | frame, BIKE, (30, 30, 30), noise=6)
    c.paint(c.rect(x - r * 0.45, yb - r * 3.4, x + r * 0.45, yb - r), BIKE, c.rng.uniform(40, 230, 3))
    c.paint(c.ellipse(x, yb - r * 3.8, r * 0.4, r * 0.45), BIKE, (200, 160, 130), noise=8)


def _fence(c, geo, tb=None):
    """Slatted fence along a pavement's outer edge, between two depths."""
    side = c.rng.choice([-1, 1])
    spread = (geo["spread_l"] if side < 0 else geo["spread_r"]) + geo["pav_w"]
    t_col = side * (c.xx - geo["vx"]) / spread  # depth at which the column meets the edge
    t0, t1 = sorted(c.rng.uniform(0.1, 1.0, 2))
    edge_y = geo["hy"] + t_col * (c.h - geo["hy"])
    height = c.h * 0.18 * t_col
    region = (t_col >= t0) & (t_col <= t1) & (c.yy <= edge_y) & (c.yy >= edge_y - height)
    slats = (c.xx % np.maximum(2, 10 * t_col) < np.maximum(1, 6 * t_col))
    color = np.where(slats[..., None], np.array([130, 100, 70]), np.array([95, 75, 50]))
    c.paint(region, FENCE, color, noise=8)


_DRAW = {"tree": _tree, "pole": _pole, "car": _car, "ped": _ped, "bike": _bike}
