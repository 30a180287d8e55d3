"""`kseg eval`: score runs on whole splits and print the study's Tables I and II."""

import click

from kseg.cli import options


def _parse_splits(ctx, param, value):
    from kseg.data.readers import SPLITS

    splits = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise click.BadParameter(f"{value!r}: use a comma-separated subset of {','.join(SPLITS)}")
    return list(dict.fromkeys(splits))


@click.command("eval")
@click.argument("runs", nargs=-1)
@click.option("--all", "all_runs", is_flag=True,
              help="Evaluate every run under --runs (also the default when no RUN is named).")
@options.runs_root
@click.option("--splits", default="val,test", show_default=True, callback=_parse_splits,
              help="Comma-separated splits to score: train,val,test.")
@click.option("--full-frame/--patches", "full_frame", default=True,
              help="Whole frames padded to the network stride (default), or the study's patch grid.")
@click.option("--per-class", is_flag=True, help="Also print per-class IoU (one row per class).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of study_tables.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Dataset folder to use instead of the one in each run's config.")
@click.option("--other-classes", is_flag=True,
              help="Score a --data dataset whose classes differ from the run's, with the run's classes.")
@options.inference_options
def evaluate_command(runs, all_runs, runs_root, splits, full_frame, per_class, as_json, data,
                     other_classes, window, overlap, tta):
    """Evaluate RUNs (names under --runs, or paths) and write eval.json/eval.md into each.

    A run that cannot be evaluated (e.g. an unreadable best.keras) is reported in one
    line and the others go on; the exit status is then 1.
    """
    from kseg import api, output
    from kseg.errors import user_error
    from kseg.inference.mode import make_mode
    from kseg.runs import resolve_runs

    say = lambda line: output.err_console.print(line, soft_wrap=True, markup=False)  # noqa: E731
    # Check the mode once, before any run loads (the grid itself is each run's own).
    make_mode(patches=None if full_frame else ((1, 1), 1), window=window, overlap=overlap, tta=tta)
    results, failed = [], []
    for run in resolve_runs(runs, runs_root, all_runs, log=say):
        if not as_json:
            say(f"evaluating {run.name} on {', '.join(splits)} ...")
        try:
            results.append(api.evaluate(run, splits, data=data, patches=not full_frame, log=say,
                                        window=window, overlap=overlap, tta=tta,
                                        other_classes=other_classes))
        except Exception as exc:  # one broken run must not stop the others
            say(f"{run.name}: cannot evaluate: {user_error(exc).format_message()[:1000]}")
            failed.append(run.name)
    _print(results, per_class, as_json, full_frame)
    if failed:
        raise click.ClickException(f"{len(failed)} run(s) not evaluated: {', '.join(failed)}")


def _print(results, per_class, as_json, full_frame):
    from kseg import output
    from kseg.reporting import study_tables

    if as_json:
        output.print_json(results)
        return
    modes = sorted({study_tables.mode_text(r) for r in results})
    mode = "; ".join(modes) or ("patch grid" if not full_frame else "full frames")
    for split in study_tables.result_splits(results):
        output.print_table(f"Table I: {split}", *study_tables.table1(results, split), caption=mode)
        if per_class:
            output.print_table(f"IoU per class: {split}", *study_tables.per_class_table(results, split))
    if results:
        output.print_table("Table II: times", *study_tables.table2(results), digits=2,
                           caption="predict ms/frame: network call only, after one warm-up frame")
