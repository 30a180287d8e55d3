"""Fresh Python processes for tests: the environment they start with, and the kseg CLI with
tests/kseg_tiny.py's networks registered. One place, so that every subprocess a test starts
sees the same backend, the same quiet TensorFlow and none of the calling shell's cluster.
"""

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Set in the calling shell, these would make a child join a cluster (TF_CONFIG,
# KERAS_DISTRIBUTION_*) or see other devices (XLA_FLAGS). A test that wants one passes it.
NOT_INHERITED = ("TF_CONFIG", "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID", "XLA_FLAGS")  # fmt: skip


def child_env(backend="tensorflow", **extra):
    """os.environ for a child process: KERAS_BACKEND=`backend`, TensorFlow's C++ logs off,
    tests/ first on PYTHONPATH (for `import kseg_tiny`), NOT_INHERITED dropped; `extra` last."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path)
    env.update(extra)
    return env


def tiny_cli(*args):
    """argv of `kseg ARGS` in a fresh interpreter, with the tiny networks registered."""
    return [sys.executable, "-c", "import kseg_tiny; kseg_tiny.main()", *map(str, args)]


def pool_workers(parent=None):
    """Pids of the children of `parent` (default: this process) running kseg.data.pool_worker
    (read from Linux's /proc)."""
    parent, found = parent or os.getpid(), []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or gone meanwhile
            continue
        if b"kseg.data.pool_worker" in command and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def ended(pid):
    """True once process `pid` has ended (a zombie counts: its parent has not reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
