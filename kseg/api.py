"""The Python API: `kseg.fit`, `kseg.evaluate`, `kseg.predict`, `kseg.load_run`.

Each CLI verb is a thin wrapper over the function of the same name here, so a
notebook and a terminal run the same code with the same settings and checks.
"""

import os
from pathlib import Path

from kseg.errors import KsegError
from kseg.runs import RunDir, resolve_runs


def fit(arch=None, data=None, *, runs="runs", name=None, resume=False, recipe=None, config=None,
        progress=None, max_steps=None, callbacks=(), dry_run=False, **settings):
    """Train `arch` and return its run (a `kseg.runs.RunDir`: config, history, best model).

    Settings are FitConfig's fields (`epochs=5`, `loss="ce+dice"`, `grid=None` for
    crops ...), over `recipe` (a shipped name such as "camvid", or a JSON file) and
    `config` (a JSON file, e.g. an earlier run's config.json). `max_steps` caps the
    batches of each epoch; `callbacks` are more Keras callbacks, called after kseg's own.
    Progress shows as a live bar in a terminal or notebook. `dry_run=True` returns the
    `kseg.training.plan.FitPlan` instead, having checked everything and written nothing.
    """
    from kseg.training.loop import run_fit
    from kseg.training.recipes import resolve

    check_arguments(flags={"dry_run": dry_run})
    if data is not None:
        settings["data"] = str(data)
    cfg, explicit = resolve(arch, recipe=recipe, config=config, **settings)
    return run_fit(cfg, runs=runs, name=name, resume=resume, explicit=explicit, progress=progress,
                   max_steps=max_steps, callbacks=callbacks, dry_run=dry_run)


def load_run(run, runs="runs"):
    """A run directory by path or by name under `runs`; `.history()`, `.config`,
    `.state`, `.load_model("best")`."""
    if isinstance(run, RunDir):
        return run
    if not isinstance(run, (str, os.PathLike)) or not str(run):
        raise KsegError(f"run must be a run's name, its folder or a RunDir. Received: {run!r:.80}")
    check_arguments(paths={"runs": runs})
    return resolve_runs([str(run)], runs)[0]


def evaluate(run, splits=None, data=None, patches=False, runs="runs", write=True, log=None, *,
             window=None, overlap=0.33, tta=None, mode=None, other_classes=False):
    """Scores of a run's best model on whole splits, as the dict eval.json holds.

    `splits` default to val and test. How frames go through the network: whole frames
    padded to the stride (default); `patches=True` the study's patch grid; `window=512`
    (with `overlap`) sliding windows; `tta="flip,scales=0.75:1:1.25"` test-time
    augmentation; or a ready `mode` (`kseg.inference.mode.InferenceMode`). With
    `write`, eval.json (which records the mode, and keeps the splits scored before in
    that mode) and eval.md go into the run directory. A `data` folder whose classes
    differ from the run's is refused unless `other_classes=True`.
    """
    from kseg.inference.scoring import DEFAULT_SPLITS, evaluate_run, merge_previous, write_eval_json
    from kseg.reporting.study_tables import write_eval_markdown

    splits = check_splits(splits or DEFAULT_SPLITS)
    check_arguments(paths={"data": data, "runs": runs}, flags={"patches": patches, "write": write,
                    "other_classes": other_classes}, functions={"log": log})
    run = load_run(run, runs)
    mode = mode or _mode(run, patches, window, overlap, tta)
    result = evaluate_run(run, splits, data=data, log=log, mode=mode, other_classes=other_classes)
    if write:
        result = merge_previous(run, result)
        write_eval_json(run, result)
        write_eval_markdown(run, result)
    return result


def check_arguments(paths=(), flags=(), functions=()):
    """Arguments of the API functions by kind: `paths` a str or os.PathLike (or None),
    `flags` True or False, `functions` callable (or None); else a KsegError naming one."""
    for name, value in dict(paths).items():
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise KsegError(f"{name} must be a path. Received: {value!r:.80}")
    for name, value in dict(flags).items():
        if not isinstance(value, bool):
            raise KsegError(f"{name} must be True or False. Received: {value!r:.80}")
    for name, value in dict(functions).items():
        if value is not None and not callable(value):
            raise KsegError(f"{name} must be a function. Received: {value!r:.80}")


