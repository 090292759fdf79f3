"""The end of every run, whatever its backend: results in input order, the final event, the report, the exit code."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from costserve.errors import ResultsFileError, RunStopped
from costserve.notices import say, warn
from costserve.report.files import write_run_report
from costserve.store.results import outputs_in_order
from costserve.store.runs import RunStore


def write_results_file(results: sqlite3.Connection, out: Path) -> tuple[int, int]:
    """Every result line in input order to `out` (mode 0600); returns (lines written, lines with an error).

    The lines stream into a temporary file beside `out`, which is flushed to disk and then renamed
    over `out`: a full disk or a crash midway leaves the previous file whole, never a truncated
    one. Raises ResultsFileError (one line) when the file cannot be written; the results stay in
    the run store either way.
    """
    written = failed = 0
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            for output in outputs_in_order(results):
                failed += json.loads(output)["error"] is not None
                written += 1
                f.write(output + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ResultsFileError(f"{out}: cannot write the results: {exc.strerror or exc}") from None
    return written, failed


def finish_run(store: RunStore, results: sqlite3.Connection, out: Path, total: int, stopped: str | None,
               resumable: bool = False) -> int:
    """Write the results file and the report, record how the run ended; exit code 0, or 1 when some jobs failed.

    Raises RunStopped (exit 2, with how to continue) when the run stopped before every job had a result.
    """
    try:
        written, failed = write_results_file(results, out)
    except ResultsFileError as exc:
        store.event("stopped", str(exc))
        raise ResultsFileError(f"run {store.id}: {exc}; every result is kept in the run store: "
                               f"`costserve results {store.id} --out FILE` writes them") from None
    store.event("finished" if stopped is None else "stopped", str(out) if stopped is None else stopped)
    try:
        say(f"report: {write_run_report(store)}")
    except OSError as exc:
        warn(f"run {store.id}: the report was not written ({exc.strerror or exc}); `costserve report {store.id}` "
             "writes it later")
    if stopped is not None:
        more = " --budget MORE" if stopped.startswith("stopped at its budget") else ""
        hint = f"; `costserve resume {store.id}{more}` continues it" if resumable else ""
        raise RunStopped(f"run {store.id} {stopped}: {written}/{total} results kept in {out}{hint}")
    say(f"run {store.id}: {total} results -> {out}" + (f" ({failed} failed)" if failed else ""))
    return 1 if failed else 0
