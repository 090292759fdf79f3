"""`costserve runs`, `status RUN` and `results RUN`: what the run store knows, without a broker or workers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from costserve.runstore import RunStore, list_runs
from costserve.ui import console, fail


def _open(run_id: str) -> RunStore:
    try:
        return RunStore.open(run_id)
    except FileNotFoundError as exc:
        fail(f"{exc} (see `costserve runs`)")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def show_runs() -> None:
    """A table of every run: id, jobs, results so far, last event."""
    import pandas as pd

    from costserve.ui import frame_table

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
    run = _open(run_id)
    info = run.input_info()
    shards = run.shards()
    states = {state: sum(1 for s in shards if s[3] == state) for state in sorted({s[3] for s in shards})}
    console.print(f"run {run.id}: {run.results_done()}/{info['jobs']} jobs have results; shards "
                  + ", ".join(f"{n} {state}" for state, n in states.items()), markup=False)
    fleet = run.fleet()
    if fleet:
        running = sum(n for _, _, n, _, _, down in fleet if down is None)
        console.print(f"  spent ${run.spend():.4f} on {len(fleet)} fleet group(s), {running} instance(s) running", markup=False)
    for ts, kind, detail in run.db.execute("SELECT ts, kind, detail FROM events ORDER BY rowid DESC LIMIT 5").fetchall()[::-1]:
        console.print(f"  {_when(ts)}  {kind}  {detail}", markup=False)


def write_results(run_id: str, out: Path | None) -> int:
    """The run's result lines in input order, to `out` or stdout; exit 1 if some jobs have none yet."""
    from workers.shard_io import results_db

    run = _open(run_id)
    con = results_db(run.dir)
    lines = [row[0] for row in con.execute("SELECT output FROM results ORDER BY line")]
    text = "".join(line + "\n" for line in lines)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        console.print(f"{len(lines)} result lines -> {out}", markup=False)
    missing = run.input_info()["jobs"] - len(lines)
    if missing:
        print(f"costserve: run {run.id}: {missing} jobs have no result yet", file=sys.stderr)
    return 1 if missing else 0


def _costserve_process(pid: int) -> bool:
    """Whether `pid` is alive and is a costserve process (a recycled pid belongs to something else)."""
    try:
        return b"costserve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cancel_run(run_id: str, wait_s: float = 60.0) -> int:
    """Stop a run, keeping every finished result: its driver stops the fleet, or, with no driver alive, this does."""
    import os
    import signal

    run = _open(run_id)
    finished = run.db.execute("SELECT kind FROM events WHERE kind IN ('finished', 'stopped') LIMIT 1").fetchone()
    if finished:
        console.print(f"run {run.id} already {finished[0]}; nothing to cancel", markup=False)
        return 0
    run.event("cancel requested")
    driver = [int(d) for (d,) in run.db.execute("SELECT detail FROM events WHERE kind = 'driver'")]
    if driver and _costserve_process(driver[-1]):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if run.db.execute("SELECT 1 FROM events WHERE kind IN ('finished', 'stopped')").fetchone():
                break
            time.sleep(0.5)
        else:
            fail(f"run {run.id}: its driver (pid {driver[-1]}) did not stop within {wait_s:.0f}s; cancel again or kill it")
    else:  # the driver is gone (killed, machine rebooted): stop what it left running
        for (pid,) in run.db.execute("SELECT detail FROM events WHERE kind = 'worker started'").fetchall():
            if _costserve_process(int(pid)):
                try:
                    os.killpg(int(pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for queue, *_ in run.fleet():
            run.fleet_down(queue)
        run.event("stopped", "cancelled")
    console.print(f"run {run.id} cancelled: {run.results_done()}/{run.input_info()['jobs']} jobs have results "
                  f"(`costserve results {run.id}`)", markup=False)
    return 0
