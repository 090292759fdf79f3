"""The end of every run, whatever its backend: results in input order, the final event, the report, the exit code."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from costserve.errors import RunStopped
from costserve.report.files import write_run_report
from costserve.store.results import outputs_in_order
from costserve.store.runs import RunStore
from costserve.notices import say


def write_results_file(results: sqlite3.Connection, out: Path) -> tuple[int, int]:
    """Every result line in input order to `out`; returns (lines written, lines with an error)."""
    written = failed = 0
    with out.open("w") as f:
        for output in outputs_in_order(results):
            failed += json.loads(output)["error"] is not None
            written += 1
            f.write(output + "\n")
    return written, failed


def finish_run(store: RunStore, results: sqlite3.Connection, out: Path, total: int, stopped: str | None,
               resumable: bool = False) -> int:
    """Write the results file and the report, record how the run ended; exit code 0, or 1 when some jobs failed.

    Raises RunStopped (exit 2, with how to continue) when the run stopped before every job had a result.
    """
    written, failed = write_results_file(results, out)
    store.event("finished" if stopped is None else "stopped", str(out) if stopped is None else stopped)
    say(f"report: {write_run_report(store)}")
    if stopped is not None:
        more = " --budget MORE" if stopped.startswith("stopped at its budget") else ""
        hint = f"; `costserve resume {store.id}{more}` continues it" if resumable else ""
        raise RunStopped(f"run {store.id} {stopped}: {written}/{total} results kept in {out}{hint}")
    say(f"run {store.id}: {total} results -> {out}" + (f" ({failed} failed)" if failed else ""))
    return 1 if failed else 0