def check_splits(splits):
    """`splits` as a list of known split names: "val" means ["val"] (not "v", "a", "l"),
    "val,test" both; anything else is a KsegError naming the allowed ones."""
    from kseg.data.readers import SPLITS

    if isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    if not isinstance(splits, (list, tuple)) or not splits:
        raise KsegError(f"splits must be a list of {', '.join(SPLITS)}. Received: {splits!r:.80}")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise KsegError(f"Unknown split {bad[0]!r:.40}; choose among {', '.join(SPLITS)}.")
    return list(dict.fromkeys(splits))


def predict(run, images, out=None, patches=False, runs="runs", on_written=None, *, window=None,
            overlap=0.33, tta=None, mode=None, confidence=False, save_probs=False, threshold=None):
    """Label maps of `images` (paths, folders, globs, or (H, W, 3) arrays).

    The mode arguments are `evaluate`'s. Without `out`, returns a list of uint8 (H, W)
    label maps. With `out`, writes each image's colour mask and overlay there as it
    goes (`confidence`: also `<stem>_confidence.png`; `save_probs`: also float16
    `<stem>_probs.npz`), and returns `[(image, mask_path, overlay_path)]`. `threshold`
    (a two-class or multi-label run): a class where its probability >= threshold, not > 0.5.
    A multi-label run's label maps hold one bit per class (kseg.data.multilabel_masks).
    """
    from kseg.inference import outputs as pr
    from kseg.inference.frames import input_channels, predict_labels

    check_arguments(paths={"out": out, "runs": runs}, flags={"patches": patches, "confidence": confidence,
                    "save_probs": save_probs}, functions={"on_written": on_written})
    run = load_run(run, runs)
    _check_threshold(run, threshold)
    mode = mode or _mode(run, patches, window, overlap, tta)
    model = run.load_model("best")
    if out is None:
        channels = input_channels(model)  # the run's --channels
        arrays = [pr.read_input_image(image, channels=channels) if isinstance(image, (str, Path))
                  else pr.check_input_array(image, channels, f"images[{i}]")
                  for i, image in enumerate(_expand(images))]
        multilabel = run.spec.multilabel
        return [predict_labels(model, image, run.stride, mode, threshold, multilabel) for image in arrays]
    paths = pr.expand_inputs(images, out)
    pr.check_unique_stems(paths)
    return pr.predict_images(model, paths, run.spec, Path(out), run.stride, mode, on_written=on_written,
                             confidence=confidence, probs=save_probs, threshold=threshold)


def _check_threshold(run, threshold):
    if threshold is None:
        return
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise KsegError(f"threshold must be a number between 0 and 1 (exclusive). Received: {threshold!r}")
    if run.spec.num_classes != 2 and not run.spec.multilabel:
        raise KsegError(f"--threshold is for binary and multi-label runs; {run.name} has "
                        f"{run.spec.num_classes} classes, one a pixel: drop --threshold")


def _mode(run, patches, window, overlap, tta):
    from kseg.inference.mode import make_mode

    return make_mode(patches=run.grid() if patches else None, window=window, overlap=overlap, tta=tta)


def _expand(images):
    from kseg.inference.outputs import expand_inputs

    if isinstance(images, (str, Path)) or (hasattr(images, "ndim") and images.ndim in (2, 3)):
        images = [images]  # one path, or one (H, W[, C]) array (not its rows)
    if not isinstance(images, (list, tuple)) and not hasattr(images, "__iter__"):
        raise KsegError(f"predict takes image paths or arrays. Received: {images!r:.80}")
    if all(isinstance(i, (str, Path)) for i in images):
        return expand_inputs(images)
    if any(isinstance(i, (str, Path)) for i in images):
        raise KsegError("predict takes image paths or arrays, not a mix of both.")
    return list(images)
