"""Faults injected for real into `costserve submit` runs on this machine; a table of what each cost.

    python -m bench.chaos [--jobs 64] [--max-tokens 24]

Each scenario runs the shipped SmolLM2 through the embedded Redis and local workers in its
own COSTSERVE_HOME, injects its fault with real signals (or real bad input), recovers the
way a user would (`costserve resume`), and then counts: jobs submitted, result lines, lost
ids, duplicated ids, the extra $ spent against the fault-free run in the same command
(spend = instance uptime × the local $/h; the local CPU is priced like a cloud CPU), and the
seconds from the fault to the run's end (recover s; after the resume where there is one).
The faults inside workers, in the run store and at the broker are in bench/chaos_faults.py, those
of the run's own infrastructure (preparation cut short, the broker killed, the driver signalled)
in bench/chaos_infra.py;
the disk-full row needs root (it mounts a small tmpfs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench import chaos_faults as faults
from bench import chaos_infra
from costserve.store.runs import results_rows

PRICE_PER_HOUR = 0.10  # $/h for this machine, the same in every scenario


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "COSTSERVE_HOME": str(home), "COSTSERVE_LOCAL_CPU_PRICE_PER_HOUR": str(PRICE_PER_HOUR)}


def _costserve(home: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "costserve.cli", *args], env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run_dir(home: Path, timeout_s: float = 300) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = home / "runs"
        if runs.is_dir() and (found := [d for d in runs.iterdir() if (d / "run.sqlite").is_file()]):
            return found[0]
        time.sleep(0.2)
    raise TimeoutError("no run directory appeared")


def _wait(predicate: Callable[[], bool], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("fault point never reached")
        time.sleep(0.1)


def _spend(run_dir: Path) -> float:
    con = sqlite3.connect(run_dir / "run.sqlite", timeout=30)
    try:
        return float(sum(n * p * ((down or up) - up) / 3600 for n, p, up, down in
                         con.execute("SELECT instances, price_per_hour, up, down FROM fleet")))
    finally:
        con.close()


def _submit(home: Path, jobs: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return _costserve(home, "submit", str(jobs), "--out", str(out), "--shard-size", "8", "--yes", *extra)


def scenario_none(home: Path, jobs: Path, out: Path) -> Path:
    _submit(home, jobs, out).communicate()
    return _run_dir(home)


def scenario_worker_killed(home: Path, jobs: Path, out: Path) -> Path:
    driver = _submit(home, jobs, out)
    run = _run_dir(home)
    _wait(lambda: results_rows(run, "shard_starts") >= 2)
    con = sqlite3.connect(run / "run.sqlite", timeout=30)
    (pid,) = con.execute("SELECT detail FROM events WHERE kind = 'worker started' LIMIT 1").fetchone()
    con.close()
    faults.FAULT_AT[home] = time.monotonic()
    os.killpg(int(pid), signal.SIGKILL)
    driver.communicate()
    return run


def _interrupt_then_resume(home: Path, jobs: Path, out: Path, interrupt: Callable[[subprocess.Popen[bytes], Path], None]) -> Path:
    """Submit, wait for 8 results, `interrupt(driver, run_dir)`, wait for the driver, then `costserve resume`."""
    driver = _submit(home, jobs, out)
    run = _run_dir(home)
    _wait(lambda: results_rows(run, "results") >= 8)
    faults.FAULT_AT[home] = time.monotonic()
    interrupt(driver, run)
    driver.communicate()
    _costserve(home, "resume", run.name).communicate()
    return run


def scenario_driver_killed(home: Path, jobs: Path, out: Path) -> Path:
    return _interrupt_then_resume(home, jobs, out, lambda driver, _: driver.send_signal(signal.SIGKILL))


def scenario_budget_then_resume(home: Path, jobs: Path, out: Path) -> Path:
    # $0.10/h: one 60 s billing increment is $0.00167, so a $0.0025 budget stops the run after ~30 s of
    # uptime; the job file is doubled so that the run would take longer than that
    doubled = jobs.with_name("doubled.jsonl")
    lines = jobs.read_text().splitlines()
    doubled.write_text("".join(line.replace('"c', '"d', 1) + "\n" for line in lines) + "\n".join(lines) + "\n")
    _submit(home, doubled, out, "--budget", "0.0025").communicate()
    faults.FAULT_AT[home] = time.monotonic()  # the stop at the budget
    run = _run_dir(home)
    con = sqlite3.connect(run / "run.sqlite", timeout=30)
    stopped = con.execute("SELECT detail FROM events WHERE kind = 'stopped'").fetchone()
    con.close()
    print(f"  budget scenario: {'stopped: ' + stopped[0] if stopped else 'finished within the budget'}", flush=True)
    _costserve(home, "resume", run.name, "--budget", "1").communicate()
    return run


def scenario_cancel_then_resume(home: Path, jobs: Path, out: Path) -> Path:
    return _interrupt_then_resume(home, jobs, out, lambda _, run: _costserve(home, "cancel", run.name).communicate() and None)


def scenario_bad_lines(home: Path, jobs: Path, out: Path) -> Path:
    bad = jobs.with_name("with-bad-lines.jsonl")
    lines = jobs.read_bytes().splitlines()
    lines[3:3] = [b'{"id": "broken", "prompt": ', b'{"id": "x1", "prompt": 5}', b"\xff\xfe", b""]
    bad.write_bytes(b"\n".join(lines) + b"\n")
    faults.FAULT_AT[home] = time.monotonic()
    _submit(home, bad, out, "--skip-invalid").communicate()
    return _run_dir(home)


SCENARIOS: dict[str, Callable[[Path, Path, Path], Path]] = {
    "none (reference)": scenario_none,
    "worker SIGKILL mid-shard": scenario_worker_killed,
    "driver SIGKILL, then resume": scenario_driver_killed,
    "budget reached, then resume": scenario_budget_then_resume,
    "cancel, then resume": scenario_cancel_then_resume,
    "4 bad lines, --skip-invalid": scenario_bad_lines,
    "worker holding shards SIGKILL": faults.in_worker(_submit, _run_dir, _wait, faults.kill_shard_holder),
    "pipeline stage SIGKILL": faults.in_worker(_submit, _run_dir, _wait, faults.kill_stage),
    "worker holding shards frozen (SIGSTOP)": faults.in_worker(_submit, _run_dir, _wait, faults.freeze_shard_holder,
                                                    {"COSTSERVE_STALL_FLOOR_S": "30"}),
    "both databases locked 90 s": faults.in_worker(_submit, _run_dir, _wait, faults.lock_databases),
    "hostile lines, --skip-invalid": faults.hostile_lines(_submit, _run_dir),
    "two runs on one broker": faults.two_runs_one_broker(_submit, _run_dir),
}
SCENARIOS.update(chaos_infra.scenarios(_costserve, _submit, _run_dir, _wait))
if os.geteuid() == 0:  # mounting the small filesystem needs root
    SCENARIOS["disk full, then resume"] = faults.disk_full_then_resume(_costserve, _submit, _run_dir, _wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--only", action="append", default=[],
                        help="run the scenarios whose names contain this text (repeatable); the reference always runs")
    args = parser.parse_args()
    rows = []
    reference_spend = None
    with tempfile.TemporaryDirectory(prefix="costserve-chaos-") as tmp:
        jobs = Path(tmp) / "jobs.jsonl"
        ids = [f"c{i:04d}" for i in range(args.jobs)]
        jobs.write_text("".join(json.dumps({"id": c, "prompt": f"Write one sentence about the number {i}.",
                                            "max_tokens": args.max_tokens, "temperature": 0}) + "\n" for i, c in enumerate(ids)))
        for n, (name, scenario) in enumerate(SCENARIOS.items()):
            if args.only and n and not any(text in name for text in args.only):
                continue
            home, out = Path(tmp) / f"home{n}", Path(tmp) / f"out{n}.jsonl"
            t0 = time.monotonic()
            run = scenario(home, jobs, out)
            got = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] if out.is_file() else []
            submitted = json.loads((run / "input.json").read_text())["jobs"]
            expected = set(ids) | {i.replace("c", "d", 1) for i in ids} if submitted == 2 * len(ids) else set(ids)
            counts = Counter(got)
            spend = _spend(run) * len(ids) / submitted  # per job of the reference batch, for runs of a different size
            reference_spend = spend if reference_spend is None else reference_spend
            fault_at = faults.FAULT_AT.get(home)
            rows.append({"fault": name, "jobs submitted": submitted, "results": len(got),
                         "lost": len(expected - set(counts)), "duplicated": sum(c - 1 for c in counts.values() if c > 1),
                         "$ spent": round(spend, 6), "extra $": round(spend - reference_spend, 6),
                         "recover s": round(time.monotonic() - fault_at, 1) if fault_at is not None else None,
                         "wall s": round(time.monotonic() - t0, 1)})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=n == 0), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False))
    print(f"\nlost in all: {int(table['lost'].sum())}, duplicated in all: {int(table['duplicated'].sum())}; "
          f"$ spent is scaled to {len(ids)} jobs; extra $ is against the fault-free run at ${PRICE_PER_HOUR}/h")


if __name__ == "__main__":
    main()
