"""The small conventions a first-time user expects (issue: the CLI a platform engineer trusts on first use)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costserve.cli import app
from costserve.store.runs import RunStore, list_runs


def _jobs(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"u{i}", "prompt": f"hi {i}", "max_tokens": 2}) + "\n" for i in range(3)))
    return jobs


@pytest.mark.slow
def test_short_options_the_latest_run_id_prefixes_and_no_empty_errors_file(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                           tiny_llama_dir: Path) -> None:
    jobs = _jobs(tmp_path)
    both = cli.invoke(app, ["submit", str(jobs), "-i", str(jobs)])
    assert both.exit_code == 2 and "give the job file once: JOBS or -i/--input JOBS" in both.output
    out = tmp_path / "out" / "results.jsonl"
    result = cli.invoke(app, ["submit", "-i", str(jobs), "-o", str(out), "--model", str(tiny_llama_dir), "--yes"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == ["u0", "u1", "u2"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.jsonl"]  # nothing failed: no empty errors file
    (run,) = list_runs()
    latest = cli.invoke(app, ["status", "--json"])  # no run id: the latest run
    assert latest.exit_code == 0 and json.loads(latest.stdout)["run"] == run.id
    prefix = cli.invoke(app, ["status", run.id[:-3], "--json"])
    assert prefix.exit_code == 0 and json.loads(prefix.stdout)["run"] == run.id
    other = RunStore.create(jobs, 3)
    assert json.loads(cli.invoke(app, ["status", "--json"]).stdout)["run"] == other.id  # the newest now
    common = next(i for i, (a, b) in enumerate(zip(run.id, other.id)) if a != b)
    ambiguous = cli.invoke(app, ["status", run.id[:common]])
    (line,) = ambiguous.output.strip().splitlines()
    assert ambiguous.exit_code == 2 and f"matches 2 runs ({run.id}, {other.id}): give more of it" in line
    missing = cli.invoke(app, ["status", "1999"])
    assert missing.exit_code == 2 and "no such run '1999'" in missing.output
    _one_set_of_units(cli, run.id)


def _keys(value: object) -> set[str]:
    """Every key of every object inside a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    return {k for v in value for k in _keys(v)} if isinstance(value, list) else set()


def _one_set_of_units(cli, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """Item 3 on a finished run: one JSON convention (snake_case keys, base units, ISO-8601 times) in every --json, one
    duration and money format in every table, one planned figure per quantity, and a local run's report without the
    cloud's baselines unless asked."""
    import re
    from datetime import datetime

    documents = {args: json.loads(cli.invoke(app, [*args, "--json"]).stdout) for args in
                 [("runs",), ("status", run_id), ("report", run_id), ("report", "--since", "1d"), ("calibration", "show")]}
    for args, document in documents.items():
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in _keys(document)), (args, sorted(_keys(document)))
    runs, status, report, trend, calibration = documents.values()
    for when in [runs[0]["last_event_at"], *(e["at"] for e in status["events"]), trend[0]["created"], calibration[0]["at"]]:
        assert datetime.fromisoformat(when).tzinfo is not None  # ISO-8601 with its zone, not a formatted local time
    totals = report["totals"]
    assert isinstance(totals["makespan_s"], float) and isinstance(totals["cost_usd"], float)
    assert isinstance(status["spent_usd"], float)
    checks = {c["metric"]: c for c in report["prediction"]["checks"]}
    assert round(checks["output_tokens_per_s"]["predicted"], 2) == totals["planned_output_tokens_per_s"]  # one figure
    shown = cli.invoke(app, ["report", run_id]).output
    started = totals["planned_output_tokens_per_s_once_started"]
    for planned in re.findall(r"output tokens/s against the ([\d,.]+) planned", shown):
        assert float(planned.replace(",", "")) == pytest.approx(started, abs=0.051)  # the totals' once-started figure
    assert re.search(r"(\d+m\d\ds|\b\d+s)\b", shown) and "$" in shown  # durations and money as every view writes them
    assert "×" in shown and "x)" not in shown  # ratios one way
    words = " ".join(shown.split())
    assert "what the cloud would cost for the same batch" not in words and f"costserve report {run_id} --baselines" in words
    asked = cli.invoke(app, ["report", run_id, "--baselines"]).output
    assert "what the cloud would cost for the same batch" in " ".join(asked.split())


