"""`kseg predict`: colour masks and overlays for images, from a run's best model."""

import click

from kseg.cli import options


@click.command("predict")
@click.argument("run")
@click.argument("images", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <stem>_mask.png and <stem>_overlay.png.")
@options.runs_root
@click.option("--patches", is_flag=True, help="Predict with the study's patch grid instead of whole frames.")
@options.inference_options
@click.option("--confidence", is_flag=True,
              help="Also write <stem>_confidence.png: 255 x the top softmax probability.")
@click.option("--save-probs", is_flag=True,
              help="Also write <stem>_probs.npz: float16 (H, W, K) softmax probabilities.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Binary and multi-label runs: a class where its probability >= this (default: > 0.5).")
def predict_command(run, images, out_dir, runs_root, patches, window, overlap, tta, confidence, save_probs,
            threshold):
    """Predict IMAGES (files, folders or globs) with RUN and write colour masks and overlays."""
    from kseg import api, output

    def done(image, mask, over):
        output.console.print(f"{image} -> {mask.name}, {over.name}", soft_wrap=True, markup=False)

    written = api.predict(run, images, out=out_dir, patches=patches, runs=runs_root, on_written=done,
                          window=window, overlap=overlap, tta=tta, confidence=confidence,
                          save_probs=save_probs, threshold=threshold)
    spec = api.load_run(run, runs_root).spec
    per_class = spec.num_classes if spec.multilabel else 0  # <stem>_<class>.png
    files = len(written) * (2 + confidence + save_probs + per_class)
    output.err_console.print(f"wrote {files} files to {out_dir}", soft_wrap=True, markup=False)
