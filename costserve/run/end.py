"""The end of every run, whatever its backend: results in input order, the final event, the report, the exit code."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from costserve.store.runs import RunStore
from costserve.cli.output import console, fail


def write_results_file(results: sqlite3.Connection, out: Path) -> tuple[int, int]:
    """Every result line in input order to `out`; returns (lines written, lines with an error)."""
    written = failed = 0
    with out.open("w") as f:
        for (output,) in results.execute("SELECT output FROM results ORDER BY line"):
            failed += json.loads(output)["error"] is not None
            written += 1
            f.write(output + "\n")
    return written, failed


def finish_run(store: RunStore, results: sqlite3.Connection, out: Path, total: int, stopped: str | None,
               resumable: bool = False) -> int:
    """Write the results file and the report, record how the run ended; exit code 0, 1 (some jobs failed) or 2 (stopped)."""
    from costserve.cli.report import write_run_report

    written, failed = write_results_file(results, out)
    store.event("finished" if stopped is None else "stopped", str(out) if stopped is None else stopped)
    console.print(f"report: {write_run_report(store)}", markup=False)
    if stopped is not None:
        more = " --budget MORE" if stopped.startswith("stopped at its budget") else ""
        hint = f"; `costserve resume {store.id}{more}` continues it" if resumable else ""
        fail(f"run {store.id} {stopped}: {written}/{total} results kept in {out}{hint}")
    console.print(f"run {store.id}: {total} results -> {out}" + (f" ({failed} failed)" if failed else ""), markup=False)
    return 1 if failed else 0
