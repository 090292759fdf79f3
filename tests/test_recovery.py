"""Faults injected for real: a worker's process group SIGKILLed mid-shard, and the driver SIGKILLed mid-run then resumed.

Real processes, the real embedded Redis, real signals; every custom_id must come back exactly once, in input order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costserve.store.runs import RunStore, results_rows, runs_dir

pytestmark = pytest.mark.slow
JOBS = 48


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _job_file(tmp_path: Path) -> tuple[Path, list[str]]:
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"r{i:02d}" for i in range(JOBS)]
    jobs.write_text("".join(json.dumps({"id": c, "prompt": f"tell me about {i}", "max_tokens": 48, "temperature": 0}) + "\n"
                            for i, c in enumerate(ids)))
    return jobs, ids


def _submit(jobs: Path, model: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--model", str(model), "--out", str(out),
                             "--shard-size", "4", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init, which may be slow in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _the_run() -> RunStore:
    _wait_for(lambda: runs_dir().is_dir() and any((d / "run.sqlite").is_file() for d in runs_dir().iterdir()), 120, "the run")
    (run_dir,) = runs_dir().iterdir()
    return RunStore(run_dir)


def _check_results(out: Path, ids: list[str]) -> None:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in lines] == ids  # every job exactly once, in input order
    assert all(r["error"] is None for r in lines)


def test_a_worker_killed_mid_shard_loses_nothing(tmp_path: Path, tiny_llama_dir: Path) -> None:
    jobs, ids = _job_file(tmp_path)
    out = tmp_path / "results.jsonl"
    driver = _submit(jobs, tiny_llama_dir, out)
    try:
        store = _the_run()
        _wait_for(lambda: results_rows(store.dir, "shard_starts") >= 2, 240, "a shard in progress")
        (worker,) = [int(d) for (d,) in store.db.execute("SELECT detail FROM events WHERE kind = 'worker started'")]
        os.killpg(worker, signal.SIGKILL)  # the worker, its Celery pool process and its pipeline stages
        output = driver.communicate(timeout=600)[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output
    _check_results(out, ids)
    events = [(k, d) for k, d in store.db.execute("SELECT kind, detail FROM events")]
    lost = [d for k, d in events if k == "worker lost"]
    assert len(lost) == 1 and f"pid {worker} exit" in lost[0] and "re-queued shard-" in lost[0]
    assert [k for k, _ in events].count("worker started") == 2  # the replacement


def test_a_killed_driver_is_resumed_to_complete_unique_results(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs, ids = _job_file(tmp_path)
    out = tmp_path / "results.jsonl"
    driver = _submit(jobs, tiny_llama_dir, out)
    try:
        store = _the_run()
        _wait_for(lambda: store.results_done() >= 4, 240, "first results")
        driver.send_signal(signal.SIGKILL)  # only the driver: its workers and broker are orphaned, still running
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    before = store.results_done()
    assert before < JOBS
    orphans = [int(d) for (d,) in store.db.execute("SELECT detail FROM events WHERE kind = 'worker started'")]
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 0, result.output
    _check_results(out, ids)
    assert not any(_running(pid) for pid in orphans)  # the dead driver's workers were stopped
    periods = store.fleet()
    assert len(periods) == 2 and all(down is not None for *_, down in periods)  # billed for both stretches, closed
    again = cli.invoke(app, ["resume", store.id])
    assert again.exit_code == 0 and "already finished" in again.output
