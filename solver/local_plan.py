"""The Plan of an embedded (`--backend local`) run: this machine as a one-instance CPU offering.

The local CPU is priced like a comparable cloud CPU instance: the catalog's cheapest
on-demand CPU offering per vCPU, times this machine's vCPUs (or the `local_cpu_price_per_hour`
setting). Its throughput per workload class comes from this machine's `costserve profile`
when there is one, else from the CPU roofline of the cost model. The same batch is also
planned on the cloud catalog, so the report can show what the cloud fleet and the baselines
would have cost.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from solver.costmodel import Device, ModelShape, class_throughput
from solver.device_profile import CpuProfile
from solver.plan import LOCAL_CLOUD, BaselinePlan, FleetGroupPlan, Plan, Replica, WorkloadClassPlan
from solver.plan_outlook import Outlook
from solver.quality import model_quality
from solver.uncertainty import provenance, rate_spread, spread_words
from solver.workload import Workload

if TYPE_CHECKING:
    import pandas as pd

# Bytes/s at which a local worker reads the fp32 safetensors and builds its stages (quantizing included), the
# start-up of a run before any calibrates it: SmolLM2-135M's 538 MB took 2.3 s from queueing to the first shard's
# work on the 2-vCPU Xeon this was measured on (2026-12-02, `costserve calibration show` of a first run).
MODEL_LOAD_BYTES_PER_S = 0.23e9


def first_run_startup_s(model: ModelShape) -> float:
    """Start-up (s) of a local run no earlier run calibrated: loading the model's fp32 weights (4 bytes a parameter)."""
    params = model.layers * model.layer_params() + model.embedding_params()
    return 4 * params / MODEL_LOAD_BYTES_PER_S


def host_vcpus() -> int:
    """Logical CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_signature() -> str:
    """This machine as calibrations know it: its CPU model, vCPUs and memory (the same hardware calibrates alike)."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {host_vcpus()} vCPU, {host_memory_gib():.0f} GiB"


def host_memory_gib() -> float:
    """This machine's physical memory, GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def local_price_per_hour(offerings: pd.DataFrame, vcpus: int, override: float | None) -> tuple[float, str]:
    """($/h for this machine, where that price comes from).

    `override` (the `local_cpu_price_per_hour` setting) wins; else the catalog's cheapest
    on-demand CPU offering's $/vCPU·h times `vcpus`.
    """
    if override is not None:
        return override, "local_cpu_price_per_hour setting"
    cpu = offerings[offerings["gpu"] == "cpu"]
    if cpu.empty:
        return 0.0, "no CPU offering in the catalog: priced at $0"
    per_vcpu = cpu["price_per_hour"] / cpu["vcpus"]
    row = cpu.loc[per_vcpu.idxmin()]
    return float(per_vcpu.min() * vcpus), f"{vcpus} vCPU at {row['cloud']}/{row['region']}/{row['instance_type']}'s $/vCPU·h"


def local_requests_per_s(model: ModelShape, cpu_spec: pd.Series, vcpus: int, memory_gib: float, bits: list[int],
                         workload: Workload, cpu_profile: dict[str, Any] | None) -> list[float]:
    """Requests/s of this machine on each workload class, from its CPU profile or the roofline."""
    measured = CpuProfile.matching(cpu_profile, model.name, len(bits))
    if measured is not None and all(measured.has_bits(b) for b in set(bits)):
        return [measured.class_requests_per_s(bits, c.input_tokens, c.output_tokens, vcpus) for c in workload.classes]
    device = Device.from_catalog(cpu_spec, 1, vcpus, memory_gib)
    return [class_throughput(model, device, tuple(bits), c.input_tokens, c.output_tokens).requests_per_s
            for c in workload.classes]


def modelled_local_work_s(model_row: pd.Series | dict[str, Any], gpus: pd.DataFrame, bits: list[int], workload: Workload,
                          cpu_profile: dict[str, Any] | None) -> float:
    """Seconds this machine's model (its profile, else the roofline; no calibration) gives `workload` on a replica of
    `bits`: what `local_plan` counts as work."""
    cpu_spec = gpus.set_index("gpu", drop=False).loc["cpu"]
    rates = local_requests_per_s(ModelShape.from_row(model_row), cpu_spec, host_vcpus(), host_memory_gib(), bits, workload,
                                 cpu_profile)
    return sum(c.count / r for c, r in zip(workload.classes, rates) if c.count and r > 0)


def model_row_from_hf_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A models.csv-shaped row for a model the catalog lacks, from its Hugging Face config.json."""
    heads = int(config["num_attention_heads"])
    return {
        "model": name, "layers": int(config["num_hidden_layers"]), "hidden": int(config["hidden_size"]),
        "intermediate": int(config["intermediate_size"]), "heads": heads,
        "kv_heads": int(config.get("num_key_value_heads") or heads), "vocab": int(config["vocab_size"]),
        "experts": int(config.get("num_local_experts") or 1), "experts_per_token": int(config.get("num_experts_per_tok") or 1),
        "tied_embeddings": bool(config.get("tie_word_embeddings", False)),
    }


