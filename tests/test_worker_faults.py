"""Faults inside a running worker, injected for real: a SIGKILLed pipeline-stage process, a SIGKILLed Celery pool
child, a pool child frozen with SIGSTOP (a hang: alive, no progress).

Each run must end by itself with every custom_id exactly once, and say what happened: the failed
attempt as an event, the retry as a result's attempt number.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from run_helpers import RunningSubmit, check_results, results_column, running, stage_processes, start_submit, wait_for

pytestmark = pytest.mark.slow


def _ended_by_itself(run: RunningSubmit) -> None:
    output = run.finish()
    assert run.driver.returncode == 0, output
    check_results(run.out, run.ids)


def _pool_children(run: RunningSubmit) -> list[int]:
    """Pool processes that started shards, in order of their first start."""
    return results_column(run.store, "SELECT pid FROM shard_starts GROUP BY pid ORDER BY MIN(started)")


def _holds_unfinished_shard(run: RunningSubmit, pid: int) -> bool:
    """Whether the last shard `pid` started still has jobs without a result."""
    started = results_column(run.store, f"SELECT shard FROM shard_starts WHERE pid = {pid} ORDER BY started DESC LIMIT 1")
    if not started:
        return False
    jobs = {shard: n for shard, _, n, _ in run.store.shards()}[started[0]]
    return len(results_column(run.store, f"SELECT custom_id FROM results WHERE shard = '{started[0]}'")) < jobs


def _kill_while_holding_a_shard(run: RunningSubmit, pid: int) -> None:
    """SIGKILL `pid` while it holds a shard with jobs left. It is frozen (SIGSTOP) while the stores are read, so the kill
    cannot land in the gap after a shard's last result, where there is nothing to redeliver (a flake seen in CI)."""
    import sqlite3
    import time

    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        try:
            holds = _holds_unfinished_shard(run, pid)
        except sqlite3.OperationalError:  # frozen inside a write: look again once it has moved on
            holds = False
        if holds:
            os.kill(pid, signal.SIGKILL)
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail(f"pool process {pid} never held an unfinished shard")


def test_a_killed_pipeline_stage_fails_its_shard_which_is_retried_on_a_rebuilt_replica(tmp_path: Path, tiny_llama_dir: Path) -> None:
    run = start_submit(tmp_path, tiny_llama_dir)
    (worker,) = [int(pid) for pid in run.store.events("worker started")]
    (stage,) = stage_processes(worker)  # the default local replica has two stages: rank 0 is a child process
    os.kill(stage, signal.SIGKILL)
    _ended_by_itself(run)
    failed = run.store.events("shard failed")
    assert failed and all("; retrying" in f for f in failed), failed
    assert max(results_column(run.store, "SELECT attempt FROM results")) >= 2  # the failed shard's rest ran on attempt 2
    assert run.store.events("worker started") == [str(worker)]  # the worker itself lived: it rebuilt its replica
    assert not running(stage)


def test_a_killed_pool_child_is_replaced_and_its_shard_redelivered(tmp_path: Path, tiny_llama_dir: Path) -> None:
    run = start_submit(tmp_path, tiny_llama_dir)
    (worker,) = [int(pid) for pid in run.store.events("worker started")]
    (child,) = _pool_children(run)
    orphaned_stages = stage_processes(worker)
    _kill_while_holding_a_shard(run, child)  # what the out-of-memory killer picks: the process holding the replica
    _ended_by_itself(run)
    assert run.store.events("worker started") == [str(worker)]  # Celery replaced its pool child; the driver had nothing to do
    assert max(results_column(run.store, "SELECT attempt FROM results")) >= 2
    assert len(_pool_children(run)) == 2  # the redelivered shard ran in a new pool process
    wait_for(lambda: not any(running(p) for p in orphaned_stages), 60, "the dead child's stage process to exit")


def test_a_frozen_worker_is_found_by_the_watchdog_killed_and_replaced(tmp_path: Path, tiny_llama_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTSERVE_STALL_FLOOR_S", "30")  # the tiny model's predicted shard time is far below any floor
    run = start_submit(tmp_path, tiny_llama_dir)
    (worker,) = [int(pid) for pid in run.store.events("worker started")]
    (child,) = _pool_children(run)
    os.kill(child, signal.SIGSTOP)  # alive to every process check, holding its shard, doing nothing
    _ended_by_itself(run)
    (stalled,) = run.store.events("worker stalled")
    # frozen mid-shard it holds that shard; frozen between shards it holds the next message, not yet started
    assert stalled.startswith(f"worker pid {worker} made no progress for ") and "killed" in stalled
    lost = run.store.events("worker lost")
    assert len(lost) == 1 and lost[0].startswith(f"pid {worker} exit -9; re-queued shard-")
    assert len(run.store.events("worker started")) == 2  # the replacement finished the run
    assert not running(child)