def test_status_without_any_run_is_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli.invoke(app, ["status"])
    assert result.exit_code == 2 and "no runs yet" in result.output and "Missing argument" not in result.output


def test_the_embedded_models_quality_line_states_its_reference(cli) -> None:  # type: ignore[no-untyped-def]
    from conftest import EXAMPLES

    result = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl")])
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # the console wraps long lines at its width
    line = words[words.index("quality target"):].split(" output: ")[0]
    assert "reference: its weights as shipped, a 4-bit GGUF de-quantized to 16-bit" in line


def _batch_lines(path: Path, models: list[str]) -> Path:
    path.write_text("".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": m, "messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 20}}) + "\n" for i, m in enumerate(models)))
    return path


def test_the_model_comes_from_the_job_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    llama = _batch_lines(tmp_path / "llama.jsonl", ["meta-llama/Llama-3.1-8B-Instruct"] * 4)  # a Hugging Face id
    planned = cli.invoke(app, ["plan", str(llama), "--json"])
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["model"] == "Llama-3.1-8B"
    assert "model Llama-3.1-8B: named by 4 line(s) of llama.jsonl" in planned.stderr
    other = cli.invoke(app, ["submit", str(llama), "--model", "Qwen2.5-7B", "--backend", "sky", "--yes"])
    (line,) = other.output.strip().splitlines()  # one line, not one per job line
    assert other.exit_code == 2 and "4 line(s) name another model than --model Qwen2.5-7B" in line
    assert "--model-override" in line
    overridden = cli.invoke(app, ["plan", str(llama), "--model", "Qwen2.5-7B", "--json"])  # plan: --model wins
    assert overridden.exit_code == 0 and json.loads(overridden.stdout)["model"] == "Qwen2.5-7B"
    assert overridden.stderr.count("--model Qwen2.5-7B overrides the model 4 line(s) of llama.jsonl name") == 1
    hosted = cli.invoke(app, ["submit", str(_batch_lines(tmp_path / "gpt.jsonl", ["gpt-4o-mini"] * 3)), "--yes"])
    (line,) = hosted.output.strip().splitlines()
    assert hosted.exit_code == 2 and "'gpt-4o-mini' is no catalog model" in line and "--model-override" in line
    mixed = cli.invoke(app, ["plan", str(_batch_lines(tmp_path / "mixed.jsonl", ["Llama-3.1-8B", "Qwen2.5-7B"]))])
    assert mixed.exit_code == 2 and "lines name 2 models" in mixed.output and "split the file" in mixed.output
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"id": "p", "prompt": "hi"}\n')
    default = cli.invoke(app, ["plan", str(plain), "--json"])
    assert default.exit_code == 0 and json.loads(default.stdout)["model"] == "SmolLM2-135M"  # the embedded default


