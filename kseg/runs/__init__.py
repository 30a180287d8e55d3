"""Run directories: what `kseg fit` leaves on disk, and how every other stage finds it.

`RunDir` owns the files of one run (kseg.runs.rundir), `RunState` the commit point
state.json (kseg.runs.state), and `resolve_runs` / `data_root` turn what a user typed
into runs and their datasets (kseg.runs.lookup).
"""

from kseg.runs.lookup import data_root, find_runs, open_split_pairs, resolve_runs
from kseg.runs.rundir import HISTORY_COLUMNS, RunDir
from kseg.runs.state import RunState, timestamp

__all__ = ["HISTORY_COLUMNS", "RunDir", "RunState", "data_root", "find_runs", "open_split_pairs",
           "resolve_runs", "timestamp"]
