"""Mélange-format throughput profiles drive the fleet MILP instead of the roofline model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.load import load_gpus, load_models, load_offerings
from costserve.cli import app
from solver.candidates import build_candidates
from solver.costmodel import ModelShape
from solver.profiles import ProfileError, load_profile
from solver.workload import bucket_workload

GPUS, OFFERINGS = load_gpus(), load_offerings()
MODEL_ROW = load_models().set_index("model").loc["Llama-3.1-8B"].to_dict() | {"model": "Llama-3.1-8B"}
WORK = bucket_workload([(100, 50, 20_000), (1000, 300, 5_000)])


def write_profile(path: Path, gpu_info: dict) -> Path:
    path.write_text(json.dumps({"input_edges": [512, 8192], "output_edges": [128, 2048], "gpu_info": gpu_info}))
    return path


def test_profiled_throughputs_replace_the_model_for_16bit_single_gpu(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "p.json", {"L4": {"cost": 0.8, "tputs": [[7.0, 3.0], [2.0, 0.5]]}})
    profile = load_profile(path, set(GPUS["gpu"]))
    model = ModelShape.from_row(MODEL_ROW)
    cands = build_candidates(OFFERINGS, GPUS, model, WORK, 0.0, profile=profile)
    l4 = [c for c in cands if c.gpu == "L4" and c.bits == 16 and c.tp == 1]
    assert l4
    for c in l4:  # class 0: input 100 / output 50 -> bucket [0][0]; class 1: 1000 / 300 -> [1][1]
        assert c.requests_per_s == pytest.approx((7.0 * c.replicas, 0.5 * c.replicas))
    unprofiled = [c for c in cands if c.gpu == "A10G" and c.bits == 16 and c.tp == 1]
    baseline = build_candidates(OFFERINGS, GPUS, model, WORK, 0.0)
    assert [c.requests_per_s for c in unprofiled] == [c.requests_per_s for c in baseline if c.gpu == "A10G" and c.bits == 16 and c.tp == 1]


def test_plan_command_follows_the_profile(cli, tmp_path: Path) -> None:
    workload = tmp_path / "w.json"
    workload.write_text(json.dumps({"classes": [{"input_tokens": 100, "output_tokens": 50, "count": 200_000}]}))
    args = ["plan", "--workload", str(workload), "--model", "Llama-3.1-8B", "--deadline", "8h", "--quality", "1.0", "--no-baselines"]
    plain = cli.invoke(app, args)
    assert plain.exit_code == 0, plain.output
    assert "xL4" not in plain.output.split("predicted cost")[0]
    # a profile that says L4s are far faster than the roofline believes makes them the fleet
    fast = write_profile(tmp_path / "fast.json", {"L4": {"cost": 0.8, "tputs": [[400.0, 400.0], [400.0, 400.0]]}})
    profiled = cli.invoke(app, args + ["--profiles", str(fast)])
    assert profiled.exit_code == 0, profiled.output
    assert "xL4" in profiled.output.split("predicted cost")[0]
    # the profile never overrides memory: 8B at 16 bits does not fit a 16 GB T4, however fast it is said to be
    t4 = write_profile(tmp_path / "t4.json", {"T4": {"cost": 0.5, "tputs": [[400.0, 400.0], [400.0, 400.0]]}})
    assert "xT4" not in cli.invoke(app, args + ["--profiles", str(t4)]).output


def test_bad_profiles_name_file_and_field(tmp_path: Path) -> None:
    known = set(GPUS["gpu"])
    with pytest.raises(ProfileError, match=r"p\.json: gpu_info\.L4\.tputs: expected 2 rows of 2 values"):
        load_profile(write_profile(tmp_path / "p.json", {"L4": {"tputs": [[1.0, 2.0]]}}), known)
    with pytest.raises(ProfileError, match=r"gpu_info\.X9: not a GPU of gpus\.csv"):
        load_profile(write_profile(tmp_path / "p.json", {"X9": {"tputs": [[1, 2], [3, 4]]}}), known)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ProfileError, match="malformed JSON"):
        load_profile(tmp_path / "bad.json", known)
