"""`costserve runs`, `status RUN` and `results RUN`: what the run store knows, without a broker or workers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from costserve.cli.output import console, fail, one_line_errors
from costserve.cli.terminal import warn
from costserve.durations import format_money
from costserve.errors import StopReason
from costserve.store.run_state import RunState
from costserve.store.runs import RunStore, list_runs
from costserve.units import iso_time, json_keys


def open_run(run_id: str | None) -> RunStore:
    """The run with this id or unique id prefix (None: the latest), or a one-line error pointing at `costserve runs`."""
    try:
        return RunStore.open(run_id)
    except FileNotFoundError as exc:
        fail(f"{exc} (see `costserve runs`)")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def show_runs(json_out: bool = False, dry_runs: bool = False) -> None:
    """A table (or JSON list) of every run: id, jobs, results so far, last event; dry runs only when asked."""
    import pandas as pd

    from costserve.cli.output import emit_json, frame_table

    rows = []
    for run in list_runs():
        if run.dry_run and not dry_runs:
            continue
        ts, kind, _ = run.last_event()
        rows.append(
            {
                "run": run.id,
                "jobs": run.input_info()["jobs"],
                "results": run.results_done(),
                "state": _state_words(run.state(), run.stop_reason()),
                "last event": kind,
                "last event at": ts,
                "input": run.input_info()["path"],
            }
            | ({"dry run": run.dry_run} if dry_runs else {})
        )
    if json_out:
        emit_json([json_keys(row | {"last event at": iso_time(float(row["last event at"]))}) for row in rows])
        return
    for row in rows:
        row["last event at"] = _when(float(row["last event at"]))
    if not rows:
        console.print("no runs yet: `costserve submit JOBS` starts one")
        return
    console.print(frame_table(pd.DataFrame(rows), "runs"))


def show_status(run_id: str | None, json_out: bool = False) -> None:
    """Shards by state, results so far and the last events of one run (as one JSON object with `json_out`)."""
    run = open_run(run_id)
    info = run.input_info()
    shards = run.shards()
    states = {str(state): sum(1 for s in shards if s.state == state) for state in sorted({s.state for s in shards})}
    state, reason = run.state(), run.stop_reason()
    if json_out:
        from costserve.cli.output import emit_json

        emit_json(
            {
                "run": run.id,
                "jobs": info["jobs"],
                "results": run.results_done(),
                "shards": states,
                "spent_usd": float(run.spend()),
                "state": state,
                "stop_reason": reason,
                "ended": run.ended(),
                "dry_run": run.dry_run,
                "driver_pid": run.driver_pid(),
                "events": [
                    {"at": iso_time(ts), "kind": kind, "detail": detail} for ts, kind, detail in run.recent_events(5)
                ],
            }
        )
        return
    console.print(
        f"run {run.id}: {_state_words(state, reason)}; {run.results_done()}/{info['jobs']} jobs have results; shards "
        + ", ".join(f"{n} {state}" for state, n in states.items()),
        markup=False,
    )
    fleet = run.fleet()
    if fleet:
        up = sum(row.instances for row in fleet if row.down is None)
        where = (
            f"{up} instance(s) running"
            if state in (RunState.RUNNING, RunState.CANCELLING) or not up
            else f"{up} instance(s) were up when its driver died (`costserve cancel {run.id}` stops what is left)"
        )
        console.print(f"  spent {format_money(run.spend())} on {len(fleet)} fleet group(s), {where}", markup=False)
    pid, log = run.driver_pid(), run.dir / "driver.log"
    if pid is not None:
        console.print(f"  driver running (pid {pid}){f'; log: {log}' if log.is_file() else ''}", markup=False)
    elif state in (RunState.INTERRUPTED, RunState.STOPPED):
        console.print(f"  not running: `costserve resume {run.id}` continues it", markup=False)
    for ts, kind, detail in run.recent_events(5):
        console.print(f"  {_when(ts)}  {kind}  {detail}", markup=False)


def write_results(run_id: str, out: Path | None, errors_out: Path | None = None) -> int:
    """The run's successful result lines in input order, to `out` (written whole or not at all, mode 0600) or stdout,
    and the failed ones to `errors_out` (default beside `out`; without `out`, only counted); exit 1 if some jobs have
    none yet."""
    from costserve.run.end import write_results_file
    from costserve.store.results import outputs_in_order, results_db

    run = open_run(run_id)
    con = results_db(run.dir)
    if out is None:
        written = failed = 0
        errors = errors_out.open("w") if errors_out is not None else None
        for line, is_error in outputs_in_order(con):
            if not is_error:
                sys.stdout.write(line + "\n")
            elif errors is not None:
                errors.write(line + "\n")
            written += not is_error
            failed += is_error
        if errors is not None:
            errors.close()
        if failed:
            warn(
                f"run {run.id}: {failed} request(s) failed"
                + (f" -> {errors_out}" if errors_out else "; --errors-out FILE writes them")
            )
    else:
        with one_line_errors():
            written, failed = write_results_file(con, out, errors_out)
        console.print(f"{written} result lines -> {out}" + (f", {failed} failed" if failed else ""), markup=False)
    missing = run.input_info()["jobs"] - written - failed
    if missing:
        warn(f"run {run.id}: {missing} jobs have no result yet")
    return 1 if missing else 0


def _state_words(state: RunState, reason: StopReason | None) -> str:
    """`stopped (budget)`, `finished`, `running`: a run's state and, for a stop, its reason."""
    return f"{state} ({reason})" if reason is not None else str(state)
