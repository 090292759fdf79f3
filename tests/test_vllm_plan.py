"""Plans name the engine of every group and only what it runs: vLLM for whole-model GPU replicas, at bf16, FP8 (FP8 tensor
cores) or a catalog pre-quantized checkpoint, with the settings its worker passes to `vllm.LLM`; costserve's engine for
the rest. The replica a plan shows is the one a node's worker reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from catalog.load import load_gpus, load_models, load_offerings
from costserve.cli import app
from solver.engine_check import EngineCapabilityError, check_engine_can_run
from solver.plan import Plan, Replica, Stage, VllmSettings
from solver.planner import plan_batch
from solver.vllm_settings import model_len_for
from solver.workload import bucket_workload

MODELS = load_models().set_index("model", drop=False)
GPUS = load_gpus()
OFFERINGS = load_offerings()
NIGHTLY = {"classes": [{"input_tokens": 1000, "output_tokens": 300, "count": 200_000},
                       {"input_tokens": 150, "output_tokens": 100, "count": 300_000}]}


def test_plan_picks_fp8_where_cheaper_and_shows_engine_and_precision_per_group(cli, tmp_path: Path) -> None:
    workload, out = tmp_path / "w.json", tmp_path / "plan.json"
    workload.write_text(json.dumps(NIGHTLY))
    result = cli.invoke(app, ["plan", "--workload", str(workload), "--model", "Llama-3.1-8B", "--deadline", "8h",
                              "--out", str(out)])
    assert result.exit_code == 0, result.output
    plan = Plan.model_validate_json(out.read_text())
    fp8_gpus = set(GPUS.loc[GPUS["fp8_tflops"] > 0, "gpu"])
    assert plan.groups and all(g.replica.engine == "vllm" for g in plan.groups if g.gpu != "cpu")
    assert any(g.replica.vllm and g.replica.vllm.quantization == "fp8" and g.replica.vllm.kv_cache_dtype == "fp8"
               for g in plan.groups)
    assert all(g.gpu in fp8_gpus for g in plan.groups if g.replica.vllm and g.replica.vllm.quantization == "fp8")
    assert re.search(r"vllm tp1 fp8, fp8 KV.*\n.*cache batch \d+", result.output)  # engine and precision (a wrapped cell)
    assert "chosen fp8, fp8 KV cache, predicted 99.3%" in result.output
    baselines = {b.name: b for b in plan.baselines}
    sixteen, best = baselines["single-type-16bit"], baselines["single-type-best-precision"]
    assert sixteen.precision == "bf16" and sixteen.cost is not None and sixteen.cost > plan.cost * 1.3
    assert best.cost is not None and plan.cost <= best.cost <= sixteen.cost  # the same menu, one GPU type
    for g in plan.groups:  # the worker is given the batch every class was costed at, and room for the longest job
        assert g.replica.vllm is not None and g.replica.vllm.max_num_seqs == g.replica.decode_micro_batch > 1
        assert g.replica.vllm.max_model_len == model_len_for(1300, 131072) == 2048


def test_the_replica_a_node_runs_is_the_plans_and_a_vllm_node_installs_vllm(tmp_path: Path) -> None:
    from deploy.node_setup import NodeModel
    from deploy.skypilot import write_group_tasks
    from workers.replica import read_replica

    workload = bucket_workload([(1000, 300, 200_000), (150, 100, 300_000)])
    plan = plan_batch(workload, MODELS.loc["Llama-3.1-8B"], OFFERINGS, GPUS, 8 * 3600, None, 0.99, with_baselines=False)
    model = NodeModel("Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", gated=True)
    files = write_group_tasks(plan, GPUS, tmp_path, model)
    for i, (group, task) in enumerate(zip(plan.groups, files)):
        replica = read_replica(tmp_path / "sky" / f"g{i}-replica.json")
        assert replica == group.replica and replica.vllm is not None  # what the worker passes to vllm.LLM, unchanged
        setup = task.read_text()
        assert "[vllm]" in setup and "constraints.txt" not in setup.split("[vllm]")[0].rsplit("\n", 1)[-1]


def test_pre_quantized_checkpoints_are_what_a_small_gpu_serves(tmp_path: Path) -> None:
    t4 = OFFERINGS[OFFERINGS["gpu"] == "T4"]
    workload = bucket_workload([(200, 100, 20_000)])
    plan = plan_batch(workload, MODELS.loc["Qwen2.5-7B"], t4, GPUS, 12 * 3600, None, 0.99, partitioned=False)
    (group,) = plan.groups  # a T4 holds Qwen2.5-7B only at 8 bits: its catalog GPTQ-Int8 checkpoint
    settings = group.replica.vllm
    assert settings is not None and settings.checkpoint == "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8"
    assert settings.quantization is None and "checkpoint" not in settings.llm_kwargs()  # vLLM reads its method
    assert group.replica.bits == [8] * 28 and group.replica.precision == "int8 checkpoint"
    from deploy.node_setup import NodeModel, NodeSetupError
    from deploy.skypilot import write_group_tasks

    qwen = NodeModel("Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct")
    (task,) = write_group_tasks(plan, GPUS, tmp_path / "run", qwen)
    setup = task.read_text()  # the node downloads the checkpoint as the model's weights, and serves it by the model's name
    assert "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8" in setup and "Qwen/Qwen2.5-7B-Instruct " not in setup
    import yaml

    assert "--model Qwen2.5-7B" in yaml.safe_load(setup)["run"]  # parsed: YAML may fold a long line anywhere
    with pytest.raises(NodeSetupError, match="pre-quantized checkpoint"):  # the user's own 16-bit weights are not it
        write_group_tasks(plan, GPUS, tmp_path / "run2", NodeModel("Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", source="s3://b/q"))


def _vllm(bits: int, **settings: object) -> Replica:
    return Replica(engine="vllm", stages=[Stage(device="H100", first_layer=0, last_layer=3, bits=[bits] * 4)],
                   vllm=VllmSettings(max_num_seqs=8, max_model_len=2048, **settings))  # type: ignore[arg-type]


def test_the_capability_check_rejects_what_vllm_cannot_run() -> None:
    check_engine_can_run(_vllm(8, quantization="fp8"), 4, 1, fp8_tensor_cores=True)
    with pytest.raises(EngineCapabilityError, match="FP8 tensor cores"):
        check_engine_can_run(_vllm(8, quantization="fp8"), 4, 1, fp8_tensor_cores=False)  # e.g. an A100
    with pytest.raises(EngineCapabilityError, match="pre-quantized checkpoint"):
        check_engine_can_run(_vllm(4), 4, 1)  # 4-bit layers, but vLLM would load the 16-bit weights
    with pytest.raises(EngineCapabilityError, match="GPU instances"):
        check_engine_can_run(_vllm(16), 4, 0)
    with pytest.raises(EngineCapabilityError, match="need 2 GPUs"):
        check_engine_can_run(_vllm(16), 4, 1, replicas=2)
    with pytest.raises(ValueError, match="needs its `vllm` settings"):
        Replica(engine="vllm", stages=[Stage(first_layer=0, last_layer=3, bits=[16] * 4)])
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        _vllm(16, tensor_parallel_size=2)  # the replica says tp 1


def test_a_vllm_replica_is_refused_by_costserves_engine(smollm2_dir: Path) -> None:
    from solver.plan import ReplicaError
    from workers.engine import Engine

    replica = Replica(engine="vllm", stages=[Stage(first_layer=0, last_layer=29, bits=[16] * 30)],
                      vllm=VllmSettings(max_num_seqs=4, max_model_len=2048))
    with pytest.raises(ReplicaError, match="runs on vllm"):
        Engine(replica, smollm2_dir)
