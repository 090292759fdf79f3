"""Every run calibrates the next: a finished local run records its start-up and work factor, and the next plan of the
same machine, model and replica starts from them (costserve/store/calibration.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costserve.store.calibration import calibration_for, record_run, reset_calibration
from costserve.store.runs import RunStore

pytestmark = pytest.mark.slow


def test_recent_runs_weigh_more(tmp_path: Path) -> None:
    path = tmp_path / "calibration.sqlite"
    assert calibration_for("m", "model", "r", path) is None
    record_run("a", "m", "model", "r", 40.0, 4.0, path)
    record_run("b", "m", "model", "r", 10.0, 1.0, path)
    record_run("x", "other machine", "model", "r", 99.0, 9.0, path)
    got = calibration_for("m", "model", "r", path)
    assert got is not None and got.runs == 2
    assert got.startup_s == pytest.approx((10.0 + 0.5 * 40.0) / 1.5) and got.work_factor == pytest.approx((1.0 + 0.5 * 4.0) / 1.5)
    assert reset_calibration(path) == 3 and calibration_for("m", "model", "r", path) is None


def test_the_second_run_of_a_batch_is_planned_from_the_first(cli, tmp_path: Path, smollm2_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"c{i:02d}", "prompt": f"Write one sentence about the number {i}.",
                                        "max_tokens": 12, "temperature": 0}) + "\n" for i in range(24)))
    predicted, actual = [], []
    for attempt in (1, 2):
        out = tmp_path / f"results-{attempt}.jsonl"
        result = cli.invoke(app, ["submit", str(jobs), "--model", str(smollm2_dir), "--out", str(out), "--shard-size", "4",
                                  "--yes", "--json"])
        assert result.exit_code == 0, result.output
        created = json.loads(result.stdout.splitlines()[0])
        plan = RunStore.open(created["run"]).plan()
        assert plan is not None
        report = json.loads(cli.invoke(app, ["report", created["run"], "--json"]).stdout)
        predicted.append(plan.makespan_s)
        actual.append(report["totals"]["makespan s"])
        group = plan.groups[0]
        if attempt == 1:
            assert group.calibration is None and group.startup_s == 0 and "roofline guess" in result.output
        else:  # the first run's start-up and work factor are in the plan, and said
            assert group.calibration is not None and group.calibration.startswith("calibrated from 1 run")
            assert group.startup_s > 0 and "calibrated from 1 run" in result.output
    first_error, second_error = predicted[0] / actual[0], predicted[1] / actual[1]
    assert abs(second_error - 1) <= 0.2, f"second plan {predicted[1]:.1f}s vs {actual[1]:.1f}s (first: {first_error:.2f}x)"
    shown = json.loads(cli.invoke(app, ["calibration", "show", "--json"]).stdout)
    assert len(shown) == 2 and all(row["model"] == plan.model for row in shown)
    assert "forgot 2" in cli.invoke(app, ["calibration", "reset", "--yes"]).output
    assert json.loads(cli.invoke(app, ["calibration", "show", "--json"]).stdout) == []
