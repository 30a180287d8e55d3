"""The performance targets of `kseg bench`: each one's goal, its measured figure, met or gap.

A target reads the results of the suite's runs (kseg.bench.suite) and, for the one
against segmentation_models, the figures `make bench-peer` writes (benchmarks/peer/bench_peer.py).
A target whose figures were not measured (a run failed, no peer file) says so rather
than passing or failing.
"""

import json
from pathlib import Path

from kseg.errors import KsegError

PEER_FILE = "bench-peer.json"  # what `make bench-peer` writes, read when present
OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def target(name, op, goal, measured, note=None):
    """`{"target", "op", "goal", "measured", "met", "status"}`; status "met", "gap" or
    "not measured" (then met is None)."""
    met = None if measured is None else bool(OPS[op](measured, goal))
    status = {None: "not measured", True: "met", False: "gap"}[met]
    row = {"target": name, "op": op, "goal": goal, "measured": measured, "met": met, "status": status}
    return {**row, "note": note} if note else row


def check(runs, peer=None):
    """Every target's row from the successful `runs` ({"section", "result"}) and `peer`
    (bench-peer.json's figures, or None)."""
    found = lambda section: [r["result"] for r in runs if r["section"] == section]  # noqa: E731
    nets, fit = found("network"), next(iter(found("fit")), None)
    rows = [target(f"training at >= 50% of the conv ceiling ({n['arch']})", ">=", 0.5,
                   n.get("train_of_local_ceiling", n.get("train_of_ceiling"))) for n in nets]
    rows += [target(f"full frame >= 3x faster than the 4x4 patch grid ({n['arch']})", ">=", 3.0,
                    n["frame_speedup"]) for n in nets if "frame_speedup" in n]
    rows.append(_pipeline(next(iter(found("pipeline")), None), nets, fit))
    rows += _fit_rows(fit)
    rows.append(_peer(peer))
    cm = next(iter(found("confusion")), None)
    predict_fps = max((n["frame_fps"] for n in nets if "frame_fps" in n), default=None)
    ratio = cm["numpy_fps"] / predict_fps if cm and predict_fps else None
    # "Far faster": scoring must never be what an evaluation waits for.
    rows.append(target("confusion matrix >= 10x faster than full-frame prediction", ">=", 10.0, ratio))
    return rows


def _pipeline(pipe, nets, fit):
    """Patches/s of the pipeline (at fit's workers) over the bare U-Net train step's: the
    fit run's own step where it trained a U-Net (its precision), else the network run's."""
    if fit and fit["arch"] == "unet":
        step, where = fit["bare_train_patches_per_s"], f"U-Net step at fit's precision, {fit['dataset']}"
    else:
        step = next((n["train_patches_per_s"] for n in nets if n["arch"] == "unet"), None)
        where = "U-Net step, float32"
    ratio = pipe["patches_per_second"] / step if pipe and step else None
    note = f"{pipe['patches_per_second']} patches/s, {pipe['workers']} workers; {where}" if ratio else None
    return target("data pipeline >= 20x the bare U-Net train step", ">=", 20.0, ratio, note)


def _fit_rows(fit):
    """(b) a whole fit epoch against its bare steps, (c) the fit's peak memory, (e) the
    study's hours. (b) and (e) read the whole epoch projected from the capped one
    (kseg.bench.fitrun.whole_epoch_seconds): a capped epoch pays the per-epoch costs of
    a whole one over a twentieth of its steps."""
    arch = f" {fit['arch']}" if fit else ""
    on = f" ({fit['dataset']})" if fit else ""
    get = lambda key: fit.get(key) if fit else None  # noqa: E731
    epoch = (f"whole epoch {fit['study_epoch_seconds']:.1f} s vs {fit['study_bare_seconds']:.1f} s of bare "
             f"steps; capped epoch {fit['epoch_over_bare']:.2f}x its bare steps, of which "
             f"{fit['fixed_seconds']:.2f} s per epoch outside the steps, steps {fit['step_over_bare']:.2f}x"
             ) if get("study_over_bare") is not None else None
    study = (f"20 x {fit['study_epoch_seconds']:.0f} s ({fit['study_train_steps']} train + "
             f"{fit['study_val_steps']} val steps)") if get("study_hours") is not None else None
    return [target(f"kseg fit{arch} epoch within 10% of its bare steps + validation{on}", "<=", 1.10,
                   get("study_over_bare"), epoch),
            target(f"kseg fit{arch} peak memory <= 2 GB{on}", "<=", 2048.0, get("peak_rss_mb")),
            target(f"the study's 20 epochs{arch} in < 1 h{on}", "<", 1.0, get("study_hours"), study)]


def _peer(peer):
    """kseg's U-Net train step over segmentation_models' (the paired ratio where measured:
    steadier on a busy machine, see benchmarks/peer/bench_peer.py)."""
    name = "kseg U-Net trains >= 1.5x faster than segmentation_models"
    if not peer:
        return target(name, ">=", 1.5, None, f"no {PEER_FILE}: run `make bench-peer`")
    paired = peer.get("paired_ratio")
    value = paired if paired is not None else peer.get("ratio")
    note = f"{'paired' if paired is not None else 'unpaired'}, {peer.get('kseg_precision')}; {peer['path']}"
    return target(name, ">=", 1.5, value, note)


def load_peer(path=None):
    """bench-peer.json's figures, with "path"; `path` None: ./bench-peer.json where present."""
    if path is None:
        if not Path(PEER_FILE).is_file():
            return None
        path = PEER_FILE
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise KsegError(f"--peer {path}: not a readable JSON file ({exc}); write it with "
                        f"`make bench-peer`.") from None
    if not isinstance(doc, dict) or not ({"ratio", "paired_ratio"} & set(doc)):
        raise KsegError(f"--peer {path}: no 'ratio' or 'paired_ratio'; is it bench-peer.json from "
                        f"`make bench-peer`?")
    keep = ("ratio", "paired_ratio", "kseg_precision", "peer_precision", "started", "rounds_ok")
    return {"path": str(path), **{k: doc.get(k) for k in keep}}
