"""The networks table of docs/models.md, one JSON line per network (`kseg bench --table`
prints the same measurements as a table; see kseg.bench.models_table for what is timed).

    python benchmarks/probes/models_table.py [--train-steps 2] [--frames 5] NAME ... > models_table.jsonl

`--frames 0`: sizes only; `--train-steps 0`: no training.
"""

import argparse
import json

from kseg.bench.models_table import measure

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="+")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    for name in args.names:
        print(json.dumps(measure(name, args.train_steps, args.frames)), flush=True)
