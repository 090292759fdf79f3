"""costserve from Python (`costserve.plan`, `costserve.submit`) and re-submitting a half-finished batch (--resume-from)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai_lines import check_output_line

import costserve
from costserve.errors import CostserveError
from costserve.store.results import CARRIED_SHARD, results_db
from costserve.store.runs import RunStore
from costserve.store.shard_files import read_shard

IDS = [f"q{i}" for i in range(8)]


def _jobs(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"custom_id": c, "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"messages": [{"role": "user", "content": f"Count to {i}"}],
                                                 "max_tokens": 8, "temperature": 0}}) + "\n"
                            for i, c in enumerate(IDS)))
    return jobs


def test_plan_from_python_is_the_clis_plan(tmp_path: Path) -> None:
    plan = costserve.plan(_jobs(tmp_path), model="Llama-3.1-8B", deadline="2h", budget=40)
    assert plan.model == "Llama-3.1-8B" and 0 < plan.cost <= 40 and plan.makespan_s <= 2 * 3600
    assert sum(c.count for c in plan.workload) == len(IDS)
    with pytest.raises(CostserveError, match="'2' has no unit"):
        costserve.plan(_jobs(tmp_path), deadline="2")


def test_submit_from_python_then_resume_a_half_finished_batch_from_its_results(tmp_path: Path, smollm2_dir: Path,
                                                                               costserve_home: Path) -> None:
    # the embedded model, as a fresh home would have it once converted (the session's conversion, linked in)
    (costserve_home / "models").mkdir(parents=True)
    (costserve_home / "models" / "SmolLM2-135M").symlink_to(smollm2_dir)
    jobs = _jobs(tmp_path)
    first_out = tmp_path / "first.jsonl"
    run = costserve.submit(jobs, out=first_out, shard_size=4, clouds=["aws"])  # the embedded model, local workers
    assert run.dir.is_dir() and run.results_path == first_out
    assert json.loads((run.dir / "request.json").read_text())["clouds"] == ["aws"]  # the driver got the clouds
    outcome = run.wait(timeout=900)
    assert outcome["status"] == "finished" and outcome["succeeded"] == len(IDS) and outcome["failed"] == 0
    lines = run.results()
    assert [x["custom_id"] for x in lines] == IDS and run.errors() == []
    for line in lines:
        check_output_line(line, "SmolLM2-135M")
    assert run.report()["totals"]["results"] == len(IDS)

    # Half of it survived (the even custom_ids), plus a failed line for q1: failed lines count as not done.
    half = tmp_path / "half.jsonl"
    kept = [line for line in lines if int(line["custom_id"][1:]) % 2 == 0]
    failed = {"id": "batch_req_x", "custom_id": "q1", "response": None, "error": {"code": "job_failed", "message": "x"}}
    half.write_text("".join(json.dumps(x) + "\n" for x in kept + [failed]))
    again = subprocess.run([sys.executable, "-m", "costserve.cli", "submit", str(jobs),
                            "--resume-from", str(half), "--out", str(half), "--shard-size", "4", "--yes", "--json"],
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    created, ended = (json.loads(x) for x in again.stdout.splitlines())
    assert "4 job(s) already have a result" in again.stderr and ended["succeeded"] == len(IDS)
    final = [json.loads(x) for x in half.read_text().splitlines()]
    assert [x["custom_id"] for x in final] == IDS  # each custom_id exactly once, in input order
    assert [x for x in final if x["custom_id"] in {k["custom_id"] for k in kept}] == kept  # carried byte for byte
    store = RunStore(Path(created["run_dir"]))
    ran = [job.custom_id for sid, *_ in store.shards() for job in read_shard(store.dir, sid)]
    assert sorted(ran) == ["q1", "q3", "q5", "q7"]  # only the missing ones were queued
    con = results_db(store.dir)
    carried = {cid for cid, in con.execute("SELECT custom_id FROM results WHERE shard = ? AND attempt = 0",
                                           (CARRIED_SHARD,))}
    assert carried == {x["custom_id"] for x in kept}
    nothing = subprocess.run([sys.executable, "-m", "costserve.cli", "submit", str(jobs),
                              "--resume-from", str(half), "--yes"], capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 2 and "all 8 jobs already have a result" in nothing.stderr