@pytest.mark.parametrize("columns", ["80", "120"])
def test_identifying_columns_are_never_cut_and_every_listing_has_json(tmp_path: Path, columns: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys

    from catalog.load import load_models

    def costserve(*args: str) -> str:
        env = {**os.environ, "COLUMNS": columns}  # piped, as in a script or CI log: COLUMNS is the width
        done = subprocess.run([sys.executable, "-m", "costserve.cli", *args], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert all(len(line) <= int(columns) for line in costserve("catalog", "models").splitlines())
    table = costserve("catalog", "models")
    for model, hf_id in load_models()[["model", "hf_id"]].itertuples(index=False):
        assert f" {model} " in table and f" {hf_id} " in table  # whole, on one line each
    assert {m["model"] for m in json.loads(costserve("catalog", "models", "--json"))} == set(load_models()["model"])
    llama = _batch_lines(tmp_path / "llama.jsonl", ["Llama-3.1-8B"] * 4)
    plan = json.loads(costserve("plan", str(llama), "--clouds", "lambda", "--json"))
    shown = costserve("plan", str(llama), "--clouds", "lambda")
    for g in plan["groups"]:
        assert f"{g['cloud']}/{g['region']}/{g['instance_type']}" in shown
    offerings = json.loads(costserve("catalog", "offerings", "--cloud", "lambda", "--json"))
    listed = costserve("catalog", "offerings", "--cloud", "lambda")
    assert offerings and all(f" {o['instance_type']} " in listed and f" {o['region']} " in listed for o in offerings)
    assert isinstance(json.loads(costserve("catalog", "gpus", "--json")), list)


@pytest.mark.slow
def test_plan_review_submit_runs_that_plan_or_says_what_changed(cli, tmp_path: Path, costserve_home: Path,  # type: ignore[no-untyped-def]
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import pandas as pd

    from catalog.load import offerings_path, user_catalog_dir
    from costserve.store.runs import runs_dir

    jobs = _batch_lines(tmp_path / "llama.jsonl", ["Llama-3.1-8B"] * 6)
    reviewed = tmp_path / "plan.json"
    planned = cli.invoke(app, ["plan", str(jobs), "--clouds", "aws", "--deadline", "3h", "--out", str(reviewed)])
    assert planned.exit_code == 0 and f"--plan {reviewed}` runs it" in " ".join(planned.output.split())
    local = cli.invoke(app, ["submit", str(jobs), "--plan", str(reviewed)])
    assert local.exit_code == 2 and "pass --backend sky with it" in local.output
    monkeypatch.setenv("HF_TOKEN", "hf_for_the_gated_model")
    ran = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--plan", str(reviewed), "--dry-run"])
    assert ran.exit_code == 0, ran.output
    assert f"--plan {reviewed}: running that plan" in ran.output and "planning (fleet MILP" not in ran.output
    (run_dir,) = runs_dir().iterdir()
    run_plan, given = (json.loads(p.read_text()) for p in (run_dir / "plan.json", reviewed))
    assert run_plan["groups"] == given["groups"] and run_plan["cost"] == given["cost"]  # exactly that plan
    assert json.loads((run_dir / "request.json").read_text())["deadline_s"] == 3 * 3600  # its deadline too

    def refused(*extra: str) -> str:
        result = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--plan", str(reviewed), "--yes", *extra])
        (line,) = result.output.strip().splitlines()[-1:]
        assert result.exit_code == 2 and "plan again" in line, result.output
        return line

    other = refused("--model", "Qwen2.5-7B", "--model-override")
    assert "the model (Llama-3.1-8B planned, Qwen2.5-7B now)" in other
    original = jobs.read_text()
    jobs.write_text(original + original.splitlines()[0].replace('"c0"', '"c99"') + "\n")
    assert "llama.jsonl changed since" in refused()
    jobs.write_text(original)
    g0 = given["groups"][0]
    prices = pd.read_csv(offerings_path(None))  # the shipped catalog the plan was made from
    column = "spot_price_per_hour" if g0["spot"] else "price_per_hour"
    mine = (prices["cloud"] == g0["cloud"]) & (prices["region"] == g0["region"]) & (prices["instance_type"] == g0["instance_type"])
    prices.loc[mine, column] = prices.loc[mine, column] * 1.5
    user_catalog = user_catalog_dir(costserve_home) / "offerings.csv"
    user_catalog.parent.mkdir(parents=True, exist_ok=True)
    prices.to_csv(user_catalog, index=False)  # as `costserve catalog refresh` would write new prices
    line = refused()
    assert f"g0 {g0['cloud']}/{g0['region']}/{g0['instance_type']}" in line and "planned" in line
    shutil.rmtree(user_catalog.parent)


@pytest.mark.parametrize("raw, model", [
    (b'{"custom_id": "a", "body": {"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": []}}',
     "meta-llama/Llama-3.1-8B-Instruct"),
    (b'{"prompt": "a", "model":"m"}', "m"),
    (b'{"id": "a", "prompt": "say \\"model\\": \\"x\\""}', None),  # inside a string: not the line's model
    (b'{"model": "a", "metadata": {"model": "b"}}', "a"),  # twice: the line is parsed to tell which
    (b'{"body": {"model": "q\\u00e9"}}', "q\u00e9"),  # an escape: parsed
    (b'{"model": null}', None),
    (b'not json "model"', None),
])
def test_the_model_a_line_names(raw: bytes, model: str | None) -> None:
    from costserve.jobs.file_model import line_model

    assert line_model(raw) == model


def test_a_trend_with_no_runs_still_writes_its_files(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    html, csv = tmp_path / "trend.html", tmp_path / "trend.csv"
    html.write_text("last night's page")  # a nightly job's page must not go stale
    result = cli.invoke(app, ["report", "--since", "1d", "--html", str(html), "--csv", str(csv)])
    assert result.exit_code == 0 and "no runs in the last 1d" in result.output
    assert "costserve runs in the last 1d" in html.read_text() and csv.read_text().startswith("run,created,")
    assert json.loads(cli.invoke(app, ["report", "--since", "1d", "--json"]).stdout) == []
