"""`kseg report`: one Markdown (and HTML) page with the study's tables and figures.

Scores come from each run's eval.json. A run that was never evaluated is evaluated
here on the fly (val and test; full frames unless an inference mode is given), and its
eval.json is written, so the report and `kseg eval` never disagree. Given a mode
(`--window`, `--tta`, `--patches`), a run whose eval.json was made another way is
evaluated again in that mode, and the sample panels are predicted in it.
"""

import html
import json
from pathlib import Path

from kseg.errors import KsegError
from kseg.inference import scoring as ev
from kseg.reporting import study_tables
from kseg.runs import open_split_pairs, resolve_runs

SAMPLE_SPLITS = ("test", "val", "train")  # first one present supplies the sample frames


def run_mode(run, inference=None):
    """The InferenceMode of `inference` (dict of patches, window, overlap, tta) for `run`."""
    from kseg.inference.mode import make_mode

    inference = dict(inference or {})
    patches = run.grid() if inference.pop("patches", False) else None
    return make_mode(patches=patches, **inference)


def collect_results(runs, log, inference=None):
    """`(runs, results)`: eval.json of each run; evaluate (and write) those that have none,
    or, when `inference` is given, those evaluated in another mode. A run that cannot be
    evaluated (a truncated best.keras) is left out with a line to `log`, as `kseg eval`
    leaves it out; the others go on."""
    from kseg.errors import user_error

    kept, results = [], []
    for run in runs:
        try:
            results.append(_result(run, log, inference))
        except Exception as exc:  # one broken run must not stop the report of the others
            log(f"{run.name}: cannot evaluate, left out of the report: "
                f"{user_error(exc).format_message()[:300]}")
            continue
        kept.append(run)
    return kept, results


def _result(run, log, inference):
    """The eval.json of one run for the report (see collect_results); a damaged one, a
    file kseg derived from the run, is made again."""
    try:
        result = ev.read_eval(run)
    except KsegError as exc:
        log(f"{run.name}: {exc.message}; evaluating again")
        result = None
    mode = run_mode(run, inference)
    if result is not None and inference and ev.recorded_mode(result) != mode:
        log(f"{run.name}: eval.json is {result['mode']}, evaluating again ({mode.describe()})")
        result = None
    elif result is None:
        log(f"{run.name}: no eval.json, evaluating now "
            f"({mode.describe()}, {', '.join(ev.DEFAULT_SPLITS)})")
    if result is None:
        result = ev.evaluate_run(run, ev.DEFAULT_SPLITS, log=log, mode=mode)
        ev.write_eval_json(run, result)
        study_tables.write_eval_markdown(run, result)
    return result


def curve_figure(runs, fig_dir, log=print):
    """learning_curves.png from each run's history.csv, or None when no run has one. A run
    whose history.csv is damaged is left out of the figure, with a line to `log`."""
    from kseg.reporting.figures import learning_curves

    histories = {}
    for r in runs:
        try:
            histories[r.name] = r.history()
        except KsegError as exc:
            log(f"{r.name}: left out of the learning curves: {exc.message}")
    histories = {k: v for k, v in histories.items() if v}
    if not histories:
        return None
    return learning_curves(histories, fig_dir / "learning_curves.png", title="Learning curves")


def sample_figures(runs, fig_dir, count=3, log=print, inference=None, claim=None):
    """One panel per sample frame, predictions of every run that shares the first run's classes."""
    from kseg.data.io import display_rgb, read_image, read_mask
    from kseg.inference.frames import predict_labels
    from kseg.reporting.figures import sample_panel

    first = runs[0]
    spec = first.spec
    try:
        _, splits = open_split_pairs(first)
    except KsegError as exc:
        log(f"sample figures skipped: {exc.message}")
        return []
    split = next((s for s in SAMPLE_SPLITS if splits.get(s)), None)
    if split is None or count <= 0:
        return []
    pairs = splits[split]
    # Evenly spaced frames, so the panels are not three consecutive video frames.
    picks = sorted({round(i * (len(pairs) - 1) / max(count - 1, 1)) for i in range(min(count, len(pairs)))})
    channels = first.config.get("channels", 3)  # what its images hold (kseg fit --channels)
    same = [r for r in runs
            if tuple(r.spec.classes) == tuple(spec.classes) and r.config.get("channels", 3) == channels]
    models = {}
    for r in same:
        try:
            models[r.name] = (r.load_model("best"), r.stride, run_mode(r, inference))
        except KsegError as exc:  # eval.json was there, but the checkpoint is damaged now
            log(f"{r.name}: left out of the sample figures: {exc.message}")
    paths = []
    for n, i in enumerate(picks, 1):
        pair = pairs[i]
        image, truth = read_image(pair.image, channels), read_mask(pair.mask, spec)
        preds = {name: predict_labels(model, image, stride, mode, multilabel=spec.multilabel)
                 for name, (model, stride, mode) in models.items()}
        image = display_rgb(image)
        path = fig_dir / f"sample_{n}_{Path(pair.image).stem}.png"
        if claim is not None:
            claim(path)
        paths.append(sample_panel(image, truth, preds, spec, path, title=f"{split}: {Path(pair.image).name}"))
    return paths


