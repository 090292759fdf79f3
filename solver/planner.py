"""Plan a batch: candidates -> fleet MILP -> Plan, with baselines and infeasibility diagnosis."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from costserve.durations import format_duration, format_money
from costserve.errors import PlanningError
from solver.baseline_notes import budget_advice
from solver.baselines import baseline_plans, solve_baselines
from solver.candidates import BIT_WIDTHS, Candidate, build_candidates, profile_calibration
from solver.costmodel import ModelShape
from solver.engine_check import check_engine_can_run
from solver.fleet import FleetGroup, FleetProblem, Infeasible, fastest_within_budget, solve_fleet
from solver.hybrid_candidates import hybrid_candidates
from solver.margin import DEFAULT_CONFIDENCE, at_predicted_rates, derated_problem, solve_at_confidence
from solver.partition_candidates import partitioned_candidates
from solver.plan import (
    FleetGroupPlan,
    HostLayer,
    Plan,
    Replica,
    Stage,
    VllmSettings,
    WorkloadClassPlan,
    hardware_signature,
)
from solver.quality import model_quality
from solver.serving_engine import VLLM
from solver.uncertainty import provenance, rate_spread
from solver.vllm_settings import MIN_MODEL_LEN, model_len_for
from solver.workload import Workload

if TYPE_CHECKING:
    import pandas as pd

    from solver.profiles import ThroughputProfile


# (hardware signature, replica summary) -> (start-up s, work factor, how it was measured, σ of ln rate over its runs)
Calibrate = Callable[[str, str], "tuple[float, float, str, float] | None"]


def diagnose(problem: FleetProblem, model: ModelShape, quality_target: float, all_candidates: Callable[[int], bool]) -> str:
    """One line: why `problem` has no fleet, and the nearest feasible point.

    `all_candidates(bits)` says whether any offering could hold the model at `bits` bits at any quality.
    """
    if not problem.candidates:
        for bits in BIT_WIDTHS:
            if all_candidates(bits):
                q = model_quality((bits,) * model.layers, model.name)
                return (f"no offering has memory for {model.name} at a quality of {quality_target:g}: "
                        f"allow --quality {math.floor(q * 1000) / 1000:g} for {bits}-bit")
        return f"no available offering has memory for {model.name} even at {min(BIT_WIDTHS)}-bit"
    deadline = format_duration(problem.deadline_s)
    if problem.budget is not None:
        try:
            cheapest = solve_fleet(problem.with_(budget=None))
        except Infeasible:
            cheapest = None  # the deadline alone is already impossible: say so below
        if cheapest is not None:
            return (f"budget {format_money(problem.budget)} is below the cheapest fleet for {deadline}, "
                    f"{format_money(cheapest.cost)} — {budget_advice(problem, cheapest)}")
    try:
        fastest = fastest_within_budget(problem.with_(budget=math.inf))
        return (f"deadline {deadline} is too short for the available offerings: the fastest fleet "
                f"needs {format_duration(fastest.makespan_seconds)} ({format_money(fastest.cost)}) — raise --deadline "
                "or --available")
    except Infeasible as exc:
        return f"no fleet can run this batch: {exc}"


def replica_of(c: Candidate, model: ModelShape, max_model_len: int = MIN_MODEL_LEN) -> Replica:
    """The replica a candidate's workers run; a vLLM one with the settings its worker passes to `vllm.LLM` (the batch
    the candidate was costed at; `max_model_len` tokens)."""
    layout = c.stages or ((0, model.layers - 1, (c.bits,) * model.layers),)
    host = [HostLayer(layer=l, prefill=pre, decode=dec) for l, pre, dec in c.host_layers]
    stages = [Stage(device=c.gpu, first_layer=first, last_layer=last, bits=list(bits),
                    host_layers=[h for h in host if first <= h.layer <= last]) for first, last, bits in layout]
    vllm = None
    if c.engine == "vllm":
        fp8 = c.numerics.activations == "fp8"
        vllm = VllmSettings(dtype="bfloat16", quantization="fp8" if fp8 else None, kv_cache_dtype=c.numerics.kv_cache,
                            tensor_parallel_size=c.tp, pipeline_parallel_size=len(stages), max_num_seqs=c.decode_micro_batch,
                            max_model_len=max_model_len, gpu_memory_utilization=VLLM.kv_fraction,
                            checkpoint=c.checkpoint, checkpoint_bits=c.bits if c.checkpoint else None)
    return Replica(engine="vllm" if vllm else "costserve", tp=c.tp, stages=stages, prefill_micro_batch=c.prefill_micro_batch,
                   decode_micro_batch=c.decode_micro_batch, vllm=vllm)


def calibrated(candidates: list[Candidate], offerings: pd.DataFrame, model: ModelShape, calibrate: Calibrate) -> list[Candidate]:
    """The candidates with the measured start-up (s) and work factor of earlier runs on the same hardware and replica
    (`calibrate(hardware_signature, replica summary)`) in place of the model's own: rates ÷ factor."""
    out = []
    for c in candidates:
        hardware = hardware_signature(c.gpu, c.gpus_per_instance, str(offerings.loc[c.offering]["instance_type"]))
        found = calibrate(hardware, replica_of(c, model).summary())
        if found is None:
            out.append(c)
            continue
        startup_s, factor, text, spread = found
        out.append(replace(c, requests_per_s=tuple(r / factor for r in c.requests_per_s), startup_seconds=startup_s,
                           work_factor=factor, calibration=text, rate_spread=spread))
    return out