def local_plan(workload: Workload, model_row: pd.Series | dict[str, Any], replica: Replica, offerings: pd.DataFrame, gpus: pd.DataFrame,
               deadline_s: float, quality_target: float, price_override: float | None = None,
               cpu_profile: dict[str, Any] | None = None, cloud_baselines: bool = True,
               calibration: tuple[float, float, str, float] | None = None, confidence: float = 0.9) -> Plan:
    """The local run as a Plan: one group (this machine, `replica`), predicted cost ($) and makespan (s).

    `calibration` (start-up s, work factor, how it was measured, σ of ln rate) comes from this machine's earlier runs of this
    model and replica: the makespan is the start-up plus the modelled work × the factor. With `cloud_baselines`, the
    same batch is planned on `offerings` (deadline, quality) and that plan and its baselines become this plan's
    baselines (savings = their cost / local cost). Its outlook is at `confidence`, from the spread of where its rates
    come from (a calibration, a profile, or the roofline of a first run).
    """
    model = ModelShape.from_row(model_row)
    vcpus, memory = host_vcpus(), host_memory_gib()
    price, priced_as = local_price_per_hour(offerings, vcpus, price_override)
    cpu_spec = gpus.set_index("gpu", drop=False).loc["cpu"]
    startup_s, factor, calibrated, measured_spread = calibration or (first_run_startup_s(model), 1.0, None, 0.0)
    sigma = measured_spread if calibration else rate_spread("cpu", False, cpu_profile is not None)
    rates = [r / factor for r in local_requests_per_s(model, cpu_spec, vcpus, memory, replica.bits, workload, cpu_profile)]
    finish_s = startup_s + sum(c.count / r for c, r in zip(workload.classes, rates) if c.count)
    cost = price * finish_s / 3600
    group = FleetGroupPlan(
        cloud=LOCAL_CLOUD, region=priced_as, instance_type=f"this machine ({vcpus} vCPU, {memory:.0f} GiB)", gpu="cpu",
        gpus_per_instance=0, spot=False, price_per_hour=price, count=1, replicas=1, replica=replica,
        quality=model_quality(tuple(replica.bits), model.name),
        class_shares={c.name: 1.0 for c in workload.classes}, requests_per_s={c.name: r for c, r in zip(workload.classes, rates)},
        finish_s=finish_s, startup_s=startup_s, work_factor=factor, calibration=calibrated,
        rate_spread=sigma,
    )
    baselines = _cloud_baselines(workload, model_row, offerings, gpus, deadline_s, quality_target, cost, cpu_profile) \
        if cloud_baselines else []
    return Plan(
        model=model.name, deadline_s=deadline_s, budget=None, quality_target=quality_target, spot_allowed=False,
        workload=[WorkloadClassPlan(name=k.name, count=k.count, input_tokens=k.input_tokens, output_tokens=k.output_tokens)
                  for k in workload.classes],
        groups=[group], cost=cost, makespan_s=finish_s, quality=group.quality, baselines=baselines,
        outlook=local_outlook(group, deadline_s, confidence, provenance(calibration is not None, cpu_profile is not None, "cpu")),
    )


def local_outlook(group: FleetGroupPlan, deadline_s: float, confidence: float, kind: str) -> Outlook:
    """What this machine's run promises at `confidence`: its one group's spread (`rate_spread`, from where its rates
    come from: `kind`, solver/uncertainty.py)."""
    from solver.outlook import GroupRisk, fleet_outlook

    sigma = group.rate_spread
    risk = GroupRisk(source="local", count=1, work_s=group.finish_s - group.startup_s, startup_s=group.startup_s,
                     price_per_hour=group.price_per_hour, rate_spread=sigma)  # one group: it ends on its own work
    return fleet_outlook([risk], deadline_s, confidence, spread_words(kind, sigma))


def _cloud_baselines(workload: Workload, model_row: pd.Series | dict[str, Any], offerings: pd.DataFrame, gpus: pd.DataFrame,
                     deadline_s: float, quality_target: float, local_cost: float,
                     cpu_profile: dict[str, Any] | None) -> list[BaselinePlan]:
    """The cloud fleet costserve would plan for the same batch, and that plan's baselines."""
    from costserve.errors import PlanningError
    from solver.planner import plan_batch

    try:
        cloud = plan_batch(workload, model_row, offerings, gpus, deadline_s, None, quality_target, cpu_profile=cpu_profile)
    except PlanningError as exc:
        return [BaselinePlan(name="costserve-cloud", cost=None, makespan_s=None, note=str(exc))]
    from solver.baseline_notes import fleet_text

    rents, precision = fleet_text(cloud.groups)
    out = [BaselinePlan(name="costserve-cloud", cost=cloud.cost, makespan_s=cloud.makespan_s,
                        note=", ".join(f"{g.count}x {g.instance_type}" for g in cloud.groups), fleet=rents,
                        precision=precision)]
    out += cloud.baselines
    return [b.model_copy(update={"savings": b.cost / local_cost if b.cost and local_cost > 0 else None}) for b in out]
