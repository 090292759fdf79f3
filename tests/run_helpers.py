"""Helpers for tests that run `costserve submit` as a real process and inject faults into it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costserve.store.runs import RunStore, runs_dir

JOBS = 240  # seconds of work after the first results even on a fast machine: a fault lands while work is left (48 did not)


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def job_file(tmp_path: Path, count: int = JOBS) -> tuple[Path, list[str]]:
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"r{i:02d}" for i in range(count)]
    jobs.write_text("".join(json.dumps({"id": c, "prompt": f"tell me about {i}", "max_tokens": 48, "temperature": 0}) + "\n"
                            for i, c in enumerate(ids)))
    return jobs, ids


def submit(jobs: Path, model: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--model", str(model), "--out", str(out),
                             "--shard-size", "4", "--yes", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init, which may be slow in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def the_run() -> RunStore:
    wait_for(lambda: runs_dir().is_dir() and any((d / "run.sqlite").is_file() for d in runs_dir().iterdir()), 120, "the run")
    (run_dir,) = runs_dir().iterdir()
    return RunStore(run_dir)


def check_results(out: Path, ids: list[str]) -> None:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in lines] == ids  # every job exactly once, in input order
    assert all(r["error"] is None for r in lines)


def group_processes(pgid: int) -> dict[int, str]:
    """Running processes of process group `pgid` (one `costserve worker`: its Celery pool and pipeline stages): pid → cmdline."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and running(int(proc.name)):
            try:
                if os.getpgid(int(proc.name)) == pgid:
                    found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ProcessLookupError):
                pass  # exited while we looked
    return found


def stage_processes(pgid: int) -> list[int]:
    """Pipeline-stage processes (`python -m workers.pipeline`) of a worker's process group."""
    return [pid for pid, cmd in group_processes(pgid).items() if "workers.pipeline" in cmd]


@dataclass
class RunningSubmit:
    """A `costserve submit` process of job_file's jobs, its run, results file and expected ids."""

    driver: subprocess.Popen[bytes]
    store: RunStore
    out: Path
    ids: list[str]

    def finish(self, timeout_s: float = 900) -> str:
        """Wait for the driver to end by itself (killed if it does not); its output."""
        try:
            return self.driver.communicate(timeout=timeout_s)[0].decode()
        finally:
            if self.driver.poll() is None:
                self.driver.kill()


def start_submit(tmp_path: Path, model: Path, first_results: int = 2, *extra: str, jobs: int = JOBS) -> RunningSubmit:
    """Submit job_file's `jobs` jobs and wait until `first_results` have results (the driver is killed if that fails)."""
    from costserve.store.runs import results_rows

    jobs_path, ids = job_file(tmp_path, jobs)
    out = tmp_path / "results.jsonl"
    driver = submit(jobs_path, model, out, *extra)
    try:
        store = the_run()
        wait_for(lambda: results_rows(store.dir, "results") >= first_results, 240, "first results")
    except BaseException:
        driver.kill()
        raise
    return RunningSubmit(driver, store, out, ids)


def results_column(store: RunStore, sql: str) -> list[Any]:
    """The first column of a query on the run's results.sqlite."""
    import sqlite3

    con = sqlite3.connect(store.dir / "results.sqlite")
    try:
        return [row[0] for row in con.execute(sql)]
    finally:
        con.close()
