"""The submit use case as a library call: refusals are named errors raised before a run exists; a stop's typed reason
reaches `status` and `runs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from costserve.config import load_settings
from costserve.errors import NotConfirmed, OverBudget, RunStopped, StopReason
from costserve.request import BatchRequest
from costserve.run.submit import GoAhead, submit
from costserve.store.run_state import Event, RunState
from costserve.store.runs import RunStore, list_runs


class Declines(GoAhead):
    """A view that sees the plan and says no."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.plans: list[str] = []

    def plan(self, plan: Any, title: str) -> None:
        self.plans.append(title)

    def confirm(self, what: str) -> bool:
        self.asked.append(what)
        return False


def _jobs(tmp_path: Path, n: int = 3) -> Path:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": f"hi {i}", "max_tokens": 4}) + "\n" for i in range(n)))
    return jobs


def test_a_declined_submit_raises_not_confirmed_and_creates_no_run(tmp_path: Path, tiny_llama_dir: Path) -> None:
    view = Declines()
    request = BatchRequest(jobs=_jobs(tmp_path), model=str(tiny_llama_dir))
    with pytest.raises(NotConfirmed) as refused:
        submit(request, load_settings(), view=view)
    assert refused.value.exit_code == 1 and "nothing was run" in str(refused.value)
    assert view.plans == [f"3 jobs of {tiny_llama_dir.name} on this machine"]
    assert view.asked == ["run 3 jobs on this machine"]
    assert list_runs() == []


def test_a_budget_below_the_predicted_cost_raises_over_budget_before_asking(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    view = Declines()
    request = BatchRequest(jobs=_jobs(tmp_path), model=str(tiny_llama_dir), budget=1e-9)
    with pytest.raises(OverBudget) as refused:
        submit(request, load_settings(), view=view)
    assert refused.value.budget == 1e-9 and refused.value.predicted > 1e-9 and refused.value.exit_code == 2
    assert "raise --budget" in str(refused.value)
    assert view.asked == [] and list_runs() == []


def test_a_stop_carries_its_reason_to_state_status_and_runs(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    store = RunStore.create(_jobs(tmp_path), 3)
    assert store.state() is RunState.INTERRUPTED  # no process drives it
    store.claim_driver()
    assert store.state() is RunState.RUNNING and store.stop_reason() is None
    stop = RunStopped("budget $1 reached", StopReason.BUDGET)
    store.record_stop(stop.reason, f"stopped at its budget: {stop}")
    assert store.state() is RunState.STOPPED and store.stop_reason() is StopReason.BUDGET
    status = cli.invoke(app, ["status", store.id, "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.stdout)
    assert shown["state"] == "stopped" and shown["stop_reason"] == "budget"
    runs = cli.invoke(app, ["runs"])
    assert runs.exit_code == 0 and "stopped (budget)" in runs.output
    store.event(Event.RESUMED, "0/3 jobs had results")
    assert store.state() is RunState.RUNNING and store.stop_reason() is None
    store.event(Event.FINISHED, "out.jsonl")
    assert store.state() is RunState.FINISHED and store.stop_reason() is None
