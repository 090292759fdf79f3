"""CPU–GPU hybrid replicas in the solver: cost model, partition ILP, and the planner's choice."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from catalog.load import load_gpus, load_models, load_offerings
from solver.candidates import Candidate
from solver.costmodel import GIB, Device, ModelShape
from solver.device_profile import CpuProfile
from solver.fleet import FleetProblem, solve_fleet
from solver.hybrid_costs import PCIE_EFFICIENCY, PLACEMENTS, HybridShape, fixed_gpu_bytes, host_of, layer_costs
from solver.hybrid_partition import STREAM_BUFFERS, hybrid_partition, shape_latency
from solver.planner import all_candidates, plan_batch
from solver.quality import model_layer_loss, model_quality
from solver.workload import bucket_workload

MODELS = load_models().set_index("model", drop=False)
GPUS = load_gpus()
SPECS = GPUS.set_index("gpu", drop=False)
OFFERINGS = load_offerings()
WORKLOAD = bucket_workload([(500, 200, 2000)])
# One region's single-T4 instances and a CPU instance: no GPU here holds a 13B model at 8 bits.
T4_AND_CPU = OFFERINGS[(OFFERINGS.cloud == "aws") & (OFFERINGS.region == "us-east-1")
                       & OFFERINGS.instance_type.isin(["g4dn.xlarge", "g4dn.4xlarge", "m7i.8xlarge"])]


def _model(name: str) -> ModelShape:
    return ModelShape.from_row(MODELS.loc[name])


def _t4_host(vcpus: int = 16, memory_gib: float = 64.0, pcie_gbps: float | None = None):  # type: ignore[no-untyped-def]
    return host_of(SPECS.loc["cpu"], vcpus, memory_gib, SPECS.loc["T4"]["pcie_gbps"] if pcie_gbps is None else pcie_gbps)


def test_layer_costs_follow_the_hardware() -> None:
    model, t4 = _model("Llama-2-13B"), Device.from_catalog(SPECS.loc["T4"])
    shape = HybridShape(batch=16, prefill_mb=1, input_tokens=500, output_tokens=200)
    costs = layer_costs(model, t4, _t4_host(16), shape, (8,))
    weights = model.layer_params()  # 8 bits: one byte per weight
    assert costs[8, "stream"].decode.pcie == pytest.approx(weights / (16e9 * PCIE_EFFICIENCY))
    assert costs[8, "stream"].staging_bytes == weights and costs[8, "gpu"].staging_bytes == 0
    assert costs[8, "cpu"].gpu_bytes == 0 and costs[8, "cpu"].host_bytes > weights  # weights and KV on the host
    assert costs[8, "stream"].host_bytes == weights and costs[8, "stream"].gpu_bytes > 0  # KV where decode reads it
    doubled = layer_costs(model, t4, _t4_host(32), shape, (8,))
    assert doubled[8, "cpu"].decode.cpu == pytest.approx(costs[8, "cpu"].decode.cpu / 2)  # memory-bound: ∝ 1 / vCPUs
    # decode is memory-bound: a GPU-resident layer beats the same layer read by 16 vCPUs
    assert costs[8, "gpu"].decode.gpu < costs[8, "cpu"].decode.cpu


def test_cpu_profile_times_host_layers() -> None:
    model, t4 = _model("SmolLM2-135M"), Device.from_catalog(SPECS.loc["T4"])
    profile = {"device": "cpu", "model": model.name, "layers": model.layers, "threads": 2, "layer_prefill_ms_per_token": {"8": 0.5},
               "layer_decode_ms": {"8": {"1": {"100": 2.0, "1000": 4.0}, "64": {"100": 8.0, "1000": 16.0}}},
               "head_decode_ms": {"1": 1.0}}
    shape = HybridShape(batch=64, prefill_mb=2, input_tokens=100, output_tokens=0)
    host = host_of(SPECS.loc["cpu"], 8, 64, 16, CpuProfile.matching(profile, model.name, model.layers))
    costs = layer_costs(model, t4, host, shape, (8,))
    assert costs[8, "cpu"].prefill.cpu == pytest.approx(0.5 * 100 * 2 * (2 / 8) / 1000)
    assert costs[8, "cpu"].decode.cpu == pytest.approx(8.0 * (2 / 8) / 1000)


def test_hybrid_ilp_is_optimal_and_its_layout_fits() -> None:
    """On a small model whose memory binds, the ILP's latency is the minimum over every placement."""
    model = replace(_model("Llama-2-13B"), layers=4, name="four-layer")
    t4 = Device.from_catalog(SPECS.loc["T4"])
    gpu = replace(t4, memory_gib=(1.0 + 1.9e9 / GIB) / 0.9)  # 1.9 GB usable: embeddings and about two of the four layers
    host = _t4_host(16, 20.0)
    loss = {b: [0.0] * 4 for b in (16, 8, 4)}
    found = hybrid_partition(model, gpu, host, 500, 200, 0.0, loss, bit_widths=(8,), batches=(16,), prefill_micro_batches=(1,))
    assert found is not None and found.host_layers
    shape = HybridShape(16, 1, 500, 200)
    brute = [lat for placements in itertools.product(PLACEMENTS, repeat=4)
             if (lat := shape_latency(model, gpu, host, shape, (8,) * 4, placements)) is not None]
    assert found.latency_s == pytest.approx(min(brute), rel=1e-6)
    assert shape_latency(model, gpu, host, shape, found.bits, found.placements) == pytest.approx(found.latency_s, rel=1e-6)
    costs = layer_costs(model, gpu, host, shape, (8,))
    chosen = [costs[8, p] for p in found.placements]
    staging = max((c.staging_bytes for c, p in zip(chosen, found.placements) if "stream" in PLACEMENTS[p]), default=0)
    assert fixed_gpu_bytes(model, shape) + sum(c.gpu_bytes for c in chosen) + STREAM_BUFFERS * staging <= gpu.usable_bytes()
    assert sum(c.host_bytes for c in chosen) <= host.usable_bytes()


