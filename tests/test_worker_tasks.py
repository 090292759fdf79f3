"""The Celery task shell and calibration, on the tiny random Llama (real task code, real engine)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from solver.plan import Job
from costserve.store.results import results_db
from workers.shard_io import read_shard, write_shard


def _shard_jobs() -> list[Job]:
    return [Job(custom_id=f"s{i}", line=i + 1, prompt=f"item {i}", max_tokens=4 + i, temperature=0.0) for i in range(5)] + [
        Job(custom_id="chat", line=6, messages=(("user", "hello"),), max_tokens=3, temperature=0.0)]


def test_run_shard_writes_each_result_once_even_when_redelivered(tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTSERVE_WORKER_MODEL", str(tiny_llama_dir))
    from workers import tasks

    monkeypatch.setattr(tasks, "_engine", None)
    jobs = _shard_jobs()
    write_shard(tmp_path, "shard-0", jobs)
    results_db(tmp_path).close()  # the driver creates the results database before workers start
    assert read_shard(tmp_path, "shard-0") == jobs
    first = tasks.run_shard.apply(args=(str(tmp_path), "shard-0")).get()
    assert first["jobs"] == 6 and first["errors"] == 0
    results_db(tmp_path).execute("DELETE FROM results WHERE custom_id IN ('s1', 'chat')")  # as if cut short
    again = tasks.run_shard.apply(args=(str(tmp_path), "shard-0")).get()  # a redelivery: only what is missing runs
    assert again["jobs"] == 2
    rows = results_db(tmp_path).execute("SELECT custom_id, line, output, attempt FROM results ORDER BY line").fetchall()
    assert [r[0] for r in rows] == [j.custom_id for j in jobs]  # each once, none lost
    assert {r[0]: r[3] for r in rows if r[3] > 1} == {"s1": 2, "chat": 2}  # the second start of the shard
    outputs = [json.loads(r[2]) for r in rows]
    assert outputs[-1]["response"]["body"]["object"] == "chat.completion"
    assert [o["response"]["body"]["usage"]["completion_tokens"] <= j.max_tokens for o, j in zip(outputs, jobs)] == [True] * 6
    tasks._engine.close()


def test_calibration_profile_shape_and_single_layer_prediction(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from workers.calibrate import QualityProfile, calibrate, replica_perplexity

    seen: list[int] = []
    profile = calibrate(tiny_llama_dir, "tiny", bits=(8, 4), progress=lambda done, total: seen.append(done))
    assert seen == list(range(1, 9))
    assert set(profile.layer_loss) == {8, 4} and all(len(v) == 4 for v in profile.layer_loss.values())
    assert math.isfinite(profile.base_perplexity) and profile.base_perplexity > 1
    # one layer at 4 bits: the prediction is that layer's own measurement
    bits = [32, 4, 32, 32]
    measured = replica_perplexity(tiny_llama_dir, bits)
    assert profile.predicted_perplexity(bits) == pytest.approx(measured, rel=1e-4)
    assert replica_perplexity(tiny_llama_dir, [4] * 4) != pytest.approx(profile.base_perplexity, rel=1e-6)
    path = profile.save(tmp_path / "q.json")
    assert QualityProfile.load(path) == profile


def test_planner_reads_a_calibrated_profile(costserve_home: Path) -> None:
    from catalog.quality_profiles import load_layer_loss, user_profile_path
    from workers.calibrate import QualityProfile

    assert load_layer_loss("NoSuchModel") is None
    QualityProfile("NoSuchModel", 9.0, 512, {8: [0.01, 0.02], 4: [0.1, 0.2]}).save(user_profile_path("NoSuchModel"))
    assert load_layer_loss("NoSuchModel") == {8: [0.01, 0.02], 4: [0.1, 0.2]}




def test_run_local_command_writes_results_in_input_order_and_names_bad_lines(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"id": "long", "prompt": "one two three", "max_tokens": 9, "temperature": 0}),
        json.dumps({"id": "bad", "prompt": "x", "max_tokens": "many"}),
        json.dumps({"id": "short", "prompt": "four", "max_tokens": 2, "temperature": 0}),
        json.dumps({"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}}),
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    result = cli.invoke(app, ["run-local", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out)])
    assert result.exit_code == 1, result.output  # a bad line was skipped: not a clean run
    assert "jobs.jsonl:2" in result.output and "max_tokens" in result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in lines] == ["long", "short", "chat"]  # input order, bad line left out
    usage = [r["response"]["body"]["usage"]["completion_tokens"] for r in lines]
    assert usage[0] <= 9 and usage[1] <= 2 and usage[2] <= 3 and all(r["error"] is None for r in lines)


def test_a_poison_job_fails_alone_after_its_retries_and_the_rest_of_its_shard_completes(
        tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that really breaks the engine: a seed past 64 bits (validation refuses it; a shard file written by
    anything else can still carry it) makes torch's generator raise while the batch is being set up."""
    monkeypatch.setenv("COSTSERVE_WORKER_MODEL", str(tiny_llama_dir))
    from workers import tasks

    monkeypatch.setattr(tasks, "_engine", None)
    jobs = _shard_jobs()[:3] + [Job(custom_id="poison", line=4, prompt="hi", max_tokens=3, temperature=0.7, seed=2**64)]
    write_shard(tmp_path, "shard-0", jobs)
    results_db(tmp_path).close()
    tasks.run_shard.apply(args=(str(tmp_path), "shard-0"))  # eager: Celery runs each retry at once
    con = results_db(tmp_path)
    rows = {cid: (json.loads(out)["error"], attempt) for cid, out, attempt in con.execute("SELECT custom_id, output, attempt FROM results")}
    assert set(rows) == {"s0", "s1", "s2", "poison"}  # every job exactly once
    assert all(error is None and attempt == tasks.MAX_ATTEMPTS for cid, (error, attempt) in rows.items() if cid != "poison")
    error, attempt = rows["poison"]
    assert attempt == tasks.MAX_ATTEMPTS and error["message"].startswith(f"failed on attempt {tasks.MAX_ATTEMPTS} of")
    assert "Overflow" in error["message"]
    failures = con.execute("SELECT attempt, final, error FROM shard_failures ORDER BY attempt").fetchall()
    assert [(a, f) for a, f, _ in failures] == [(a, 0) for a in range(1, tasks.MAX_ATTEMPTS)]  # retried, then isolated
    if tasks._engine is not None:
        tasks._engine.close()


