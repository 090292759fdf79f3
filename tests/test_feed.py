"""The engine feed (workers/feed.py) on a tiny random Llama: many shards, one running engine, every slot busy.

Shards are handed in by threads, as Celery's threads pool does in a worker: each thread holds one shard lease
and takes the next when its shard is done. Nothing here is mocked: the engine, the batcher and the feed run.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine_fixtures import JobStub
from solver.plan import Job
from workers.occupancy import Occupancy, OccupancyWindow
from workers.engine import Engine, Generation
from workers.feed import EngineFailed, EngineFeed, shards_to_hold
from workers.replica import Replica

SLOTS = 16
SHARD = 4


def _shards(n_jobs: int, max_tokens: int = 40) -> list[list[Job]]:
    jobs = [JobStub(custom_id=f"j{i:03d}", prompt=f"job {i} " * (1 + i % 5), max_tokens=max_tokens) for i in range(n_jobs)]
    return [jobs[i : i + SHARD] for i in range(0, n_jobs, SHARD)]


def _feed_as_a_worker(feed: EngineFeed, shards: list[list[Job]], held: int) -> dict[str, Generation]:
    """`held` threads, each running one shard at a time through the feed until none is left; every Generation by
    custom_id (a custom_id answered twice fails the test)."""
    todo: queue.Queue[list[Job]] = queue.Queue()
    for s in shards:
        todo.put(s)
    out: dict[str, Generation] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def lease() -> None:
        while True:
            try:
                shard = todo.get_nowait()
            except queue.Empty:
                return
            try:
                for gen in feed.run(shard):
                    assert gen.custom_id == shard[gen.index].custom_id
                    with lock:
                        assert gen.custom_id not in out
                        out[gen.custom_id] = gen
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=lease) for _ in range(held)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return out


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> Engine:
    e = Engine(Replica.uniform(4, 32, decode_micro_batch=SLOTS, prefill_micro_batch=SLOTS), model=tiny_llama_dir)
    e.eos_ids = frozenset()  # random weights: every job runs to its max_tokens, so the batch shape is known
    yield e
    e.close()


def _loading(engine: Engine) -> Engine:
    """`engine` after a worker's load time: by then every task thread has handed in the shard it holds (loading takes
    seconds, handing in microseconds), so the first round starts full, as in a worker. Without it the first round
    could start before the last thread's shard is in, and run one round longer."""
    time.sleep(0.5)
    return engine


def test_shards_of_four_keep_sixteen_slots_full_across_shard_boundaries(engine: Engine) -> None:
    windows: list[OccupancyWindow] = []
    feed = EngineFeed(lambda: _loading(engine), lambda _: None, windows.append)
    shards = _shards(96)
    out = _feed_as_a_worker(feed, shards, shards_to_hold(SLOTS, SHARD))
    assert sorted(out) == sorted(j.custom_id for s in shards for j in s)  # every job once
    assert all(g.completion_tokens == 40 and g.error is None for g in out.values())
    # 96 jobs of 40 tokens on 16 slots: every round full, from the first to the last (6 batches × 40 rounds)
    assert windows and all(w.slots == SLOTS for w in windows)
    assert sum(w.rounds for w in windows) == 96 * 40 // SLOTS
    assert all(w.in_flight_sum == w.rounds * SLOTS for w in windows)
    assert engine.stats.generated_tokens == 96 * 40


def test_one_shard_at_a_time_cannot_fill_the_replica(engine: Engine) -> None:
    """The control: the same jobs leased one shard at a time never have more than a shard in flight."""
    windows: list[OccupancyWindow] = []
    feed = EngineFeed(lambda: engine, lambda _: None, windows.append)
    _feed_as_a_worker(feed, _shards(32), held=1)
    assert max(w.in_flight_max for w in windows) == SHARD


