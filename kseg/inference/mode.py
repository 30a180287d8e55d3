"""How a frame goes through a network: one small value shared by eval, predict and report.

`InferenceMode` is parsed once, at the edge (the CLI's options or the API's arguments),
and handed to `kseg.inference.frames.frame_logits`, so the three commands cannot drift:

  * `patches=(grid, patch)`: the study's patch grid (cells resized to `patch`, stitched);
  * `window=N`: overlapping N x N tiles (`overlap` of a tile, 0 <= overlap < 1), their
    logits blended with a smooth weight (`kseg.inference.window`);
  * neither: the whole frame padded to the network's stride;
  * `flip`, `scales`: test-time augmentation (`kseg.inference.tta`), logits averaged over
    horizontal flips and image scales; combines with a window (applied per tile).
"""

from dataclasses import dataclass

from kseg.errors import KsegError
from kseg.validation import fits, short


@dataclass(frozen=True)
class InferenceMode:
    """patches (grid, patch) or None; window (pixels) or None; overlap; flip; scales."""

    patches: tuple | None = None
    window: int | None = None
    overlap: float = 0.33
    flip: bool = False
    scales: tuple = (1.0,)
    batch_size: int = 2  # tiles per network call (bounded memory: see kseg.inference.window)

    def __post_init__(self):
        if self.patches is not None:
            grid, patch = self.patches
            object.__setattr__(self, "patches", (tuple(int(g) for g in grid), int(patch)))
        if not isinstance(self.scales, (list, tuple)) or not all(fits(s, float) for s in self.scales):
            raise KsegError(f"TTA scales must be finite numbers. Received: scales={short(self.scales)}")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if self.window is not None and not (fits(self.window, int) and self.window >= 1):
            raise KsegError(f"--window must be a positive number of pixels. "
                            f"Received: window={short(self.window)}")
        if not (fits(self.overlap, float) and 0 <= self.overlap < 1):
            raise KsegError(f"--overlap must be in [0, 1). Received: overlap={short(self.overlap)}")
        if not isinstance(self.flip, bool):
            raise KsegError(f"TTA flip must be true or false. Received: flip={short(self.flip)}")
        if not self.scales or any(not 0.05 <= s <= 8 for s in self.scales):
            raise KsegError(f"TTA scales must lie in [0.05, 8]. Received: scales={self.scales}")
        if self.patches is not None and (self.window is not None or self.tta):
            raise KsegError("--patches (the study's grid) cannot be combined with --window or --tta.")
        if int(self.batch_size) < 1:
            raise KsegError(f"batch_size must be >= 1. Received: batch_size={self.batch_size}")

    @property
    def tta(self):
        """True when logits are averaged over more than one pass."""
        return self.flip or self.scales != (1.0,)

    @property
    def name(self):
        """"patches", "window" or "full-frame": eval.json's `mode`."""
        return "patches" if self.patches else "window" if self.window else "full-frame"

    def describe(self):
        """One line for tables and reports, e.g. "window 512 (overlap 0.33), TTA flip, scales 0.75:1:1.25"."""
        if self.patches:
            (r, c), patch = self.patches
            return f"patch grid {r}x{c} of {patch} px"
        text = f"window {self.window} (overlap {self.overlap:g})" if self.window else "full frames"
        if self.tta:
            parts = (["flip"] if self.flip else []) + [f"scales {':'.join(f'{s:g}' for s in self.scales)}"]
            text += ", TTA " + ", ".join(parts)
        return text

    def to_dict(self):
        """The mode as eval.json records it."""
        return {"mode": self.name, "window": self.window, "overlap": self.overlap,
                "tta_flip": self.flip, "tta_scales": list(self.scales), "describe": self.describe()}


def parse_tta(text):
    """`--tta` text -> (flip, scales): "flip", "scales=0.75:1:1.25", "flip,scales=1:1.5", "" or None."""
    flip, scales = False, (1.0,)
    for part in [p.strip() for p in (text or "").split(",") if p.strip()]:
        if part == "flip":
            flip = True
        elif part.startswith("scales="):
            try:
                scales = tuple(float(v) for v in part[len("scales="):].split(":"))
            except ValueError:
                raise KsegError(f"--tta {text!r}: scales are numbers joined by ':', "
                                f"e.g. scales=0.75:1:1.25") from None
        elif part != "none":
            raise KsegError(f"--tta {text!r}: unknown part {part!r}; use flip and/or scales=A:B:C")
    return flip, scales


def make_mode(patches=None, window=None, overlap=0.33, tta=None, batch_size=2):
    """An InferenceMode from the values users type (`tta` as text, or an (flip, scales) pair)."""
    if tta is None or isinstance(tta, str):
        flip, scales = parse_tta(tta)
    elif isinstance(tta, (list, tuple)) and len(tta) == 2:
        flip, scales = tta
    else:
        raise KsegError(f"tta must be text such as 'flip,scales=0.75:1:1.25'. Received: {short(tta)}")
    return InferenceMode(patches=patches, window=window, overlap=overlap, flip=flip, scales=scales,
                         batch_size=batch_size)
