"""The `kseg` command line: nouns and verbs, one module per verb in kseg/cli/commands."""

from kseg.cli.main import main

__all__ = ["main"]
