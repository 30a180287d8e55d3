"""kseg's write policy, in one place: it writes only files it created.

- Run folders (`runs/<name>/`) are kseg's own: `kseg fit` makes them, and starts one
  afresh only where no checkpoint of an earlier start is (kseg.training.session).
- Every other folder kseg writes into was named by the user (`predict --out`, `report
  --out`, `export --out`, `data synth DIR`). Such an `OutputFolder` keeps the names of
  the files kseg wrote there in a small manifest, `.kseg-written`; a file that is there
  already and is not in it belongs to the user, and kseg refuses, in one line, to write
  over it. So does an output path that is one of the command's own inputs.
- Each output is claimed before the first is written, so a refusal leaves the folder as
  it was; each is then written atomically (kseg.atomic).

A folder kseg wrote before this manifest existed is the user's to kseg; moving its
files or choosing a new --out resolves the one-line refusal.
"""

import json
import os
from pathlib import Path

from kseg import atomic
from kseg.errors import KsegError

MANIFEST = ".kseg-written"


class OutputFolder:
    """A folder the user gave kseg for its outputs; `inputs` are the command's input files."""

    def __init__(self, path, inputs=(), option="--out"):
        self.path = Path(path)
        self.option = option
        self.inputs = {_real(p) for p in inputs}
        self.written = set(_read_manifest(self.path))

    def owns(self, path):
        """True for a file kseg wrote into this folder (listed in its manifest)."""
        path = Path(path)
        return _real(path.parent) == _real(self.path) and path.name in self.written

    def claim(self, names):
        """Check that kseg may write each of `names` (relative to the folder), then record
        them in the manifest; returns their paths. Nothing is written on a refusal."""
        targets = [self.path / name for name in names]
        for target in targets:
            if _real(target) in self.inputs:
                raise KsegError(f"{target}: is also an input of this command; kseg does not write over "
                                f"its inputs; choose another {self.option}.")
            name = target.relative_to(self.path).as_posix()
            if (target.exists() or target.is_symlink()) and name not in self.written:
                raise KsegError(f"{target}: already exists and kseg did not write it; kseg does not "
                                f"write over files it did not create: move it, or choose another "
                                f"{self.option}.")
        new = {t.relative_to(self.path).as_posix() for t in targets} - self.written
        if new:
            self.path.mkdir(parents=True, exist_ok=True)
            self.written |= new
            atomic.write_json(self.path / MANIFEST, sorted(self.written))
        return targets


def check_empty_or_own(path, option="DIRECTORY"):
    """A folder kseg will fill must be new, empty, or hold only files kseg wrote there
    (its manifest lists them all); anything else is the user's and is refused."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise KsegError(f"{path}: is a file, not a folder; choose another {option}.")
    own = set(_read_manifest(path)) | {MANIFEST}
    theirs = sorted(_relative_files(path) - own)
    if theirs:
        raise KsegError(f"{path}: holds files kseg did not write (e.g. {theirs[0]}); kseg writes only "
                        f"into a new or empty folder or one it filled itself: choose another {option}.")


def _relative_files(root):
    out = set()
    for folder, _, files in os.walk(root):
        out |= {(Path(folder) / f).relative_to(root).as_posix() for f in files}
    return out


def _read_manifest(path):
    try:
        names = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):  # none yet, or damaged: kseg then owns nothing here
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _real(path):
    return os.path.realpath(path)