def test_hybrid_layout_keeps_quality_and_avoids_a_slow_link() -> None:
    model, t4 = _model("Llama-2-13B"), Device.from_catalog(SPECS.loc["T4"])
    loss = model_layer_loss(model.name, model.layers)
    target = model_quality((8,) * model.layers, model.name)
    found = hybrid_partition(model, t4, _t4_host(16), 500, 200, target, loss)
    assert found is not None and found.host_layers
    assert math.exp(-found.quality_loss) >= target - 1e-9
    slow = hybrid_partition(model, t4, _t4_host(16, pcie_gbps=0.05), 500, 200, target, loss)
    assert slow is not None and slow.host_layers
    assert all(pre == dec == "cpu" for _, pre, dec in slow.host_layers)  # nothing crosses a 50 MB/s link
    fits = hybrid_partition(_model("Llama-2-7B"), Device.from_catalog(SPECS.loc["L4"]), _t4_host(4, 16), 500, 200, target,
                            model_layer_loss("Llama-2-7B", 32))
    assert fits is not None and not fits.host_layers  # a model the GPU holds stays on it


def test_planner_picks_a_hybrid_replica_when_no_affordable_gpu_holds_the_model() -> None:
    plan = plan_batch(WORKLOAD, MODELS.loc["Llama-2-13B"], T4_AND_CPU, GPUS, 24 * 3600, None, 0.99)
    hybrid = [g for g in plan.groups if any(s.host_layers for s in g.replica.stages)]
    assert hybrid and all(g.gpu == "T4" for g in hybrid)
    assert plan.quality >= 0.99
    assert "layers in host memory" in hybrid[0].replica.summary()
    # cheaper than every fleet without host layers (here: CPU instances only)
    candidates = all_candidates(T4_AND_CPU, GPUS, _model("Llama-2-13B"), WORKLOAD, 0.99, False)
    availability = {int(i): int(a) for i, a in T4_AND_CPU["availability"].items()}
    without = solve_fleet(FleetProblem([c for c in candidates if not c.host_layers], WORKLOAD, 24 * 3600, availability))
    assert plan.cost < without.cost
    assert all(b.cost is None or b.cost >= plan.cost for b in plan.baselines)


# Qwen2.5-7B fits a T4 as its catalog int8 checkpoint (vLLM); Llama-2-13B fits larger GPUs at 16 bits or FP8
@pytest.mark.parametrize(("model", "offerings"), [("Qwen2.5-7B", T4_AND_CPU), ("Llama-2-13B", OFFERINGS)])
def test_planner_keeps_whole_gpu_replicas_when_a_gpu_holds_the_model(model: str, offerings) -> None:  # type: ignore[no-untyped-def]
    plan = plan_batch(WORKLOAD, MODELS.loc[model], offerings, GPUS, 24 * 3600, None, 0.99)
    assert not any(s.host_layers for g in plan.groups for s in g.replica.stages)
    assert all(g.gpu != "cpu" for g in plan.groups)


def test_hybrid_candidates_are_not_baseline_configurations() -> None:
    c = Candidate(offering=0, label="x", gpu="T4", gpus_per_instance=1, spot=False, price_per_hour=1.0, tp=1, replicas=1,
                  bits=8, quality=1.0, requests_per_s=(1.0,), stages=((0, 1, (8, 8)),), host_layers=((1, "stream", "cpu"),))
    assert not c.whole_model_uniform and replace(c, host_layers=()).whole_model_uniform
