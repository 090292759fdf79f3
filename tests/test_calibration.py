"""Every run calibrates the next: a finished local run records its start-up and work factor, and the next plan of the
same machine, model and replica starts from them (costserve/store/calibration.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costserve.store.calibration import calibration_for, output_share_for, record_run, reset_calibration
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


def test_output_share_follows_the_model_on_any_machine_and_old_stores_gain_the_column(tmp_path: Path) -> None:
    import sqlite3

    from solver.workload import bucket_workload, expected_outputs

    path = tmp_path / "calibration.sqlite"
    old = sqlite3.connect(path)  # a store written before the output share was kept
    old.execute("CREATE TABLE runs (at REAL, machine TEXT, model TEXT, replica TEXT, startup_s REAL, work_factor REAL, "
                "run TEXT PRIMARY KEY)")
    old.execute("INSERT INTO runs VALUES (1.0, 'm', 'model', 'r', 5.0, 2.0, 'old')")
    old.commit()
    old.close()
    assert output_share_for("model", path) is None  # the old row has no share
    record_run("a", "m", "model", "r", 1.0, 1.0, path, output_share=0.2)
    record_run("b", "other machine", "model", "r2", 1.0, 1.0, path, output_share=0.5)
    share = output_share_for("model", path)
    assert share is not None and share.runs == 2 and share.share == pytest.approx((0.5 + 0.5 * 0.2) / 1.5)
    assert "40% of max_tokens" in share.describe() and output_share_for("another model", path) is None
    workload = bucket_workload([(100, 200, 10), (100, 1, 3)], (512.0, float("inf")), (128.0, float("inf")))
    expected = expected_outputs(workload, share.share)
    assert [c.output_tokens_total for c in expected.classes] == [3, 800]  # 3 requests keep one token each


def test_the_second_run_of_a_batch_is_planned_from_the_first(cli, tmp_path: Path, smollm2_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from catalog.load import load_models
    from costserve.cli import app
    from solver.costmodel import ModelShape
    from solver.local_plan import first_run_startup_s

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"c{i:02d}", "prompt": f"Write one sentence about the number {i}.",
                                        "max_tokens": 12, "temperature": 0}) + "\n" for i in range(24)))
    predicted, actual, written = [], [], []
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
        actual.append(report["totals"]["makespan_s"])
        written.append(report["totals"]["output_tokens"])
        group = plan.groups[0]
        if attempt == 1:
            assert group.calibration is None and "roofline guess" in result.output
            smollm2 = ModelShape.from_row(load_models().set_index("model", drop=False).loc["SmolLM2-135M"])
            assert group.startup_s == pytest.approx(first_run_startup_s(smollm2), rel=1e-6)  # loading its fp32 weights
        else:  # the first run's start-up and work factor are in the plan, and said
            assert group.calibration is not None and group.calibration.startswith("calibrated from 1 run")
            assert group.startup_s > 0 and "calibrated from 1 run" in result.output
            # the output the first run wrote ÷ what 24 jobs of max_tokens 12 allow sets the length this plan expects
            assert plan.output_share == pytest.approx(min(1.0, written[0] / (24 * 12)), rel=1e-6)
            assert sum(k.count * k.output_tokens for k in plan.workload) == pytest.approx(24 * 12 * plan.output_share, abs=1)
    first_error, second_error = predicted[0] / actual[0], predicted[1] / actual[1]
    assert abs(second_error - 1) <= 0.2, f"second plan {predicted[1]:.1f}s vs {actual[1]:.1f}s (first: {first_error:.2f}x)"
    shown = json.loads(cli.invoke(app, ["calibration", "show", "--json"]).stdout)
    assert len(shown) == 2 and all(row["model"] == plan.model for row in shown)
    assert "forgot 2" in cli.invoke(app, ["calibration", "reset", "--yes"]).output
    assert json.loads(cli.invoke(app, ["calibration", "show", "--json"]).stdout) == []


def test_cloud_candidates_plan_from_what_their_hardware_and_replica_measured() -> None:
    from catalog.load import load_gpus, load_models, load_offerings
    from solver.candidates import build_candidates
    from solver.costmodel import ModelShape
    from solver.plan import hardware_signature
    from solver.planner import calibrated, plan_batch, replica_of
    from solver.workload import bucket_workload

    row = load_models().set_index("model", drop=False).loc["Llama-3.1-8B"]
    model, offerings, gpus = ModelShape.from_row(row), load_offerings(), load_gpus()
    workload = bucket_workload([(500, 200, 2000)], (1024.0, float("inf")), (512.0, float("inf")))
    plain = plan_batch(workload, row, offerings, gpus, 4 * 3600.0, with_baselines=False)
    (first,) = plain.groups[:1]
    mine = (hardware_signature(first.gpu, first.gpus_per_instance, first.instance_type), first.replica.summary())

    def lookup(hardware: str, replica: str) -> tuple[float, float, str, float] | None:
        found = (420.0, 2.0, "calibrated from 3 runs, last on 2026-12-01 03:00", 0.07)
        return found if (hardware, replica) == mine else None

    candidates = build_candidates(offerings, gpus, model, workload, 0.0)
    for before, after in zip(candidates, calibrated(candidates, offerings, model, lookup)):
        key = (hardware_signature(before.gpu, before.gpus_per_instance, str(offerings.loc[before.offering]["instance_type"])),
               replica_of(before, model).summary())
        if key == mine:  # the measured start-up and half the modelled rate
            assert after.startup_seconds == 420.0 and after.work_factor == 2.0 and after.rate_spread == 0.07
            assert after.requests_per_s == tuple(r / 2 for r in before.requests_per_s)
        else:
            assert after == before
    again = plan_batch(workload, row, offerings, gpus, 4 * 3600.0, with_baselines=False, calibrate=lookup)
    assert again.cost >= plain.cost - 1e-9  # the only change is a slower measured group
    for g in again.groups:
        calibrated_group = (hardware_signature(g.gpu, g.gpus_per_instance, g.instance_type), g.replica.summary()) == mine
        assert (g.calibration is not None) == calibrated_group
        if calibrated_group:
            assert g.startup_s == 420.0 and g.work_factor == 2.0 and g.rate_spread == 0.07  # its runs' own spread


def test_profile_first_measures_this_machine_before_planning(cli, tmp_path: Path, smollm2_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app
    from solver.device_profile import default_profile_path, load_device_profile
    from workers.profile import QUICK

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Count to {i}.", "max_tokens": 4, "temperature": 0}) + "\n"
                            for i in range(6)))
    refused = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--profile-first", "--yes"])
    assert refused.exit_code == 2 and "--profile-first" in refused.output and "Traceback" not in refused.output
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(smollm2_dir), "--profile-first", "--yes",
                              "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    assert "profiling this machine" in result.output and "roofline guess" not in result.output
    (path,) = default_profile_path("cpu", "x").parent.glob("cpu-*.json")
    profile = load_device_profile(path)
    assert sorted(int(b) for b in profile["layer_decode_ms"]["32"]) == list(QUICK["batches"])
    again = cli.invoke(app, ["submit", str(jobs), "--model", str(smollm2_dir), "--profile-first", "--yes",
                             "--out", str(tmp_path / "r2.jsonl")])
    assert again.exit_code == 0 and "already has a profile" in again.output