def _group_plan(g: FleetGroup, offerings: pd.DataFrame, workload: Workload, model: ModelShape,
                fp8_gpus: frozenset[str] = frozenset()) -> FleetGroupPlan:
    c = g.candidate
    row = offerings.loc[c.offering]
    replica = replica_of(c, model, model_len_for(workload.longest_tokens, model.context))
    # a plan names only what a worker runs
    check_engine_can_run(replica, model.layers, c.gpus_per_instance, c.replicas, fp8_tensor_cores=c.gpu in fp8_gpus)
    return FleetGroupPlan(
        cloud=row["cloud"], region=row["region"], instance_type=row["instance_type"], gpu=c.gpu,
        gpus_per_instance=c.gpus_per_instance, spot=c.spot, price_per_hour=c.price_per_hour, count=g.count,
        replicas=c.replicas, replica=replica,
        quality=c.quality,
        class_shares={k.name: round(s, 6) for k, s in zip(workload.classes, g.shares) if s > 1e-9},
        requests_per_s={k.name: r for k, r in zip(workload.classes, c.requests_per_s)},
        finish_s=g.finish_seconds, startup_s=c.startup_seconds, work_factor=c.work_factor, calibration=c.calibration, rate_spread=c.rate_spread,
    )


def all_candidates(
    offerings: pd.DataFrame, gpus: pd.DataFrame, model: ModelShape, workload: Workload, quality_target: float,
    spot: bool, profile: ThroughputProfile | None = None, partitioned: bool = True, cpu_profile: dict | None = None,
    own_weights: bool = False,
) -> list[Candidate]:
    """Whole-model uniform-bit candidates plus, with `partitioned`, the partition ILP's mixed-bit and pipelined
    ones and the CPU–GPU hybrid ones of GPUs too small for the model. `own_weights`: the nodes get the user's weights,
    so no pre-quantized checkpoint is offered."""
    out = build_candidates(offerings, gpus, model, workload, quality_target, spot, profile=profile, cpu_profile=cpu_profile,
                           checkpoints=not own_weights)
    if partitioned:
        specs = gpus.set_index("gpu", drop=False)
        calibration = profile_calibration(profile, specs, model, workload) if profile is not None else {}
        uniform = list(out)
        out += partitioned_candidates(offerings, specs, model, workload, quality_target, spot, BIT_WIDTHS, calibration, uniform)
        out += hybrid_candidates(offerings, specs, model, workload, quality_target, spot, BIT_WIDTHS, uniform, cpu_profile)
    return out


