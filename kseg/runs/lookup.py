"""From what a user typed to runs and their data: RUN names, paths, `--all`, `--data`."""

from pathlib import Path

from kseg.errors import KsegError
from kseg.runs.rundir import RunDir


def find_runs(root):
    """Every run directory under `root` (those with a state.json), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((RunDir(p) for p in root.iterdir() if (p / "state.json").is_file()), key=lambda r: r.name)


def resolve_runs(names, root, all_runs=False, log=None):
    """RUN arguments (names under `root`, or paths) -> list of RunDir; none given = all.

    With all runs, those without a best.keras yet (training just started) are left out
    with a line to `log`; a named run without one fails when its model is loaded.
    """
    root = Path(root)
    if all_runs or not names:
        runs = find_runs(root)
        for run in runs:
            if not run.best_path.is_file() and log:
                log(f"{run.name}: no best.keras yet, skipped")
        runs = [r for r in runs if r.best_path.is_file()]
        if not runs:
            raise KsegError(f"{root}: no trained runs found; train one with 'kseg fit' or pass --runs DIR")
        return runs
    runs = []
    for name in names:
        path = Path(name)
        if not (path / "config.json").is_file():
            path = root / name
        if not (path / "config.json").is_file():
            raise KsegError(
                f"{name}: no run there (no config.json in {path}); see 'kseg eval --all --runs {root}'"
            )
        runs.append(RunDir(path))
    return runs


def data_root(run, override=None):
    """The dataset folder of a run: `override` (--data) if given, else the run's config."""
    if override is not None:
        return Path(override)
    config = run.config
    for key in ("data_path", "data_root"):
        if config.get(key):
            return Path(config[key])
    data = config.get("data")
    if data in (None, "", "synthetic"):
        from kseg.data.synth import default_dataset_dir

        return Path(default_dataset_dir())
    return Path(data)


def open_split_pairs(run, override=None, other_classes=False):
    """(root, {split: pairs}) for the run's dataset, read with the run's own spec.

    A dataset that names other classes than the run's (its kseg.json, or a named layout)
    is refused unless `other_classes`: its masks would be scored as the run's classes.
    """
    from kseg.data.readers import open_dataset

    root = data_root(run, override)
    if not root.exists():
        raise KsegError(f"{root}: dataset of run {run.name} not found; pass --data DIR")
    dataset = open_dataset(root, spec=run.spec)
    if not other_classes:
        check_same_classes(run, dataset)
    return root, dataset.splits


def check_same_classes(run, dataset):
    """KsegError when `dataset` declares classes that differ from those `run` learnt."""
    from kseg.data import layouts
    from kseg.data.readers import resolve_spec

    if not (dataset.root / "kseg.json").is_file() and dataset.layout not in layouts.LAYOUTS:
        return  # the dataset names no classes of its own: its masks are read as the run's
    own = resolve_spec(dataset.root, dataset.layout, dataset.splits)[0].classes  # (spec, origin)
    mine = run.spec.classes
    if tuple(own) != tuple(mine):
        raise KsegError(f"{dataset.root}: its {len(own)} classes ({_few(own)}) are not the {len(mine)} "
                        f"{run.name} was trained on ({_few(mine)}); its scores would compare unrelated "
                        f"labels. Evaluate on the run's own dataset, or pass --other-classes "
                        f"(other_classes=True) to score it with the run's classes anyway.")


def _few(names, count=4):
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")
