"""Faults injected for real: a worker's process group SIGKILLed mid-shard, and the driver SIGKILLed mid-run then resumed.

Real processes, the real embedded Redis, real signals; every custom_id must come back exactly once, in input order.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from run_helpers import JOBS, check_results, group_processes, job_file, running, start_submit, submit, the_run, wait_for

from costserve.store.runs import results_rows

pytestmark = pytest.mark.slow


def test_a_worker_killed_mid_shard_loses_nothing(tmp_path: Path, tiny_llama_dir: Path) -> None:
    jobs, ids = job_file(tmp_path)
    out = tmp_path / "results.jsonl"
    driver = submit(jobs, tiny_llama_dir, out)
    try:
        store = the_run()
        wait_for(lambda: results_rows(store.dir, "shard_starts") >= 2, 240, "a shard in progress")
        (worker,) = [int(d) for (d,) in store.db.execute("SELECT detail FROM events WHERE kind = 'worker started'")]
        os.killpg(worker, signal.SIGKILL)  # the worker, its Celery pool process and its pipeline stages
        output = driver.communicate(timeout=600)[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output
    check_results(out, ids)
    events = [(k, d) for k, d in store.db.execute("SELECT kind, detail FROM events")]
    lost = [d for k, d in events if k == "worker lost"]
    assert len(lost) == 1 and f"pid {worker} exit" in lost[0] and "re-queued shard-" in lost[0]
    assert [k for k, _ in events].count("worker started") == 2  # the replacement


def test_a_killed_driver_is_resumed_to_complete_unique_results(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    run = start_submit(tmp_path, tiny_llama_dir, 4)
    store, out, ids = run.store, run.out, run.ids
    run.driver.send_signal(signal.SIGKILL)  # only the driver: its broker dies with it, its workers within their grace
    run.finish(30)
    before = store.results_done()
    assert before < JOBS
    orphans = [int(d) for (d,) in store.db.execute("SELECT detail FROM events WHERE kind = 'worker started'")]
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 0, result.output
    check_results(out, ids)
    assert not any(running(pid) for pid in orphans)  # the dead driver's workers were stopped
    periods = store.fleet()
    assert len(periods) == 2 and all(down is not None for *_, down in periods)  # billed for both stretches, closed
    again = cli.invoke(app, ["resume", store.id])
    assert again.exit_code == 0 and "already finished" in again.output


def test_a_killed_drivers_workers_and_broker_stop_by_themselves(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from costserve.cli import app

    monkeypatch.setenv("COSTSERVE_DRIVER_GRACE_S", "20")
    short_home = Path(tempfile.mkdtemp(prefix="cs-"))  # pytest's paths are too long for a socket (108 bytes)
    monkeypatch.setenv("COSTSERVE_HOME", str(short_home))
    run = start_submit(tmp_path, tiny_llama_dir, 4)
    store, out, ids = run.store, run.out, run.ids
    assert (store.dir / "broker.sock").is_socket() and (store.dir / "broker.conf").is_file()  # not in /tmp
    run.driver.send_signal(signal.SIGKILL)
    run.finish(30)
    (worker,) = [int(d) for d in store.events("worker started")]
    (broker,) = [int(d) for d in store.events("broker pid")]
    wait_for(lambda: not running(broker), 30, "the broker to die with its driver")
    wait_for(lambda: not group_processes(worker), 90, "the worker group to stop itself")  # grace 20 s + its shard
    assert not (store.dir / "broker.sock").exists()
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 0, result.output
    check_results(out, ids)
    assert not (store.dir / "broker.sock").exists() and not (store.dir / "broker.conf").exists()
    assert (store.dir / "broker.log").is_file()
    shutil.rmtree(short_home)
