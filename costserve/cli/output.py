"""Terminal output helpers shared by the CLI commands: rich tables from DataFrames, one-line errors."""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console() if Console().is_terminal else Console(width=160)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `costserve: <message>` on stderr (no traceback, no markup) and exit with `code`."""
    err_console.print(f"costserve: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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


def frame_table(df: "pd.DataFrame", title: str | None = None, index_name: str | None = None) -> Table:
    """A rich Table with one column per DataFrame column (and the index first when named)."""
    table = Table(title=title, title_justify="left")
    if index_name is not None:
        table.add_column(index_name, style="bold")
    for column in df.columns:
        numeric = df[column].dtype.kind in "iuf"
        table.add_column(str(column), justify="right" if numeric else "left")
    for index, *values in df.itertuples(name=None):  # itertuples keeps each column's type
        cells = ["" if _missing(v) else _format(v.item() if hasattr(v, "item") else v) for v in values]
        table.add_row(*(([str(index)] if index_name is not None else []) + cells))
    return table


def write_rejected(errors: list, folder: "Path") -> "Path":  # type: ignore[type-arg]
    """`rejected.jsonl` (each rejected line, byte for byte, to fix and resubmit) and `rejected.errors.txt`
    (FILE:LINE: field: problem for each) in `folder`; returns the first."""
    lines = folder / "rejected.jsonl"
    with lines.open("wb") as raw, (folder / "rejected.errors.txt").open("w") as why:
        for error in errors:
            raw.write(error.raw if error.raw.endswith(b"\n") else error.raw + b"\n")
            why.write(f"{error}\n")
    return lines


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def read_valid_jobs(path: "Path", default_max_tokens: int, max_errors: int, keep_rejected: bool = False) -> tuple[list, "BadLinePrinter"]:
    """Every valid job of a job file, in file order, with the printer that reported the bad lines (one line each).

    With `keep_rejected`, the printer also keeps every rejected line's LineError (`.rejected`).
    An unreadable file ends the command with its one-line error.
    """
    from costserve.jobs.reader import JobFileError, valid_jobs

    bad = BadLinePrinter(err_console, max_errors, keep_rejected)
    try:
        return list(valid_jobs(path, default_max_tokens, bad)), bad
    except JobFileError as exc:
        fail(str(exc))
