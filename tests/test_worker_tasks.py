"""The Celery task and calibration, on the tiny random Llama (real task code, real engine; Celery in eager mode)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from solver.plan import Job
from costserve.store.results import results_db
from costserve.store.result_records import ingest_report


def _shard_jobs() -> list[Job]:
    return [Job(custom_id=f"s{i}", line=i + 1, prompt=f"item {i}", max_tokens=4 + i, temperature=0.0) for i in range(5)] + [
        Job(custom_id="chat", line=6, messages=(("user", "hello"),), max_tokens=3, temperature=0.0)]


def _payload(jobs: list[Job]) -> list[dict[str, object]]:
    return [j.to_json() for j in jobs]


def test_a_shard_report_holds_each_job_once_and_a_retry_runs_only_what_is_missing(
        tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTSERVE_WORKER_MODEL", str(tiny_llama_dir))
    from workers import tasks

    monkeypatch.setattr(tasks, "_engine", None)
    jobs = _shard_jobs()
    first = tasks.run_shard.apply(args=("RUN", "shard-0", _payload(jobs))).get()
    assert sorted(o["custom_id"] for o in first["outputs"]) == sorted(j.custom_id for j in jobs)
    assert first["attempt"] == 1 and first["finished"] is not None and first["failures"] == []
    kept = [o for o in first["outputs"] if o["custom_id"] not in ("s1", "chat")]  # as if cut short after four
    again = tasks.run_shard.apply(args=("RUN", "shard-0", _payload(jobs)), kwargs={"sent": 2, "carried": kept}).get()
    assert {o["custom_id"]: o["attempt"] for o in again["outputs"] if o["attempt"] > 1} == {"s1": 2, "chat": 2}
    con = results_db(tmp_path)  # the driver writes reports; a repeated one changes nothing
    for report in (first, again, again):
        ingest_report(con, report, "local")
    rows = con.execute("SELECT custom_id, line, output, attempt FROM results ORDER BY line").fetchall()
    assert [r[0] for r in rows] == [j.custom_id for j in jobs]  # each once, none lost
    assert con.execute("SELECT COUNT(*) FROM shard_runs").fetchone()[0] == 2  # two runs of the shard, recorded once each
    outputs = [json.loads(r[2]) for r in rows]
    assert outputs[-1]["response"]["body"]["object"] == "chat.completion"
    assert [o["response"]["body"]["usage"]["completion_tokens"] <= j.max_tokens for o, j in zip(outputs, jobs)] == [True] * 6
    tasks._engine.close()


def test_calibration_profile_shape_and_single_layer_prediction(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from workers.quality_profile import QualityProfile, profile_quality, replica_perplexity

    seen: list[int] = []
    profile = profile_quality(tiny_llama_dir, "tiny", bits=(8, 4), progress=lambda done, total: seen.append(done))
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
    from workers.quality_profile import QualityProfile

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
    report = tasks.run_shard.apply(args=("RUN", "shard-0", _payload(jobs))).get()  # eager: each retry runs at once
    rows = {o["custom_id"]: (o["output"]["error"], o["attempt"]) for o in report["outputs"]}
    assert sorted(rows) == sorted(["s0", "s1", "s2", "poison"]) and len(report["outputs"]) == 4  # every job exactly once
    assert all(error is None and attempt == tasks.MAX_ATTEMPTS for cid, (error, attempt) in rows.items() if cid != "poison")
    error, attempt = rows["poison"]
    assert attempt == tasks.MAX_ATTEMPTS and error["message"].startswith(f"failed on attempt {tasks.MAX_ATTEMPTS} of")
    assert "Overflow" in error["message"]
    assert [(f["attempt"], f["final"]) for f in report["failures"]] == [(a, False) for a in range(1, tasks.MAX_ATTEMPTS)]
    if tasks._engine is not None:
        tasks._engine.close()


def test_a_worker_refuses_a_task_of_another_run(tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.exceptions import Reject

    from workers import tasks

    monkeypatch.setenv(tasks.RUN_ENV, "20260101-000000-aaaa")
    monkeypatch.setattr(tasks, "worker_feed", lambda: pytest.fail("a refused task must not reach the engine"))
    result = tasks.run_shard.apply(args=("20260101-000000-bbbb", "shard-0", _payload(_shard_jobs())))
    assert isinstance(result.result, Reject) and "refused by a worker of run 20260101-000000-aaaa" in str(result.result)


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
    reports: list[dict[str, object]] = []

    def run(s: int) -> None:
        jobs = [Job(custom_id=f"{s}-{i}", line=4 * s + i + 1, prompt=f"item {i}", max_tokens=3, temperature=0.0)
                for i in range(4)]
        reports.append(tasks.run_shard.apply(args=("RUN", f"shard-{s}", _payload(jobs))).get())

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(feeds) == 1 and len(loads) == 1
    assert sorted(len(r["outputs"]) for r in reports) == [4] * 4  # type: ignore[arg-type]
    tasks._engine.close()
