"""The end of every run, whatever its backend: results in input order, the final event, the report, the exit code."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import IO

from costserve.durations import format_duration, format_money
from costserve.errors import ResultsFileError, RunStopped, StopReason
from costserve.notices import say, warn
from costserve.report.data import RunReport, build_report
from costserve.report.files import write_run_report
from costserve.request import errors_path_for
from costserve.run.calibrate import calibrate_from
from costserve.store.results import outputs_in_order
from costserve.store.run_state import Event
from costserve.store.runs import RunStore


def write_results_file(results: sqlite3.Connection, out: Path, errors_out: Path | None = None) -> tuple[int, int]:
    """Every result line in input order: successful requests to `out`, failed ones to `errors_out` (default beside
    `out`), as OpenAI's Batch API splits its output and error files; both mode 0600. With no failed request there is
    no error file (one left by an earlier write of this run is removed). Returns (successful, failed).

    The lines stream into temporary files beside each target, which are flushed to disk and then renamed
    over them: a full disk or a crash midway leaves the previous files whole, never a truncated
    one. Raises ResultsFileError (one line) when a file cannot be written; the results stay in
    the run store either way.
    """
    errors_out = errors_out or errors_path_for(out)
    written = failed = 0
    tmps = [p.with_name(f".{p.name}.{os.getpid()}.partial") for p in (out, errors_out)]
    try:
        with _private(tmps[0]) as good, _private(tmps[1]) as bad:
            for output, is_error in outputs_in_order(results):
                (bad if is_error else good).write(output + "\n")
                failed += is_error
                written += not is_error
            for f in (good, bad):
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmps[0], out)
        if failed:
            os.replace(tmps[1], errors_out)
        else:
            tmps[1].unlink()
            errors_out.unlink(missing_ok=True)
    except OSError as exc:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise ResultsFileError(f"{exc.filename or out}: cannot write the results: {exc.strerror or exc}") from None
    return written, failed


def _private(path: Path) -> IO[str]:
    """`path` opened for writing text, created with mode 0600 (results are the user's data)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")


def finish_run(
    store: RunStore,
    results: sqlite3.Connection,
    out: Path,
    total: int,
    stopped: RunStopped | None,
    resumable: bool = False,
    errors_out: Path | None = None,
) -> int:
    """Write the results file and the report, record how the run ended; exit code 0, or 1 when some jobs failed.

    Raises RunStopped (exit 2, with how to continue) when the run stopped before every job had a result.
    """
    errors_out = errors_out or errors_path_for(out)
    try:
        written, failed = write_results_file(results, out, errors_out)
    except ResultsFileError as exc:
        store.record_stop(StopReason.RESULTS_FILE, str(exc))
        raise ResultsFileError(
            f"run {store.id}: {exc}; every result is kept in the run store: "
            f"`costserve results {store.id} --out FILE` writes them"
        ) from None
    line = None if stopped is None else stop_line(stopped)
    if stopped is None or line is None:
        store.event(Event.FINISHED, str(out))
    else:
        store.record_stop(stopped.reason, line)
    report = None
    try:
        report = build_report(store)  # once: the report files, the calibration and the prediction check all read it
        say(f"report: {write_run_report(store, report)}")
    except OSError as exc:
        warn(
            f"run {store.id}: the report was not written ({exc.strerror or exc}); `costserve report {store.id}` "
            "writes it later"
        )
    if stopped is not None:
        more = " --budget MORE" if stopped.reason is StopReason.BUDGET else ""
        hint = f"; `costserve resume {store.id}{more}` continues it" if resumable else ""
        raise stopped.restated(
            f"run {store.id} {line}: {written + failed}/{total} results kept in {out}"
            + (f" and {errors_out}" if failed else "")
            + hint
        )
    say(summary_line(store, out, written, failed, errors_out))
    if report is not None:
        calibrate_from(store, report)
        _say_prediction_miss(store.id, report)
    return 1 if failed else 0


def _say_prediction_miss(run_id: str, report: RunReport) -> None:
    """One line per figure the plan missed by more than ±25% (predicted vs actual), and the likely causes."""
    from costserve.report.accuracy import likely_causes, occupancy_warnings, prediction_checks
    from costserve.units import format_ratio

    missed = [c for c in prediction_checks(report) if c.off]
    if not missed:
        for line in occupancy_warnings(report):
            say(line)
        return
    say(
        "the plan missed: "
        + ", ".join(f"{c.label} predicted {format_ratio(c.ratio)} the actual" for c in missed if c.ratio is not None)
        + f" (`costserve report {run_id}`)"
    )
    for cause in likely_causes(report):
        say(f"  likely cause: {cause}")


def stop_line(stopped: RunStopped) -> str:
    """How a stopped run's final event and message say it stopped (one line)."""
    return f"stopped at its budget: {stopped}" if stopped.reason is StopReason.BUDGET else str(stopped)


def summary_line(store: RunStore, out: Path, written: int, failed: int, errors_out: Path) -> str:
    """The last line of a finished run: elapsed time, results and errors and where they are, $ spent vs predicted."""
    plan = store.plan()
    spent = store.spend()
    cost = f"; spent {format_money(spent)}" + (f" (predicted {format_money(plan.cost)})" if plan is not None else "")
    where = f"{written} results -> {out}" + (f", {failed} failed -> {errors_out}" if failed else "")
    return f"run {store.id} finished in {format_duration(time.time() - store.created())}: {where}{cost}"
