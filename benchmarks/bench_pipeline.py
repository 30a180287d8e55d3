"""`make bench-pipeline`: does the patch pipeline's throughput grow with the cores?

One epoch of CamVid's training patches at the study's settings (128 px patches, a 4x4
grid, batch 16, augmentation on), built by 1 and 2 worker processes (`kseg fit
--worker-kind process`) and, for comparison, by 1 and 2 of Keras' loader threads (the
old path); host CPU per patch (this process and the workers); the patches/s of a
16-core host projected from them (kseg.bench.pipeline.project states the assumption).
Then the machine's own ceiling for that scaling: 1 and 2 independent processes, each
building batches with the same code from frames of its own (no pool, no shared memory,
nothing copied out), alternated 1 2 1 2. Writes the JSON; the last line printed is
`pipeline 1->2 workers: N.NNx` (processes).

    python benchmarks/bench_pipeline.py [--data DIR] [--json PATH]

DIR defaults to $KSEG_CAMVID or ../shared/camvid, else the synthetic scenes (said so).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_JSON = Path(__file__).resolve().parent / "runs" / "pipeline.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (default: $KSEG_CAMVID or ../shared/camvid)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write (default: {DEFAULT_JSON})")
    parser.add_argument("--ceiling-batches", type=int, default=120,
                        help="batches each independent process builds (default 120)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from kseg.bench.pipeline import independent_scaling, measure_pipeline
    from kseg.bench.suite import default_data
    from kseg.data.synth import default_dataset_dir

    root = args.data or default_data()
    if root is None:
        root = default_dataset_dir()
        print("note: no CamVid at $KSEG_CAMVID or ../shared/camvid; measuring the synthetic scenes",
              flush=True)
    start = time.perf_counter()
    result = measure_pipeline(root, workers=(1, 2), processes=(1, 2))
    result["independent"] = independent_scaling(root, batches=args.ceiling_batches)
    result.update(cpus=os.cpu_count(), python=sys.version.split()[0],
                  wall_seconds=round(time.perf_counter() - start, 1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    for line in summary(result):
        print(line)
    print(f"wrote {args.json}")
    print(f"pipeline 1->2 workers: {result['processes']['scaling_1_to_2']:.2f}x")


def summary(result):
    """Lines for the terminal: patches/s and CPU per patch per path and count."""
    processes = result["processes"]
    lines = [f"{result['root']}: {result['frames']} frames, {result['patches']} patches an epoch, "
             f"{os.cpu_count()} CPUs"]
    for count, rate in result["by_workers"].items():
        cpu = 1000 * result["cpu_seconds"][count] / result["patches"]
        lines.append(f"  {count} thread(s):  {rate:8.1f} patches/s  {cpu:6.3f} host CPU-ms per patch")
    for count, run in processes["by_workers"].items():
        lines.append(f"  {count} process(es): {run['patches_per_second']:8.1f} patches/s  "
                     f"{run['host_cpu_ms_per_patch']} host CPU-ms per patch "
                     f"(parent {run['parent_cpu_ms_per_batch']} ms per batch)")
    ceiling = result["independent"]
    lines.append(f"  independent processes, no pool: 1 -> 2 {ceiling['scaling_1_to_2']:.2f}x "
                 f"(runs: {ceiling['runs']}); the pool reaches "
                 f"{processes['scaling_1_to_2'] / ceiling['scaling_1_to_2']:.0%} of it")
    cores, projected = processes["projected_cores"], processes["projected_patches_per_second"]
    lines.append(f"  threads 1->2: {result['scaling_1_to_2']:.2f}x; projected for {cores} cores: "
                 f"{projected} patches/s")
    return lines


if __name__ == "__main__":
    main()
