"""Planner on the shipped catalog: baselines never beat costserve, limits hold, errors say what to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.availability import apply_availability
from catalog.load import load_gpus, load_models, load_offerings
from costserve.cli import app
from costserve.durations import format_duration, format_money, parse_duration
from solver.plan import Plan
from solver.planner import PlanningError, plan_batch
from solver.workload import bucket_workload
from tests.conftest import EXAMPLES

MODELS = load_models().set_index("model", drop=False)
GPUS = load_gpus()
OFFERINGS = load_offerings()
MIXED = bucket_workload([(150, 100, 30_000), (1500, 300, 8_000), (600, 1200, 4_000)])


@pytest.mark.parametrize(
    ("model", "deadline_h", "quality", "spot"),
    [("Llama-3.1-8B", 4, 0.99, False), ("Llama-3.1-70B", 8, 0.99, True), ("Qwen2.5-14B", 2, 1.0, False)],
)
def test_plan_beats_or_ties_every_baseline_and_keeps_every_limit(model: str, deadline_h: float, quality: float, spot: bool) -> None:
    plan = plan_batch(MIXED, MODELS.loc[model], OFFERINGS, GPUS, deadline_h * 3600, None, quality, spot)
    assert plan.makespan_s <= deadline_h * 3600 + 1e-6
    assert plan.quality >= quality
    assert all(g.spot is False for g in plan.groups) or spot
    for cls in plan.workload:  # every class is served in full
        assert sum(g.class_shares.get(cls.name, 0.0) for g in plan.groups) == pytest.approx(1.0, abs=1e-5)
    availability = OFFERINGS.set_index(["cloud", "region", "instance_type", "gpu"])["availability"]
    for g in plan.groups:
        assert g.count <= availability[(g.cloud, g.region, g.instance_type, g.gpu)]
    cost = sum(g.price_per_hour / 3600 * (g.count * 600 + sum(
        share * next(c.count for c in plan.workload if c.name == k) / g.requests_per_s[k] for k, share in g.class_shares.items()))
        for g in plan.groups)
    assert plan.cost == pytest.approx(cost, rel=1e-6)  # the reported cost is the plan's own arithmetic
    assert [b.name for b in plan.baselines] == ["single-type-16bit", "single-type-best-precision", "melange"]
    for b in plan.baselines:
        assert b.cost is None or b.cost >= plan.cost - 1e-9
    assert Plan.model_validate_json(plan.model_dump_json()) == plan  # the contract round-trips as JSON


def test_budget_and_gpu_caps_are_respected() -> None:
    caps = {"H100": 0, "H200": 0, "A100-80GB": 8}
    limited = apply_availability(OFFERINGS, None, caps)
    plan = plan_batch(MIXED, MODELS.loc["Llama-3.1-70B"], limited, GPUS, 8 * 3600, 500.0, 0.99, False, caps)
    assert plan.cost <= 500.0
    assert not {"H100", "H200"} & {g.gpu for g in plan.groups}
    assert sum(g.count * g.gpus_per_instance for g in plan.groups if g.gpu == "A100-80GB") <= 8


def test_infeasible_plans_name_the_nearest_feasible_point() -> None:
    llama70 = MODELS.loc["Llama-3.1-70B"]
    with pytest.raises(PlanningError, match=r"budget \$0\.01 is below the cheapest fleet for 8h, \$[\d,]+\.\d\d — raise --budget to "):
        plan_batch(MIXED, llama70, OFFERINGS, GPUS, 8 * 3600, 0.01, 0.99)
    with pytest.raises(PlanningError, match=r"deadline 5m is too short .* fastest fleet needs \d+m"):
        plan_batch(MIXED, llama70, OFFERINGS, GPUS, 300, None, 0.99)
    only_small = OFFERINGS[OFFERINGS["gpu"].isin(["T4", "L4", "A10G", "A10", "cpu"]) & (OFFERINGS["gpu_count"] <= 1)]
    with pytest.raises(PlanningError, match=r"no offering has memory for Llama-3.1-70B at a quality of 1: allow --quality 0\.99\d* for 8-bit"):
        plan_batch(MIXED, llama70, only_small, GPUS, 8 * 3600, None, 1.0)  # 128 GiB CPU hosts hold 8-bit, not 16-bit
    # 4-bit Llama-70B (~37 GB) fits a 22.5 GiB GPU plus 32 GiB of host RAM as a CPU–GPU hybrid replica...
    hybrid = plan_batch(MIXED, llama70, only_small.assign(host_memory_gib=32.0), GPUS, 8 * 3600, None, 0.0, with_baselines=False)
    assert all(s.host_layers for g in hybrid.groups for s in g.replica.stages)
    # ...but not with 8 GiB hosts, nor on any CPU host
    with pytest.raises(PlanningError, match=r"no available offering has memory for Llama-3.1-70B even at 4-bit"):
        plan_batch(MIXED, llama70, only_small.assign(host_memory_gib=8.0), GPUS, 8 * 3600, None, 0.0)


def test_plan_command_writes_json_and_prints_savings(cli, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl"), "--model", "Llama-3.1-8B", "--deadline", "2h",
                              "--spot", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "predicted cost $" in result.output and "single-type-16bit" in result.output
    assert "costserve saves" in result.output and "start-up" in result.output  # a cloud plan: savings, start-up apart
    plan = Plan.model_validate_json(out.read_text())
    assert all(b.fleet and b.precision for b in plan.baselines if b.cost is not None)  # each baseline says what it rents
    printed = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl"), "--model", "Llama-3.1-8B", "--deadline", "2h",
                               "--spot", "--json"])
    assert printed.exit_code == 0 and Plan.model_validate_json(printed.stdout).cost == plan.cost  # stdout: JSON only
    assert sum(c.count for c in plan.workload) == 200
    workload = tmp_path / "w.json"
    workload.write_text(json.dumps({"classes": [{"input_tokens": 1000, "output_tokens": 200, "count": 5000}]}))
    assert cli.invoke(app, ["plan", "--workload", str(workload), "--model", "Mistral-7B"]).exit_code == 0
    bad = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl"), "--model", "Llama-3.1-70B", "--deadline", "1h", "--budget", "0.1"])
    said, refused = bad.output.strip().splitlines()  # the file names SmolLM2-135M: --model wins, said in one line
    assert said.startswith("--model Llama-3.1-70B overrides the model 200 line(s) of jobs.jsonl name")
    assert bad.exit_code == 1 and refused.startswith("costserve: budget $0.10 is below the cheapest fleet")
    assert cli.invoke(app, ["plan"]).exit_code == 2  # neither jobs nor --workload


def test_durations() -> None:
    assert [parse_duration(t) for t in ("8h", "90m", "1d12h", "3600s", "1h30m")] == [28800, 5400, 129600, 3600, 5400]
    for bad in ("soon", "0h", "8x", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match=r"'8' has no unit: write e.g. 8h"):
        parse_duration("8")  # a bare number was seconds once: `--deadline 8` meant 8 s
    shown = [format_duration(s) for s in (0.4, 4, 131, 665, 3600, 7500, 90000)]
    assert shown == ["0.4s", "4s", "2m11s", "11m05s", "1h", "2h05m", "1d01h"]
    assert all(parse_duration(format_duration(s, whole=False)) == s for s in (4, 131, 7530, 90061))
    assert [format_money(v) for v in (0, 0.0000013, 0.0123456, 1.234, 1234.5)] == ["$0", "<$0.0001", "$0.0123", "$1.23",
                                                                                 "$1,234"]


def test_plan_refuses_a_job_file_with_bad_lines(cli, tmp_path: Path) -> None:
    good = (EXAMPLES / "jobs.jsonl").read_text().splitlines()[:3]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join([good[0], '{"id": "x", "prompt": ""}', good[1], "not json", good[2]]) + "\n")
    result = cli.invoke(app, ["plan", str(path), "--model", "Llama-3.1-8B"])
    assert result.exit_code == 1
    said, *lines = result.output.strip().splitlines()
    assert said.startswith("--model Llama-3.1-8B overrides the model")
    assert lines[0] == f"{path}:2: prompt: empty prompt (got '')"
    assert lines[1].startswith(f"{path}:4: json: malformed JSON")
    assert lines[2] == f"costserve: {path}: 2 bad lines; fix them (costserve validate {path} lists them all)"


def test_a_replica_with_fp32_layers_is_planned_on_this_machine() -> None:
    from solver.local_plan import local_plan
    from solver.plan import Replica, Stage
    from solver.quality import predicted_quality

    smol = MODELS.loc["SmolLM2-135M"]
    layers = int(smol["layers"])
    fp32 = Replica(tp=1, stages=[Stage(device="cpu", first_layer=0, last_layer=layers - 1, bits=[32] * layers)])
    half = Replica(tp=1, stages=[Stage(device="cpu", first_layer=0, last_layer=layers - 1, bits=[16] * layers)])
    work = bucket_workload([(100, 20, 8)])
    plans = [local_plan(work, smol, r, OFFERINGS, GPUS, 3600, 0.0, cloud_baselines=False) for r in (fp32, half)]
    assert plans[0].groups[0].replica.bits == [32] * layers and plans[0].quality == predicted_quality((32,) * layers) == 1.0
    assert plans[0].makespan_s >= plans[1].makespan_s > 0  # this CPU widens bf16 to fp32: no faster than 16-bit