def plan_batch(
    workload: Workload,
    model_row: pd.Series,
    offerings: pd.DataFrame,
    gpus: pd.DataFrame,
    deadline_s: float,
    budget: float | None = None,
    quality_target: float = 0.0,
    spot: bool = False,
    gpu_caps: dict[str, int] | None = None,
    with_baselines: bool = True,
    profile: ThroughputProfile | None = None,
    partitioned: bool = True,
    cpu_profile: dict | None = None,
    calibrate: Calibrate | None = None,
    own_weights: bool = False,
    confidence: float | None = DEFAULT_CONFIDENCE,
) -> Plan:
    """The cheapest plan meeting deadline (s), budget ($), quality and availability; PlanningError if none.

    `calibrate(hardware, replica)` gives earlier runs' measured start-up (s), work factor and how it was measured for a
    hardware signature (solver.plan.hardware_signature) and replica summary of this model, or None. `own_weights`: the
    nodes serve the user's own copy of the weights (`--model-source`), so no pre-quantized checkpoint is planned.
    `confidence`: the fleet's makespan at that quantile fits the deadline and its cost the budget (solver/margin.py);
    None plans on the deadline itself."""
    model = ModelShape.from_row(model_row)
    fp8 = frozenset(gpus.loc[gpus["fp8_tflops"] > 0, "gpu"]) if "fp8_tflops" in gpus else frozenset()  # GPUs with FP8 tensor cores
    availability = {int(i): int(a) for i, a in offerings["availability"].items()}
    candidates = all_candidates(offerings, gpus, model, workload, quality_target, spot, profile, partitioned, cpu_profile,
                                own_weights)
    if calibrate is not None:
        candidates = calibrated(candidates, offerings, model, calibrate)
    candidates = with_spreads(candidates, set(profile.gpu_info) if profile is not None else set(), cpu_profile is not None)
    problem = FleetProblem(candidates, workload, deadline_s, availability, budget, gpu_caps)
    try:
        best, asked, outlook = solve_at_confidence(problem, confidence)
    except Infeasible:
        problem = derated_problem(problem, confidence)  # what was asked: the diagnosis speaks of the same margin
        def any_at(bits: int) -> bool:
            return bool(build_candidates(offerings, gpus, model, workload, 0.0, spot, bit_widths=(bits,),
                                         checkpoints=not own_weights))
        margin = f" (at {confidence:.0%} confidence; a lower --confidence asks less margin)" if confidence else ""
        raise PlanningError(diagnose(problem, model, quality_target, any_at) + margin) from None
    ours = [_group_plan(g, offerings, workload, model, fp8) for g in best.groups]
    baselines = []
    if with_baselines:
        restate = partial(at_predicted_rates, originals={id(d): c for d, c in zip(asked.candidates, candidates)},
                          problem=problem)
        results = [replace(r, solution=restate(r.solution)) if r.solution else r for r in solve_baselines(asked)]
        baselines = baseline_plans(results, best, ours,
                                   lambda groups: [_group_plan(g, offerings, workload, model, fp8) for g in groups])
    return Plan(
        model=model.name, deadline_s=deadline_s, budget=budget, quality_target=quality_target, spot_allowed=spot,
        workload=[WorkloadClassPlan(name=k.name, count=k.count, input_tokens=k.input_tokens, output_tokens=k.output_tokens)
                  for k in workload.classes],
        groups=ours,
        cost=round(best.cost, 6), makespan_s=round(best.makespan_seconds, 1),
        quality=min(g.candidate.quality for g in best.groups), baselines=baselines, outlook=outlook,
    )


def with_spreads(candidates: list[Candidate], profiled_gpus: set[str], cpu_profiled: bool) -> list[Candidate]:
    """The candidates with the spread of their rates and its source set from their provenance (solver/uncertainty.py)."""
    out = []
    for c in candidates:
        fp8 = c.numerics.activations == "fp8"
        profiled = c.gpu in profiled_gpus or (c.gpu == "cpu" and cpu_profiled)
        calibrated = c.calibration is not None  # its spread is its runs' own (planner.calibrated)
        spread = c.rate_spread if calibrated else rate_spread(c.gpu, fp8, profiled)
        kind = provenance(calibrated, profiled, c.gpu)
        out.append(replace(c, rate_spread=spread, rate_source=f"{c.gpu} {'fp8' if fp8 else c.bits} {kind}"))
    return out
