"""The plan of a run on this machine: the replica it runs, this machine priced like a cloud CPU, the cloud beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from costserve.request import BatchRequest

if TYPE_CHECKING:
    from solver.plan import Plan, Replica
    from solver.workload import Workload


@dataclass(frozen=True)
class LocalPlan:
    """What a local run will do: the plan (cost, makespan, baselines), its replica, and the model directory it loads."""

    plan: Plan
    replica: Replica
    model_dir: Path
    model_name: str
    profiled: bool = False  # this machine's `costserve profile` of the model timed the replica (not the roofline)

    @property
    def guess(self) -> bool:
        """Whether the prediction is the roofline's alone: no profile of this machine, no earlier run calibrating it."""
        return not self.profiled and self.plan.groups[0].calibration is None


SLOT_TOKENS_STEP = 128  # tokens; a slot's KV cache is sized in steps of this (the engine grows it if a job needs more)


def slot_tokens(longest_job_tokens: int, model_context: int) -> int:
    """Tokens each KV-cache slot of a local replica holds: the batch's longest job (prompt estimate + max_tokens),
    rounded up to SLOT_TOKENS_STEP, at most the model's context (0: not known). Sized to the batch, not the model's
    whole context, because every slot of the planned batch holds it at once (64 slots × 8k tokens of SmolLM2 in fp32
    would be 24 GiB); a job the estimate undercounts makes the engine grow the cache (workers/engine.py)."""
    tokens = -(-max(longest_job_tokens, 1) // SLOT_TOKENS_STEP) * SLOT_TOKENS_STEP
    return min(tokens, model_context) if model_context > 0 else tokens


def plan_local(request: BatchRequest, model: str, workload: Workload, price_per_hour: float | None,
               model_dir: Path | None = None) -> LocalPlan:
    """Plan the request on this machine (priced at `price_per_hour` $/h, or like the catalog's cheapest cloud CPU).

    The replica is the request's `--replica` file, else the fastest bits per layer its quality allows. A model the
    catalog lacks is described from its config.json. Raises ModelSourceError or ReplicaError (one line each).
    """
    from catalog.load import load_models
    from costserve.planning.batch import cpu_profile_for, expected_workload
    from costserve.planning.offerings import current_offerings
    from costserve.store.calibration import calibration_for
    from solver.device_profile import default_profile_path
    from solver.local_plan import local_plan, machine_signature, model_row_from_hf_config
    from solver.local_replica import local_replica, profile_layer_ms
    from workers.model_source import model_name, resolve_model_dir
    from workers.replica import read_replica

    model_dir = model_dir or resolve_model_dir(model)  # converts the embedded model once, before workers race to
    config = json.loads((model_dir / "config.json").read_text())
    layers = config["num_hidden_layers"]
    name = model_name(model)
    if request.replica is not None:
        replica = read_replica(request.replica)  # a replica, or a plan's first group's
        replica.check_layers(layers)
    else:
        replica = local_replica(name, layers, request.quality, stages=request.stages,
                                layer_ms=profile_layer_ms(default_profile_path("cpu", name)))
    if replica.engine == "costserve" and replica.max_seq_len is None:
        replica = replica.model_copy(update={"max_seq_len": slot_tokens(workload.longest_job_tokens,
                                                                         int(config.get("max_position_embeddings") or 0))})
    models = load_models()
    match = models[models["model"].str.lower() == name.lower()]
    row = match.iloc[0] if not match.empty and int(match.iloc[0]["layers"]) == layers \
        else model_row_from_hf_config(name, config)
    offerings, gpus, _ = current_offerings()
    cpu_profile, _ = cpu_profile_for(row["model"])
    measured = calibration_for(machine_signature(), str(row["model"]), replica.summary())
    calibration = (measured.startup_s, measured.work_factor, measured.describe(), measured.log_spread) if measured else None
    workload, share = expected_workload(str(row["model"]), workload)
    plan = local_plan(workload, row, replica, offerings, gpus, request.deadline_s, request.quality, price_per_hour,
                      cpu_profile, calibration=calibration, confidence=request.confidence)
    return LocalPlan(plan.model_copy(update={"output_share": share}), replica, model_dir, name, profiled=cpu_profile is not None)
