"""`costserve runs`, `status RUN` and `results RUN`: what the run store knows, without a broker or workers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from costserve.cli.output import console, fail, one_line_errors
from costserve.cli.terminal import warn
from costserve.store.runs import RunStore, list_runs


def open_run(run_id: str) -> RunStore:
    """The run with this id, or a one-line error pointing at `costserve runs`."""
    try:
        return RunStore.open(run_id)
    except FileNotFoundError as exc:
        fail(f"{exc} (see `costserve runs`)")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def show_runs() -> None:
    """A table of every run: id, jobs, results so far, last event."""
    import pandas as pd

    from costserve.cli.output import frame_table

    rows = []
    for run in list_runs():
        ts, kind, _ = run.last_event()
        rows.append({"run": run.id, "jobs": run.input_info()["jobs"], "results": run.results_done(), "last event": kind,
                     "at": _when(ts), "input": run.input_info()["path"]})
    if not rows:
        console.print("no runs yet: `costserve submit JOBS` starts one")
        return
    console.print(frame_table(pd.DataFrame(rows), "runs"))


def show_status(run_id: str) -> None:
    """Shards by state, results so far and the last events of one run."""
    run = open_run(run_id)
    info = run.input_info()
    shards = run.shards()
    states = {state: sum(1 for s in shards if s[3] == state) for state in sorted({s[3] for s in shards})}
    console.print(f"run {run.id}: {run.results_done()}/{info['jobs']} jobs have results; shards "
                  + ", ".join(f"{n} {state}" for state, n in states.items()), markup=False)
    fleet = run.fleet()
    if fleet:
        running = sum(n for _, _, n, _, _, down in fleet if down is None)
        console.print(f"  spent ${run.spend():.4f} on {len(fleet)} fleet group(s), {running} instance(s) running", markup=False)
    for ts, kind, detail in run.recent_events(5):
        console.print(f"  {_when(ts)}  {kind}  {detail}", markup=False)


def write_results(run_id: str, out: Path | None) -> int:
    """The run's result lines in input order, to `out` (written whole or not at all, mode 0600) or stdout;
    exit 1 if some jobs have none yet."""
    from costserve.run.end import write_results_file
    from costserve.store.results import outputs_in_order, results_db

    run = open_run(run_id)
    con = results_db(run.dir)
    if out is None:
        written = 0
        for line in outputs_in_order(con):
            sys.stdout.write(line + "\n")
            written += 1
    else:
        with one_line_errors():
            written, _ = write_results_file(con, out)
        console.print(f"{written} result lines -> {out}", markup=False)
    missing = run.input_info()["jobs"] - written
    if missing:
        warn(f"run {run.id}: {missing} jobs have no result yet")
    return 1 if missing else 0
