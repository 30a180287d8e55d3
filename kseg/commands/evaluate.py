"""`kseg eval`: score runs on whole splits and print the study's Tables I and II."""

import click

from kseg.commands import options

SPLIT_CHOICES = ("train", "val", "test")


def _parse_splits(value):
    splits = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLIT_CHOICES]
    if bad or not splits:
        raise click.BadParameter(f"{value!r}: use a comma-separated subset of {','.join(SPLIT_CHOICES)}")
    return list(dict.fromkeys(splits))


@click.command("eval")
@click.argument("runs", nargs=-1)
@click.option(
    "--all",
    "all_runs",
    is_flag=True,
    help="Evaluate every run under --runs (also the default when no RUN is named).",
)
@options.runs_root
@click.option(
    "--splits", default="val,test", show_default=True, help="Comma-separated splits to score: train,val,test."
)
@click.option(
    "--full-frame/--patches",
    "full_frame",
    default=True,
    help="Whole frames padded to the network stride (default), or the study's patch grid.",
)
@click.option("--per-class", is_flag=True, help="Also print per-class IoU (one row per class).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Dataset folder to use instead of the one in each run's config.",
)
def evaluate(runs, all_runs, runs_root, splits, full_frame, per_class, as_json, data):
    """Evaluate RUNs (names under --runs, or paths) and write eval.json/eval.md into each."""
    from kseg import evaluate as ev
    from kseg import output

    splits = _parse_splits(splits)
    say = lambda line: output.err_console.print(line, soft_wrap=True, markup=False)  # noqa: E731
    selected = ev.resolve_runs(runs, runs_root, all_runs, log=say)
    results = []
    for run in selected:
        if not as_json:
            say(f"evaluating {ev.run_name(run)} on {', '.join(splits)} ...")
        result = ev.evaluate_run(
            run,
            splits,
            data=data,
            patches=not full_frame,
            log=say,
        )
        ev.write_eval(run, result)
        results.append(result)
    if as_json:
        output.print_json(ev.clean_json(results))
        return
    mode = "patch grid" if not full_frame else "full frames"
    for split in ev.result_splits(results):
        output.print_table(f"Table I: {split}", *ev.table1(results, split), caption=mode)
        if per_class:
            output.print_table(f"IoU per class: {split}", *ev.per_class_table(results, split))
    output.print_table(
        "Table II: times",
        *ev.table2(results),
        digits=2,
        caption="predict ms/frame: network call only, after one warm-up frame",
    )
