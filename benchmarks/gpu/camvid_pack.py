"""`make camvid-pack`: a SegNet-layout CamVid as one tar under 60 MB, for a machine without internet.

CamVid's PNG frames take 122 MB, too much to travel with the repository to a lent GPU
machine (64 MiB in all). The pack holds the frames as JPEG (quality 95, no chroma
subsampling: CamVid's thin classes, poles and signs, are a few pixels wide), the masks as
the PNG files they were (byte for byte), the pair lists rewritten to the .jpg names and any
other file of the root (palette, kseg.json). kseg reads .jpg frames beside .png masks in
this layout as it reads PNG frames (kseg.data.readers). `pack.json` in the pack records the
source, the JPEG settings and the mean absolute difference of the decoded JPEG frames from
the originals, per split, in 8-bit levels.

    python benchmarks/gpu/camvid_pack.py ../shared/camvid camvid-pack.tar   # packs, prints the size
    python benchmarks/gpu/camvid_pack.py --unpack camvid-pack.tar /tmp/x    # -> /tmp/x/camvid
"""

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # a development tool: kseg from this checkout

from kseg import atomic  # noqa: E402
from kseg.data.readers import SPLITS, open_dataset  # noqa: E402
from kseg.errors import KsegError  # noqa: E402

ROOT_NAME = "camvid"  # the folder the tar holds
MAX_MB = 60.0  # 10^6 bytes
QUALITY = 95


def pack(source, out, quality=QUALITY, max_mb=MAX_MB):
    """Write `out` (a tar) from the SegNet-layout dataset at `source`; returns pack.json's dict.

    Raises KsegError, leaving no file, when the tar would be over `max_mb` MB.
    """
    source = Path(source).expanduser().resolve()
    dataset = open_dataset(source)
    if dataset.layout != "segnet":
        raise KsegError(f"{source}: a {dataset.layout} layout; the pack takes the SegNet/CamVid one "
                        f"(train/ trainannot/ ...)")
    with tempfile.TemporaryDirectory(prefix="camvid-pack-") as tmp:
        root = Path(tmp) / ROOT_NAME
        summary = {"source": str(source), "jpeg_quality": quality, "chroma_subsampling": "4:4:4",
                   "frames": {}, "mean_abs_diff": {}}
        diffs = []
        for split in (s for s in SPLITS if s in dataset.splits):
            split_diffs = _pack_split(dataset.splits[split], root, split, quality)
            summary["frames"][split] = len(split_diffs)
            summary["mean_abs_diff"][split] = round(float(np.mean(split_diffs)), 4)
            diffs += split_diffs
        summary["mean_abs_diff"]["all"] = round(float(np.mean(diffs)), 4)
        for extra in sorted(source.iterdir()):  # palette12.png, kseg.json: anything but splits
            if extra.is_file() and extra.name not in {f"{s}.txt" for s in SPLITS}:
                shutil.copyfile(extra, root / extra.name)
        (root / "pack.json").write_text(json.dumps(summary, indent=2) + "\n")
        with atomic.atomic_path(out) as tmp_tar:
            with tarfile.open(tmp_tar, "w") as tar:
                tar.add(root, arcname=ROOT_NAME)
            summary["bytes"] = tmp_tar.stat().st_size
            if summary["bytes"] > max_mb * 1e6:
                raise KsegError(f"{out}: {summary['bytes'] / 1e6:.1f} MB, over the {max_mb:g} MB limit; "
                                f"lower --quality (now {quality})")
    return summary


def _pack_split(pairs, root, split, quality):
    """JPEG frames into root/<split>/, masks copied into root/<split>annot/, root/<split>.txt;
    the mean absolute difference of each decoded JPEG from its source frame."""
    import imageio.v3 as iio

    from kseg.data import io

    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    lines, diffs = [], []
    for pair in pairs:
        frame = io.read_image(pair.image)  # (H, W, 3) uint8
        jpeg = root / split / f"{pair.image.stem}.jpg"
        iio.imwrite(jpeg, frame, extension=".jpg", quality=quality, subsampling=0)  # Pillow's 4:4:4
        diffs.append(float(np.abs(iio.imread(jpeg).astype(np.int16) - frame).mean()))
        mask = root / f"{split}annot" / pair.mask.name
        shutil.copyfile(pair.mask, mask)
        lines.append(f"{split}/{jpeg.name} {split}annot/{mask.name}\n")
    (root / f"{split}.txt").write_text("".join(lines))
    return diffs


def unpack(tar_path, dest):
    """Extract a pack into `dest`; returns the dataset root, dest/camvid."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        if not names or any(n != ROOT_NAME and not n.startswith(f"{ROOT_NAME}/") for n in names):
            raise KsegError(f"{tar_path}: not a camvid pack (every entry must be under {ROOT_NAME}/)")
        tar.extractall(dest, filter="data")  # no links out of dest, no absolute paths
    return dest / ROOT_NAME


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="SegNet-layout dataset folder, or the pack with --unpack")
    parser.add_argument("out", help="the tar to write, or the folder to unpack into")
    parser.add_argument("--unpack", action="store_true", help="extract SOURCE (a pack) into OUT")
    parser.add_argument("--quality", type=int, default=QUALITY, help="JPEG quality (default 95)")
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help="refuse a pack over this (default 60)")
    args = parser.parse_args(argv)
    try:
        if args.unpack:
            print(unpack(args.source, args.out))
            return 0
        summary = pack(args.source, args.out, args.quality, args.max_mb)
    except (KsegError, OSError) as exc:
        print(f"camvid-pack: {exc}", file=sys.stderr)
        return 1
    frames = ", ".join(f"{n} {s}" for s, n in summary["frames"].items())
    print(f"{args.out}: {summary['bytes'] / 1e6:.1f} MB (limit {args.max_mb:g} MB), frames {frames}; "
          f"JPEG quality {args.quality} 4:4:4, mean absolute difference from the PNG frames "
          f"{summary['mean_abs_diff']['all']:.3f} levels of 255")
    return 0


if __name__ == "__main__":
    sys.exit(main())