def test_a_worker_refuses_a_task_of_another_run(tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.exceptions import Reject

    from workers import tasks

    monkeypatch.setenv(tasks.RUN_ENV, "20260101-000000-aaaa")
    run_b = tmp_path / "20260101-000000-bbbb"
    write_shard(run_b, "shard-0", _shard_jobs())
    results_db(run_b).close()
    result = tasks.run_shard.apply(args=(str(run_b), "shard-0"))
    assert isinstance(result.result, Reject) and "refused by a worker of run 20260101-000000-aaaa" in str(result.result)
    assert results_db(run_b).execute("SELECT COUNT(*) FROM shard_starts").fetchone()[0] == 0  # nothing touched


def test_shards_that_start_together_share_one_feed_and_one_engine(tmp_path: Path, tiny_llama_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's task threads start at once when it reserves several shards: two feeds would build two engines,
    each with its own pipeline-stage processes (seen under load in CI). The feed is built slowly here, as on a busy
    machine, to widen the race."""
    import threading
    import time

    monkeypatch.setenv("COSTSERVE_WORKER_MODEL", str(tiny_llama_dir))
    from workers import tasks

    monkeypatch.setattr(tasks, "_engine", None)
    monkeypatch.setattr(tasks, "_feed", None)
    feeds, loads = [], []
    real_feed, real_load = tasks.EngineFeed, tasks._load_engine

    def slow_feed(*args: object) -> object:
        time.sleep(0.05)
        feeds.append(real_feed(*args))
        return feeds[-1]

    def counted_load() -> object:
        loads.append(1)
        return real_load()

    monkeypatch.setattr(tasks, "EngineFeed", slow_feed)
    monkeypatch.setattr(tasks, "_load_engine", counted_load)
    for s in range(4):
        write_shard(tmp_path, f"shard-{s}", [Job(custom_id=f"{s}-{i}", line=4 * s + i + 1, prompt=f"item {i}", max_tokens=3,
                                                 temperature=0.0) for i in range(4)])
    results_db(tmp_path).close()
    threads = [threading.Thread(target=tasks.run_shard.apply, args=((str(tmp_path), f"shard-{s}"),)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(feeds) == 1 and len(loads) == 1
    assert results_db(tmp_path).execute("SELECT COUNT(*) FROM results").fetchone()[0] == 16
    tasks._engine.close()
