"""All Rich output lives here; the rest of kseg returns plain data.

Every table is a title, a list of column names and a list of rows, so the same data
can be printed as JSON or written as Markdown.
"""

import json
import sys

from rich.console import Console
from rich.table import Table

from kseg.atomic import json_default

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fmt(value, digits=3):
    """Numbers to fixed digits, None to an em dash, everything else to str."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title, columns, rows, digits=3, caption=None):
    """Print a Rich table; numeric columns are right-aligned."""
    table = Table(title=title, caption=caption, title_justify="left")
    for i, column in enumerate(columns):
        numeric = any(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(fmt(v, digits) for v in row))
    console.print(table)


def markdown_table(columns, rows, digits=3):
    """The same table as GitHub Markdown."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"


def print_json(data):
    """JSON to stdout, for scripts (`--json`)."""
    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")
