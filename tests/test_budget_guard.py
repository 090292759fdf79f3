"""The budget guard: spend from uptimes × prices on a fake clock, and a real run stopped at its budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from costserve.run.budget import BudgetGuard, BudgetReached
from costserve.store.runs import RunStore, runs_dir


def test_the_guard_stops_while_one_more_increment_still_fits(tmp_path: Path) -> None:
    jobs = tmp_path / "j.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    store = RunStore.create(jobs, 1)
    store.fleet_up("g0", 0, 2, 36.0)  # 2 instances at $36/h: $0.02 per second for the fleet, $1.20 per 60 s increment
    up = store.fleet()[0][4]
    clock = {"now": up}
    guard = BudgetGuard(budget=10.0, increment_s=60.0, clock=lambda: clock["now"])
    stopped_at = None
    for second in range(0, 1000):
        clock["now"] = up + second
        try:
            assert guard.check(store) == pytest.approx(0.02 * second)
        except BudgetReached as exc:
            stopped_at = second
            assert "budget $10 reached" in str(exc)
            break
    # $10 - $1.20 = $8.80 = 440 s: the first second at which spent + one increment reaches the budget
    assert stopped_at == 440
    # even if teardown then takes a whole increment, the run spends at most the budget (never more than one increment over)
    assert store.spend(up + stopped_at + 60) <= 10.0 + 1e-9
    # projected spend over budget: no capacity added; under it: allowed
    clock["now"] = up + 100
    assert guard.may_add_capacity(store, remaining_s=300) and not guard.may_add_capacity(store, remaining_s=450)


@pytest.mark.slow
def test_a_run_stops_at_its_budget_and_keeps_its_results(cli, tmp_path: Path, tiny_llama_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    monkeypatch.setenv("COSTSERVE_LOCAL_CPU_PRICE_PER_HOUR", "360")  # $0.10 per second: a $6 increment
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"b{i}", "prompt": f"story {i}", "max_tokens": 200, "temperature": 0}) + "\n"
                            for i in range(400)))
    out = tmp_path / "out.jsonl"
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--yes", "--budget", "9",
                              "--shard-size", "4"])
    assert result.exit_code == 2 and "stopped at its budget" in result.output and "costserve resume" in result.output, result.output
    (run_dir,) = runs_dir().iterdir()
    store = RunStore.open(run_dir.name)
    ((_, _, _, _, up, down),) = store.fleet()
    assert down is not None
    assert store.spend() <= 9.0 + 6.0  # never more than one billing increment of the running fleet over
    kept = out.read_text().splitlines()
    assert len(kept) == store.results_done() < 400  # every finished result kept
    assert store.last_event()[1] == "stopped" and os.path.isfile(run_dir / "report.html")