def test_a_crash_fails_every_admitted_shard_and_the_last_attempt_isolates_the_job(engine: Engine) -> None:
    """A seed past 64 bits makes torch's generator raise when the job is admitted: every shard with a job in the
    engine fails that attempt; run alone (a last attempt), only that job fails."""
    dropped: list[Engine] = []
    feed = EngineFeed(lambda: engine, dropped.append)
    good, bad = _shards(8)
    bad = [*bad[:3], JobStub(custom_id="poison", prompt="hi", max_tokens=3, temperature=0.7, seed=2**64)]
    answers: dict[str, list[Generation] | BaseException] = {}

    def run(name: str, jobs: list[Job], alone: bool = False) -> None:
        try:
            answers[name] = list(feed.run(jobs, alone=alone, note="last attempt: "))
        except EngineFailed as exc:
            answers[name] = exc

    threads = [threading.Thread(target=run, args=("good", good)), threading.Thread(target=run, args=("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(answers["bad"], EngineFailed) and "Overflow" in str(answers["bad"])
    assert dropped == [engine]  # the broken engine is released; the next job loads one
    run("alone", bad, alone=True)
    gens = answers["alone"]
    assert isinstance(gens, list) and [g.custom_id for g in sorted(gens, key=lambda g: g.index)] == [j.custom_id for j in bad]
    errors = {g.custom_id: g.error for g in gens if g.error is not None}
    assert list(errors) == ["poison"] and errors["poison"].startswith("last attempt: ") and "Overflow" in errors["poison"]


def test_a_job_longer_than_the_slots_waits_for_the_replica_to_drain_and_runs_whole(tiny_llama_dir: Path) -> None:
    e = Engine(Replica.uniform(4, 32, decode_micro_batch=4).model_copy(update={"max_seq_len": 32}), model=tiny_llama_dir)
    e.eos_ids = frozenset()
    try:
        feed = EngineFeed(lambda: e, lambda _: None)
        short = [JobStub(custom_id=f"s{i}", prompt="a b", max_tokens=8) for i in range(6)]
        long = JobStub(custom_id="long", prompt="a b", max_tokens=100)  # needs ~110 tokens of cache: more than 32
        out = _feed_as_a_worker(feed, [short[:3], [long], short[3:]], held=3)
        assert out["long"].completion_tokens == 100 and out["long"].error is None
        assert all(out[j.custom_id].completion_tokens == 8 for j in short)
    finally:
        e.close()


def test_occupancy_windows_split_where_the_sequences_in_flight_change_or_time_runs_out() -> None:
    windows: list[OccupancyWindow] = []
    occ = Occupancy(4, windows.append, window_s=3.0)
    for t, n in enumerate([2, 2, 3, 4, 4, 4, 4, 4, 3, 1, 1]):
        occ.record(n, now=float(t))
    occ.flush()
    assert [(w.start, w.rounds, w.in_flight_sum, w.in_flight_max) for w in windows] == [
        (0, 2, 4, 2), (2, 1, 3, 3), (3, 4, 16, 4), (7, 1, 4, 4), (8, 1, 3, 3), (9, 2, 2, 1)]


def test_the_report_counts_dips_between_the_first_full_batch_and_the_drain(tmp_path: Path) -> None:
    from costserve.report.occupancy import group_occupancy
    from costserve.store.results import results_db
    from costserve.store.result_records import save_occupancy, save_result

    con = results_db(tmp_path)
    for i in range(40):  # 40 jobs finishing at t = 100 + i
        save_result(con, f"c{i}", i, "shard-0", {}, 1, 1, finished=100.0 + i)
    rows = [(0, 10, 8, 40, 7, 8),  # ramp-up: before the first full batch, not counted
            (10, 20, 10, 80, 8, 8), (20, 30, 10, 50, 5, 8),  # steady: full, then a dip (counted)
            (30, 50, 10, 80, 8, 8),
            (133, 140, 7, 20, 4, 8)]  # drain: fewer than 8 of the 40 jobs were left from t = 133
    for start, end, rounds, total, peak, slots in rows:
        save_occupancy(con, "w/1", "local-R", start, end, rounds, total, peak, slots)
    (g,) = group_occupancy(con, 40).values()
    assert g.steady == pytest.approx((80 + 50 + 80) / 30) and g.steady_rounds == 30 and g.peak == 8
    assert g.ratio == pytest.approx(7 / 8)
    con.execute("DELETE FROM occupancy")
    save_occupancy(con, "w/1", "local-R", 0, 10, 10, 30, 3, 8)
    assert group_occupancy(con, 40)["local-R"].steady is None  # never full: no steady state to speak of
    assert group_occupancy(sqlite3.connect(":memory:"), 40) == {}  # a run from before the table
