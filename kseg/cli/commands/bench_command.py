"""`kseg bench`: throughput and memory of each network against this machine's ceiling."""

import click

from kseg import output
from kseg.errors import KsegError


@click.command("bench")
@click.argument("archs", nargs=-1)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write all results to FILE.")
@click.option("--quick", is_flag=True, help="2 timed steps, no precision/XLA variants, a short fit.")
@click.option("--backends", default=None, help="Comma-separated (default: every installed one of "
              "tensorflow, jax, torch).")
@click.option("--no-variants", is_flag=True, help="Skip the XLA, mixed-precision and determinism variants.")
@click.option("--data", type=click.Path(file_okay=False, exists=True),
              help="CamVid root for the pipeline and fit-memory runs (default: $KSEG_CAMVID or "
                   "../shared/camvid, else the synthetic scenes).")
@click.option("--steps", type=int, help="Timed steps per figure (default 5, or 2 with --quick).")
@click.option("--patch", default=128, show_default=True, type=int, help="Patch side (the study's: 128).")
@click.option("--batch-size", default=16, show_default=True, type=int, help="Batch (the study's: 16).")
@click.option("--ceiling-shape", hidden=True, help="B,H,W,C of the ceiling convolution (tests).")
@click.option("--fit-arch", default="unet", show_default=True,
              help="Network of the real `kseg fit` run: epoch time and memory ('' skips it).")
@click.option("--fit-steps", type=click.IntRange(min=0),
              help="Batches per epoch of that fit: 20 by default (4 with --quick), its whole epoch "
                   "projected from them; 0 trains whole epochs.")
@click.option("--table", is_flag=True, help="Only the networks table: parameters, GFLOPs at 360x480, train "
              "patches/s and predict ms per 360x480 frame of ARCHS, in this process (--steps train steps, "
              "default 2).")
@click.option("--peer", "peer_path", type=click.Path(dir_okay=False), default=None,
              help="bench-peer.json of `make bench-peer`, for the target against segmentation_models "
                   "(default: ./bench-peer.json where present).")
def bench_command(archs, json_path, quick, backends, no_variants, data, steps, patch, batch_size,
                  ceiling_shape, fit_arch, fit_steps, table, peer_path):
    """Measure ARCHS (default: all but the keras.applications pairs) at the study's settings."""
    from kseg import atomic, registry
    from kseg.bench import suite as benchsuite
    from kseg.bench.bench_tables import tables
    from kseg.bench.targets import load_peer

    archs = list(archs) or registry.core_models()  # the keras.applications pairs by name only
    peer = load_peer(peer_path)  # a bad file fails here, before any measurement
    if json_path:  # the write policy (kseg.writes), before minutes of measurement
        from pathlib import Path

        from kseg.writes import OutputFolder

        OutputFolder(Path(json_path).parent, [peer_path] if peer_path else [], "--json").claim(
            [Path(json_path).name])
    if table:
        return _networks_table(archs, 2 if steps is None else steps, json_path)
    # Unknown names fail here, with the known ones. Models registered by a module that is
    # not an entry point (a test's tiny model) are imported again in each worker.
    modules = {registry.get_entry(a).builder.__module__ for a in archs}
    plugins = sorted(m for m in modules if m not in registry.BUILTIN_MODULES)
    chosen = backends.split(",") if backends else benchsuite.available_backends()
    unknown = sorted(set(chosen) - set(benchsuite.BACKENDS))
    if unknown:
        known = ", ".join(benchsuite.BACKENDS)
        raise KsegError(f"Unknown backend(s) {', '.join(unknown)}; choose from {known}.")
    data = data or benchsuite.default_data()
    jobs = benchsuite.plan(archs, quick=quick, backends=chosen, variants=not no_variants, data=data,
                           steps=steps, patch=patch, batch_size=batch_size, fit_arch=fit_arch or None,
                           plugins=plugins, ceiling_shape=_shape(ceiling_shape), fit_steps=fit_steps)
    progress = lambda text: output.err_console.print(text, highlight=False)  # noqa: E731
    results = benchsuite.run_suite(jobs, progress=progress, peer=peer)
    for title, columns, rows in tables(results):
        output.print_table(title, columns, rows, digits=2)
    if json_path:
        atomic.write_json(json_path, results)
        output.err_console.print(f"Wrote {json_path}.", highlight=False)


def _networks_table(archs, steps, json_path):
    from kseg import atomic, registry
    from kseg.bench.models_table import COLUMNS, measure, table_rows

    for arch in archs:
        registry.get_entry(arch)  # unknown names fail before any measurement
    rows = []
    for arch in archs:
        rows.append(measure(arch, train_steps=steps))
        output.err_console.print(f"{arch}: measured", highlight=False)
    output.print_table("Networks (float32, short runs)", COLUMNS, table_rows(rows), digits=3)
    if json_path:
        atomic.write_json(json_path, rows)


def _shape(text):
    return [int(v) for v in text.split(",")] if text else None