def _config_rows(run):
    # Every key, as written by kseg fit; the spec (colours of every class) is summarised.
    rows = [[k, _short(v)] for k, v in run.config.items() if k != "spec"]
    spec = run.spec
    rows.append(["spec", f"{spec.name}: {spec.num_classes} classes, void {spec.void}"])
    return rows


def _env_rows(run):
    try:
        env = run.optional_env()
    except KsegError as exc:  # env.json is description only: the report goes on without it
        return [["env.json", exc.message]]
    return [[k, _short(v)] for k, v in env.items()]


def _short(value):
    """A config or env value as table text: strings as they are, the rest as JSON (1e-3, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def build_report(runs_root, out_dir=None, samples=3, log=print, inference=None):
    """Write report.md, report.html and figures/ into out_dir (default <runs>/report).

    `inference`: None (eval.json as it is, whole frames for runs without one and for
    the panels), or a dict of `patches` (bool), `window`, `overlap` and `tta`.
    """
    from kseg.atomic import write_text
    from kseg.writes import OutputFolder

    runs = resolve_runs([], runs_root, all_runs=True, log=log)
    out_dir = Path(out_dir) if out_dir else Path(runs_root) / "report"
    fig_dir = out_dir / "figures"
    # The write policy (kseg.writes): a user's report.md in --out is never replaced.
    folder = OutputFolder(out_dir)
    folder.claim(["report.md", "report.html", "figures/learning_curves.png"])
    fig_dir.mkdir(parents=True, exist_ok=True)
    runs, results = collect_results(runs, log, inference)
    if not runs:
        raise KsegError(f"{runs_root}: no run could be evaluated (see the lines above); nothing to report")
    curves = curve_figure(runs, fig_dir, log)
    claim = lambda path: folder.claim([path.relative_to(out_dir).as_posix()])  # noqa: E731
    panels = sample_figures(runs, fig_dir, samples, log, inference, claim)
    sections = _sections(runs, results, [p for p in [curves, *panels] if p], out_dir)
    write_text(out_dir / "report.md", _to_markdown(sections))
    write_text(out_dir / "report.html", _to_html(sections))
    return out_dir / "report.md"


def _sections(runs, results, figures, out_dir):
    """The report as data: a list of (kind, payload), rendered to Markdown and HTML."""
    s = [
        ("h1", "kseg report"),
        (
            "p",
            "Scores from one confusion matrix per split (void ignored); loss per non-void pixel. "
            "Dice is hard Dice (= F1); soft_dice is on softmax probabilities.",
        ),
    ]
    how = " / ".join(sorted({study_tables.mode_text(r) for r in results}))
    for split in study_tables.result_splits(results):
        s += [("h2", f"Table I: scores on {split} ({how})"),
              ("table", study_tables.table1(results, split), 3)]
    for split in study_tables.result_splits(results):
        s += [("h3", f"Per-class IoU on {split}"),
              ("table", study_tables.per_class_table(results, split), 3)]
    s += [("h2", "Table II: times (seconds; prediction in ms per frame)"),
          ("table", study_tables.table2(results), 2)]
    for r in results:
        for split, reason in r.get("skipped", {}).items():
            s.append(("p", f"{r['run']}: {split}: {reason}, skipped"))
    s.append(("h2", "Figures"))
    for path in figures:
        s.append(("img", Path(path).relative_to(out_dir).as_posix(), Path(path).stem.replace("_", " ")))
    s.append(("h2", "Runs"))
    for run, r in zip(runs, results, strict=True):
        s.append(("h3", run.name))
        s.append(("p", f"Evaluated with {study_tables.mode_text(r)} on `{r['data']}`."))
        s.append(("table", (["config", "value"], _config_rows(run)), 4))
        env = _env_rows(run)
        if env:
            s.append(("table", (["environment", "value"], env), 4))
    return s


def _to_markdown(sections):
    from kseg.output import markdown_table

    out = []
    for kind, *payload in sections:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + payload[0])
        elif kind == "p":
            out.append(payload[0])
        elif kind == "table":
            (columns, rows), digits = payload
            out.append(markdown_table(columns, rows, digits).rstrip())
        elif kind == "img":
            out.append(f"![{payload[1]}]({payload[0]})")
    return "\n\n".join(out) + "\n"


def _to_html(sections):
    from kseg.output import fmt

    body = []
    for kind, *payload in sections:
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{html.escape(str(payload[0]))}</{kind}>")
        elif kind == "table":
            (columns, rows), digits = payload
            head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
            cells = "".join(
                "<tr>" + "".join(f"<td>{html.escape(fmt(v, digits))}</td>" for v in row) + "</tr>"
                for row in rows
            )
            body.append(f"<table><tr>{head}</tr>{cells}</table>")
        elif kind == "img":
            src, alt = (html.escape(p) for p in payload)
            body.append(f'<figure><img src="{src}" alt="{alt}"><figcaption>{alt}</figcaption></figure>')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
        "td{text-align:right}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>kseg report</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
