"""Terminal output of the CLI commands: one-line errors and exit codes, rich tables from DataFrames, bad lines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from costserve.cli.terminal import console, err_console, warn
from costserve.units import format_value

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BadLinePrinter", "console", "err_console", "fail", "frame_table", "one_line_errors"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `costserve: <message>` on stderr (no traceback, no markup) and exit with `code`."""
    warn(message)
    raise typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn every named error raised below the CLI into its one-line message and exit code (no traceback)."""
    from costserve.errors import CostserveError

    try:
        yield
    except CostserveError as exc:
        fail(str(exc), code=exc.exit_code)


class BadLinePrinter:
    """Counts rejected lines and prints the first `max_errors` of them, one line each (no markup)."""

    def __init__(self, console: Console, max_errors: int, keep: bool = False) -> None:
        self.console = console
        self.max_errors = max_errors
        self.count = 0
        self.rejected: list[object] | None = [] if keep else None  # every rejected line's error, when kept

    def __call__(self, error: object) -> None:
        self.count += 1
        if self.rejected is not None:
            self.rejected.append(error)
        if self.count <= self.max_errors:
            self.console.print(str(error), markup=False, highlight=False, soft_wrap=True)


# Columns that say which thing a row is: never cut or wrapped (the other columns wrap around them)
IDENTIFYING = frozenset(
    {"offering", "instance", "instance type", "region", "model", "Hugging Face id", "gpu", "run", "run id", "plan"}
    | {"fleet", "task", "name"}
)


MIN_COLUMN = 10  # characters (borders included) below which another column is left out rather than squeezed


def frame_table(df: pd.DataFrame, title: str | None = None, index_name: str | None = None) -> Table:
    """A rich Table with one column per DataFrame column (and the index first when named); the IDENTIFYING columns
    keep their full width however narrow the terminal, and the last other columns are left out (said in the caption)
    when the rest would be narrower than MIN_COLUMN."""
    table = Table(title=title, title_justify="left")
    if index_name is not None:  # the index as the first column, kept whole like the other identifying ones
        df = df.rename_axis(index_name).reset_index()
    df = _fitted(df, table)
    rows = [
        ["" if _missing(v) else format_value(str(c), v) for c, v in zip(df.columns, values)]
        for _, *values in df.itertuples(name=None)  # itertuples keeps each column's type
    ]
    for k, column in enumerate(df.columns):
        numeric = df[column].dtype.kind in "iuf"
        whole = str(column) in IDENTIFYING
        width = max([len(str(column)), *(len(row[k]) for row in rows)]) if whole else None
        table.add_column(str(column), justify="right" if numeric else "left", no_wrap=whole, min_width=width)
    for cells in rows:
        table.add_row(*cells)
    return table


def _fitted(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """`df` without its last non-identifying columns while the rest cannot each get MIN_COLUMN characters."""
    whole = [c for c in df.columns if str(c) in IDENTIFYING]
    fixed = sum(max([len(str(c)), *(len(format_value(str(c), v)) for v in df[c])]) + 3 for c in whole)
    others = [c for c in df.columns if c not in whole]
    dropped = []
    while others and fixed + MIN_COLUMN * len(others) > console.width:
        dropped.append(others.pop())
    if dropped:
        table.caption = f"{len(dropped)} column(s) left out at this width ({', '.join(map(str, reversed(dropped)))}); --json has every one"
    return df.drop(columns=dropped)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


@contextmanager
def json_mode(enabled: bool = True) -> Iterator[None]:
    """`--json`: while open, stdout carries JSON only; every human line (tables, progress, the live view) goes to
    stderr."""
    if not enabled:
        yield
        return
    console.stderr = True  # rich then writes to whatever sys.stderr is at each print
    try:
        yield
    finally:
        console.stderr = False


def emit_json(obj: object) -> None:
    """One JSON document on its own line of stdout, flushed (a script or costserve's Python API reads it)."""
    import json
    import sys

    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
