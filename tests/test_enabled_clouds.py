"""Plans cover only the clouds SkyPilot reports enabled, unless --clouds says otherwise.

`sky` is faked at the cloud boundary (tests/fixtures/fake_sky, on the PYTHONPATH of the child process
that asks SkyPilot, deploy/sky_api.py); the plan, the cache and the CLI are real.
"""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import pytest

from conftest import EXAMPLES
from costserve.cli import app
from node_sim import FAKE_SKY


def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, enabled: str, server_up: bool = False) -> Path:
    """An account whose SkyPilot check enabled `enabled` (SkyPilot's spelling: AWS,GCP); returns the fake's log dir."""
    state = tmp_path / "sky-state"
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_SKY), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_SKY_DIR", str(state))
    monkeypatch.setenv("FAKE_SKY_ENABLED", enabled)
    monkeypatch.setenv("FAKE_SKY_SERVER_UP", "1" if server_up else "0")
    monkeypatch.setenv("COSTSERVE_CHECK_CLOUDS", "true")
    return state


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.is_file() else []


def _plan(cli, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl"), "--model", "Llama-3.1-8B", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plan_and_submit_cover_only_the_enabled_clouds_and_ask_once_an_hour(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    state = account(monkeypatch, tmp_path, "AWS")
    plan = _plan(cli)
    assert plan["groups"] and {g["cloud"] for g in plan["groups"]} == {"aws"}
    assert {b["cloud"] for b in plan["baselines"] if b.get("cloud")} <= {"aws"}
    assert plan["clouds"] == "aws (enabled: SkyPilot's check)"
    assert _lines(state / "api_stop.log") == ["stopped"]  # the API server the check started was stopped again
    asked = _plan(cli, "--clouds", "aws")  # asked for: the same offerings
    assert asked["cost"] == plan["cost"] and asked["clouds"] == "aws (asked for with --clouds)"
    monkeypatch.setenv("HF_TOKEN", "hf_for_the_gated_model")
    submitted = cli.invoke(app, ["submit", str(EXAMPLES / "jobs.jsonl"), "--backend", "sky", "--model", "Llama-3.1-8B",
                                 "--model-override"])
    assert submitted.exit_code == 2 and "pass --yes" in submitted.output  # planned, then asks before launching
    assert re.search(r"clouds planned: aws \(enabled: SkyPilot's check, (0s|\d\.\ds|\d+s) ago\)", submitted.output)
    assert "gcp" not in submitted.output.split("clouds planned")[0] and "lambda" not in submitted.output
    assert _lines(state / "checks.log") == ["check"]  # the answer is cached for an hour


def test_a_cloud_the_account_lacks_is_one_line(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    account(monkeypatch, tmp_path, "AWS", server_up=True)
    result = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl"), "--model", "Llama-3.1-8B", "--clouds", "gcp"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    *_, line = result.output.strip().splitlines()  # after the one line saying --model overrides the file's model
    assert "--clouds: gcp not enabled for this account" in line and "sky check gcp" in line
    submitted = cli.invoke(app, ["submit", str(EXAMPLES / "jobs.jsonl"), "--backend", "sky", "--model", "Llama-3.1-8B",
                                 "--model-override", "--clouds", "gcp", "--yes"])
    assert submitted.exit_code != 0 and "--clouds: gcp not enabled for this account" in submitted.output


def test_no_enabled_cloud_plans_the_whole_catalog_and_says_so(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    state = account(monkeypatch, tmp_path, "", server_up=True)
    plan = _plan(cli)
    assert plan["clouds"].startswith("every cloud in the catalog (aws, azure, gcp, lambda)")
    assert "no cloud of the catalog is enabled" in plan["clouds"]
    assert not _lines(state / "api_stop.log")  # a server costserve did not start is not costserve's to stop


def test_without_skypilot_the_whole_catalog_is_planned(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "no-sky" / "sky"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("SkyPilot is not installed here")\n')
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))
    monkeypatch.setenv("COSTSERVE_CHECK_CLOUDS", "true")
    plan = _plan(cli)
    assert plan["clouds"] == "every cloud in the catalog (aws, azure, gcp, lambda): SkyPilot is not installed"


def test_schedule_add_keeps_the_clouds_and_caps_it_fires_with(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.schedule.store import load_schedules

    added = cli.invoke(app, ["schedule", "add", "nightly", str(EXAMPLES / "jobs.jsonl"), "--cron", "0 2 * * *",
                             "--backend", "sky", "--clouds", "aws", "--available", "H100=2"])
    assert added.exit_code == 0, added.output
    (entry,) = load_schedules()  # fire_schedule submits this request (tests/test_schedules.py fires one)
    assert entry.request.clouds == ("aws",) and entry.request.available == "H100=2"


def test_the_python_api_passes_clouds_to_the_plan_and_the_submit(tmp_path: Path) -> None:
    import costserve
    from costserve.errors import CostserveError

    plan = costserve.plan(EXAMPLES / "jobs.jsonl", model="Llama-3.1-8B", clouds=["aws"])
    assert {g.cloud for g in plan.groups} == {"aws"} and plan.clouds == "aws (asked for with --clouds)"
    with pytest.raises(CostserveError, match="--clouds: unknown cloud"):  # the driver planned with the clouds given
        costserve.submit(EXAMPLES / "jobs.jsonl", backend="sky", model="Llama-3.1-8B", model_override=True,
                         clouds=["aws", "moon"], out=tmp_path / "r.jsonl")
