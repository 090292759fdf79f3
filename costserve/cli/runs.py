"""`costserve runs`, `status RUN` and `results RUN`: what the run store knows, without a broker or workers."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from costserve.store.runs import RunStore, list_runs
from costserve.cli.output import console, fail


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


def _works_in(pid: int, run_dir: Path) -> bool:
    """Whether `pid` is a live process whose working directory is `run_dir` (how `submit` starts workers; Celery
    rewrites their command line, and a recycled pid belongs to something else)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == run_dir.resolve()
    except OSError:
        return False


def _recorded_pids(run: RunStore, kind: str) -> list[int]:
    return [int(d) for (d,) in run.db.execute("SELECT detail FROM events WHERE kind = ?", (kind,))]


def driver_alive(run: RunStore) -> int | None:
    """The pid of the run's driver (`submit`/`resume`) if it is still running, else None."""
    pids = _recorded_pids(run, "driver")
    return pids[-1] if pids and _costserve_process(pids[-1]) else None


def stop_leftovers(run: RunStore) -> None:
    """Stop the worker process groups and embedded Redis a dead driver left running (checked by command line first)."""
    import signal

    for pid in _recorded_pids(run, "worker started"):
        if _works_in(pid, run.dir):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in _recorded_pids(run, "broker pid"):
        try:
            if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def resume_run(run_id: str, broker: str | None, budget: float | None = None, deadline: str | None = None) -> int:
    """Finish a run whose driver died: stop its leftovers, then run the jobs not done (results already in are kept).

    Local runs re-run their unfinished shards here; SkyPilot runs are re-planned and re-provisioned
    (costserve.run.resume). `budget` ($) is the run's new total budget; `deadline` (SkyPilot runs) the time from now.
    """
    from costserve.config import ConfigError, load_settings
    from costserve.run.local import SETTINGS_FILE, execute_local, require_broker
    from costserve.run.sky import SKY_SETTINGS_FILE

    run = _open(run_id)
    if run.ended() == "finished":
        console.print(f"run {run.id} already finished (`costserve results {run.id}`)", markup=False)
        return 0
    if (pid := driver_alive(run)) is not None:
        fail(f"run {run.id} is still running (driver pid {pid}); `costserve cancel {run.id}` stops it")
    sky = (run.dir / SKY_SETTINGS_FILE).is_file()
    if not sky and not (run.dir / SETTINGS_FILE).is_file():
        fail(f"run {run.id} cannot be resumed: it has no run settings (a --dry-run, or a run from an older costserve)")
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    broker = broker or settings.broker
    require_broker(broker)
    run.event("driver", str(os.getpid()))
    if sky:
        from costserve.run.resume import resume_sky_run

        return resume_sky_run(run, broker, budget, deadline)
    stop_leftovers(run)
    run.close_dangling_fleet()
    done, total = run.results_done(), run.input_info()["jobs"]
    run.event("resumed", f"{done}/{total} jobs had results")
    console.print(f"resuming run {run.id}: {done}/{total} jobs already have results", markup=False)
    return execute_local(run, broker, budget)


def cancel_run(run_id: str, wait_s: float = 60.0) -> int:
    """Stop a run, keeping every finished result: its driver stops the fleet, or, with no driver alive, this does."""
    run = _open(run_id)
    if (ended := run.ended()) is not None:
        console.print(f"run {run.id} already {ended}; nothing to cancel", markup=False)
        return 0
    run.event("cancel requested")
    driver = driver_alive(run)
    if driver is not None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if run.ended() is not None:
                break
            time.sleep(0.5)
        else:
            fail(f"run {run.id}: its driver (pid {driver}) did not stop within {wait_s:.0f}s; cancel again or kill it")
    else:  # the driver is gone (killed, machine rebooted): stop what it left running
        stop_leftovers(run)
        for queue in {q for q, *_ in run.fleet()}:
            run.fleet_down(queue)
        run.event("stopped", "cancelled")
    console.print(f"run {run.id} cancelled: {run.results_done()}/{run.input_info()['jobs']} jobs have results "
                  f"(`costserve results {run.id}`)", markup=False)
    return 0
