"""Result lines are OpenAI Batch output lines field for field, and failed requests go to their own error file."""

from __future__ import annotations

import json
from pathlib import Path

from openai_lines import check_error_line, check_output_line

from costserve.cli import app
from costserve.run.end import write_results_file
from costserve.store.results import results_db
from costserve.store.result_records import save_result


def _chat(cid: str, text: str, max_tokens: int = 6) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                                "temperature": 0}}) + "\n"


def test_run_local_writes_openai_lines_and_an_error_file(cli, tmp_path: Path, smollm2_dir: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    too_long = "word " * 9000  # past SmolLM2's 8,192-token context: run-local has no model rules, the engine refuses it
    jobs.write_text(_chat("a", "Hi") + _chat("long", too_long) + _chat("b", "Name a colour")
                    + json.dumps({"id": "c", "prompt": "Once upon", "max_tokens": 5}) + "\n")
    out = tmp_path / "jobs.results.jsonl"
    result = cli.invoke(app, ["run-local", str(jobs), "--model", str(smollm2_dir)])
    assert result.exit_code == 1, result.output  # one request failed
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    errors = [json.loads(x) for x in (tmp_path / "jobs.results.errors.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["a", "b", "c"] and [x["custom_id"] for x in errors] == ["long"]
    for line in lines:
        check_output_line(line, "SmolLM2-135M")  # the catalog's name, not the converted directory's
    check_error_line(errors[0])
    assert "context" in errors[0]["error"]["message"]
    assert len({x["id"] for x in lines + errors}) == 4  # a new id per result
    assert len({x["response"]["body"]["system_fingerprint"] for x in lines}) == 1  # one configuration, one fingerprint
    again = cli.invoke(app, ["run-local", str(jobs), "--model", str(smollm2_dir)])
    assert again.exit_code == 1
    rerun = {json.loads(x)["custom_id"]: json.loads(x) for x in out.read_text().splitlines()}
    assert all(rerun[x["custom_id"]]["id"] != x["id"] for x in lines)  # ids are per result, not per custom_id
    assert all(rerun[x["custom_id"]]["response"]["request_id"] != x["response"]["request_id"] for x in lines)


def test_a_runs_results_split_into_output_and_error_files(tmp_path: Path) -> None:
    con = results_db(tmp_path)
    ok = {"id": "batch_req_1", "custom_id": "ok", "response": {"status_code": 200, "request_id": "r1", "body": {}},
          "error": None}
    bad = {"id": "batch_req_2", "custom_id": "bad", "response": None,
           "error": {"code": "job_failed", "message": "failed on attempt 4 of 4: RuntimeError: boom"}}
    save_result(con, "bad", 2, "shard-00000", bad, 4)
    save_result(con, "ok", 1, "shard-00000", ok, 1)
    out = tmp_path / "x.results.jsonl"
    assert write_results_file(con, out) == (1, 1)
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == ["ok"]
    (error,) = [json.loads(x) for x in (tmp_path / "x.results.errors.jsonl").read_text().splitlines()]
    check_error_line(error)
    assert oct(out.stat().st_mode & 0o777) == oct((tmp_path / "x.results.errors.jsonl").stat().st_mode & 0o777) == "0o600"
