"""The watchdog's rule on a real results database: who counts as stalled, and the allowance it derives from the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from costserve.run.watchdog import STALL_FACTOR, stall_allowance_s, stalled_workers
from costserve.store.results import results_db
from costserve.store.result_records import save_result


def _start(con, shard: str, pgid: int, at: float) -> None:  # type: ignore[no-untyped-def]
    con.execute("INSERT INTO shard_starts VALUES (?, ?, ?, ?)", (shard, pgid, pgid + 1, at))


def test_a_busy_worker_is_stalled_only_after_its_allowance_without_a_result(tmp_path: Path) -> None:
    con = results_db(tmp_path)
    _start(con, "shard-1", 100, 1000.0)
    save_result(con, "a", 1, "shard-1", {}, 1, finished=1050.0)  # progress at t=1050
    spawned = {100: 990.0}
    assert stalled_workers(con, spawned, set(), {"shard-1"}, 30.0, 1070.0) == []
    (stall,) = stalled_workers(con, spawned, set(), {"shard-1"}, 30.0, 1090.0)
    assert (stall.pgid, round(stall.idle_s), stall.on) == (100, 40, "shard-1")
    assert stalled_workers(con, spawned, {"shard-1"}, {"shard-1"}, 30.0, 1090.0) == []  # its shard is done: idle, no work


def test_an_idle_worker_is_stalled_only_when_a_shard_waits_that_nobody_started(tmp_path: Path) -> None:
    con = results_db(tmp_path)
    spawned = {200: 1000.0}
    (stall,) = stalled_workers(con, spawned, set(), {"shard-2"}, 30.0, 1100.0)
    assert (stall.pgid, stall.on) == (200, "starting")  # it never began: it cannot start
    _start(con, "shard-2", 300, 1090.0)  # another worker holds the only shard left
    assert stalled_workers(con, spawned, set(), {"shard-2"}, 30.0, 1100.0) == []


def test_the_allowance_is_the_factor_times_one_shard_on_one_worker_never_below_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTSERVE_STALL_FLOOR_S", "60")
    # 3600 s for 100 jobs on 2 workers: 72 s per job-slot, 8-job shards take 576 s each
    assert stall_allowance_s(3600.0, 100, 8, 2) == pytest.approx(STALL_FACTOR * 576.0)
    assert stall_allowance_s(10.0, 100, 8, 2) == 60.0
