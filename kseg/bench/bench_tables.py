"""`kseg bench`'s results as tables: `[(title, columns, rows)]` for Rich or Markdown."""


def tables(results):
    """`[(title, columns, rows)]` for Rich or Markdown."""
    runs = results["runs"]
    ok = [r for r in runs if "error" not in r["result"]]
    out = []
    rows = [(r["label"], r["result"]["gflops"], r["result"]["seconds_per_step"]) for r in ok
            if r["section"] == "ceiling"]
    out.append(("Ceiling: 3x3 conv train step, 16x32x32x128 (3 x 2*B*H*W*C*C*9 FLOPs)",
                ["backend", "GFLOP/s", "s/step"], rows))
    rows = []
    for r in ok:
        if r["section"] == "network":
            n = r["result"]
            rows.append((n["arch"], n["flops_per_patch"] / 1e9, n["train_patches_per_s"], _pct(n, "train"),
                         _pct(n, "train", "_local"), n["predict_patches_per_s"], _pct(n, "predict"),
                         _pct(n, "predict", "_local"), n.get("frame_fps"), n.get("grid_fps"),
                         n.get("frame_speedup"), n["peak_rss_mb"]))
    out.append(("Networks (TensorFlow, float32; 128x128 patches, batch 16; frames 360x480)",
                ["network", "GFLOP/patch", "train patch/s", "train % ceil", "train % paired",
                 "predict patch/s", "predict % ceil", "predict % paired", "frame/s", "grid frame/s",
                 "frame speedup", "peak MB"],
                rows))
    rows = [(r["label"], r["backend"], r["result"]["train_patches_per_s"], _pct(r["result"], "train"),
             _pct(r["result"], "train", "_local"), r["result"]["predict_patches_per_s"],
             _pct(r["result"], "predict"), _pct(r["result"], "predict", "_local"), r["result"]["peak_rss_mb"])
            for r in ok if r["section"] == "variant"]
    if rows:
        out.append(("Backends, precision and XLA (train and predict only)",
                    ["network", "backend / variant", "train patch/s", "train % ceil", "train % paired",
                     "predict patch/s", "predict % ceil", "predict % paired", "peak MB"], rows))
    out += _pipeline_and_fit(ok)
    rows = [(r["label"], r["result"]["numpy_fps"], r["result"]["keras_fps"], r["result"]["agree"]) for r in ok
            if r["section"] == "confusion"]
    if rows:
        out.append(("Confusion matrix of full frames (numpy for eval, Keras metric for training logs)",
                    ["frames", "numpy frames/s", "keras frames/s", "same matrix"], rows))
    rows = [(t["target"], f"{t['op']} {t['goal']:g}", t["measured"], t["status"], t.get("note", ""))
            for t in results["targets"]]
    out.append(("Targets", ["target", "goal", "measured", "status", "from"], rows))
    errors = [(r["section"], r["label"], r["backend"], r["result"]["error"])
              for r in runs if "error" in r["result"]]
    errors += [("frames", r["label"], r["backend"], r["result"]["frames_error"])
               for r in ok if "frames_error" in r["result"]]
    if errors:
        out.append(("Failed measurements", ["section", "label", "backend", "error"], errors))
    return out


def _pipeline_and_fit(ok):
    """The data pipeline by loader workers, and the real `kseg fit` against its bare steps."""
    get = lambda section, *keys: [tuple(r["result"].get(k) for k in keys) for r in ok  # noqa: E731
                                  if r["section"] == section]
    rows = [(*row, *_processes(r)) for row, r in zip(
        get("pipeline", "dataset", "frames", "workers", "patches_per_second", "per_core_patches_per_second",
            "scaling_1_to_2", "peak_rss_mb"), [r for r in ok if r["section"] == "pipeline"], strict=True)]
    out = [("Data pipeline: one epoch at `kseg fit --workers auto`, at 1 thread (about one core), 2 "
            "threads over 1, 2 worker processes over 1, and the patches/s projected for a 16-core host",
            ["dataset", "frames", "workers", "patches/s", "patches/s per core", "1 -> 2 threads", "peak MB",
             "1 -> 2 processes", "16 cores patches/s"], rows)]
    rows = get("fit", "arch", "dataset", "workers", "steps", "val_steps", "epoch_seconds", "bare_seconds",
               "epoch_over_bare", "fixed_seconds", "step_over_bare", "study_epoch_seconds", "study_over_bare",
               "study_hours", "fused_norm_speedup", "peak_rss_mb")
    if rows:
        out.append(("`kseg fit`: epoch 2 of a 2-epoch run capped at `steps` batches (whole with "
                    "--fit-steps 0), against the same model's bare steps; a whole epoch projected from "
                    "its steps and its fixed seconds",
                    ["network", "dataset", "workers", "steps", "val steps", "epoch s", "bare steps s",
                     "epoch / bare", "fixed s", "step / bare", "whole epoch s", "whole / bare",
                     "20 epochs h", "fused BN x", "peak MB"], rows))
    return out


def _processes(run):
    """(1 -> 2 processes, projected patches/s) of a pipeline run (None where not measured)."""
    processes = run["result"].get("processes") or {}
    return processes.get("scaling_1_to_2"), processes.get("projected_patches_per_second")


def _pct(result, kind, which=""):
    # "% ceil": of the machine's best ceiling run; "% paired": of the same process's
    # ceiling steps interleaved with the network's (see kseg.bench.paired_ratio).
    value = result.get(f"{kind}_of{which}_ceiling")
    return None if value is None else 100 * value
