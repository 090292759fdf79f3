"""The contract between the planner and everything after it: the Job, the Replica and the Plan.

Pydantic and the standard library only (no Pyomo, no torch), so `workers/` and `deploy/` import
this module and nothing else of `solver/`. Provisioners (`deploy/`) launch `groups`; workers run
each group's `replica` and read jobs as `Job`. Money in $, rates in $/h, times in seconds,
throughput in requests/s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costserve.errors import PlanInputError
from solver.plan_outlook import Outlook
from solver.vllm_settings import VllmSettings

# The bit-widths costserve's engine runs (workers/quantize.py: fp32, bf16, int8, int4 weights).
ENGINE_BITS = (32, 16, 8, 4)
Endpoint = Literal["chat", "completion"]


def estimate_tokens(text: str) -> int:
    """Token count estimate for text without a tokenizer: ceil(chars / 4), at least 1 (tokens)."""
    return max(1, math.ceil(len(text) / 4))


@dataclass(frozen=True, slots=True)
class Job:
    """One validated job, whichever form it came in: what the driver plans, shards, re-plans and resumes,
    and what a worker generates.

    `line` is the 1-based line of the input file; results are written in that order.
    `messages` holds (role, text) pairs for chat jobs, `prompt` the text of completion jobs.
    """

    custom_id: str
    line: int
    max_tokens: int
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    endpoint: Endpoint | None = None  # None: "chat" when there are messages, else "completion"
    model: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.endpoint is None:
            object.__setattr__(self, "endpoint", "chat" if self.messages is not None else "completion")

    def prompt_text(self) -> str:
        """All prompt text of the job (chat messages joined by newlines)."""
        if self.messages is not None:
            return "\n".join(text for _, text in self.messages)
        return self.prompt or ""

    def estimated_input_tokens(self) -> int:
        """Input length estimate (tokens, chars/4) used when no tokenizer is loaded: the one estimate everywhere."""
        return estimate_tokens(self.prompt_text())

    def to_json(self) -> dict[str, Any]:
        """The JSON object shard files and inline shards carry."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """A Job from `to_json`'s object (lists back to tuples)."""
        msgs = data.get("messages")
        return cls(**{**data, "messages": tuple(map(tuple, msgs)) if msgs is not None else None,
                      "stop": tuple(data.get("stop") or ())})


class HostLayer(BaseModel):
    """A decoder layer kept in host memory, and per phase where it runs: the host "cpu", or "stream"ed to the device."""

    model_config = ConfigDict(frozen=True)

    layer: int = Field(ge=0)
    prefill: Literal["cpu", "stream"]
    decode: Literal["cpu", "stream"]


class Stage(BaseModel):
    """A contiguous range of decoder layers [first, last] on one device of the replica."""

    model_config = ConfigDict(frozen=True)

    device: str = Field("cpu", description='"cpu", "cuda[:i]", or a GPU name from gpus.csv (that instance\'s GPU)')
    first_layer: int = Field(ge=0)
    last_layer: int = Field(ge=0)
    bits: list[int] = Field(description="bit-width of each layer of the stage, in order")
    host_layers: list[HostLayer] = Field(default=[], description="layers of the stage kept in host memory (CPU–GPU hybrid)")

    @model_validator(mode="after")
    def _check(self) -> Stage:
        n = self.last_layer - self.first_layer + 1
        if n < 1:
            raise ValueError(f"stage layers {self.first_layer}..{self.last_layer} are empty")
        if len(self.bits) != n:
            raise ValueError(f"stage {self.first_layer}..{self.last_layer} has {n} layers but {len(self.bits)} bit-widths")
        if bad := sorted(set(self.bits) - set(ENGINE_BITS)):
            raise ValueError(f"bits {bad} not supported; use {list(ENGINE_BITS)}")
        host = [h.layer for h in self.host_layers]
        if outside := [layer for layer in host if not self.first_layer <= layer <= self.last_layer]:
            raise ValueError(f"host layer {outside[0]} is not in stage {self.first_layer}..{self.last_layer}")
        if len(set(host)) != len(host):
            raise ValueError("a host layer is listed twice")
        return self

    def host_modes(self) -> dict[int, tuple[str, str]]:
        """{layer: (prefill mode, decode mode)} of this stage's host-resident layers."""
        return {h.layer: (h.prefill, h.decode) for h in self.host_layers}


class Replica(BaseModel):
    """How one replica is laid out: the engine that runs it, tensor-parallel degree, pipeline stages, micro-batches.

    `engine` "costserve" (workers/engine.py: CPU groups, mixed-bit pipelines, CPU–GPU hybrids) or "vllm" (whole-model
    GPU replicas), whose `vllm` settings are exactly what its worker passes to `vllm.LLM`."""

    model_config = ConfigDict(frozen=True)

    engine: Literal["costserve", "vllm"] = "costserve"
    tp: int = Field(1, ge=1)
    stages: list[Stage] = Field(min_length=1)
    prefill_micro_batch: int = Field(4, ge=1, description="sequences per prefill micro-batch")
    decode_micro_batch: int = Field(16, ge=1, description="sequences per decode micro-batch")
    vllm: VllmSettings | None = Field(None, description="vllm.LLM keyword arguments (engine vllm only)")
    max_seq_len: int | None = Field(None, ge=2, description="tokens (prompt + output) each KV-cache slot holds when the "
                                                           "engine is fed continuously; None: the model's context")

    @model_validator(mode="after")
    def _engine_settings(self) -> Replica:
        if (self.engine == "vllm") != (self.vllm is not None):
            raise ValueError("a vllm replica needs its `vllm` settings, and only a vllm replica has them")
        if self.vllm is not None and (self.vllm.tensor_parallel_size != self.tp
                                      or self.vllm.pipeline_parallel_size != len(self.stages)):
            raise ValueError(f"vllm tensor_parallel_size {self.vllm.tensor_parallel_size} and pipeline_parallel_size "
                             f"{self.vllm.pipeline_parallel_size} must equal tp {self.tp} and the {len(self.stages)} stage(s)")
        return self

    @property
    def precision(self) -> str:
        """What the replica computes in, for people: `fp8, fp8 KV cache` (vLLM's settings), `8-bit`, `mixed 8/4-bit`."""
        return self.vllm.precision() if self.vllm is not None else bits_text(self.bits)

    @property
    def planned_batch(self) -> int:
        """Sequences in flight the planner costed this replica at: vLLM's max_num_seqs, or stages × decode micro-batch."""
        if self.vllm is not None:
            return self.vllm.max_num_seqs
        return len(self.stages) * self.decode_micro_batch

    @property
    def bits(self) -> list[int]:
        """Bit-width of every decoder layer, in order."""
        return [b for s in self.stages for b in s.bits]

    @property
    def n_layers(self) -> int:
        """Decoder layers the stages cover."""
        return self.stages[-1].last_layer + 1

    @classmethod
    def uniform(cls, n_layers: int, bits: int | list[int] = 32, stages: int = 1, decode_micro_batch: int = 16,
                prefill_micro_batch: int = 4, device: str = "cpu") -> Replica:
        """`stages` near-equal contiguous stages on `device`; `bits` one width or one per layer."""
        per_layer = [bits] * n_layers if isinstance(bits, int) else list(bits)
        bounds = [round(i * n_layers / stages) for i in range(stages + 1)]
        return cls(stages=[Stage(device=device, first_layer=a, last_layer=b - 1, bits=per_layer[a:b])
                           for a, b in zip(bounds, bounds[1:])],
                   prefill_micro_batch=prefill_micro_batch, decode_micro_batch=decode_micro_batch)

    def check_layers(self, n_layers: int) -> None:
        """Raise ReplicaError unless the stages cover layers 0..n_layers-1 contiguously, in order."""
        expected = 0
        for i, s in enumerate(self.stages):
            if s.first_layer != expected:
                raise ReplicaError(f"stage {i} starts at layer {s.first_layer}, expected {expected} (stages must be contiguous)")
            expected = s.last_layer + 1
        if expected != n_layers:
            raise ReplicaError(f"stages cover layers 0..{expected - 1} but the model has {n_layers} layers")

    def summary(self) -> str:
        """One line for tables: e.g. `tp2 8-bit`, `tp1 8-bit, 12 layers in host memory (decode: 4 cpu, 8 stream)`
        or `tp1 x2 stages [0-39 8b; 40-79 8b x38 + 4b x2] mb 4/32`."""
        if self.vllm is not None:
            return f"vllm tp{self.tp} {self.vllm.precision()} batch {self.vllm.max_num_seqs}"
        host = [h for s in self.stages for h in s.host_layers]
        if host:
            decode = {mode: sum(h.decode == mode for h in host) for mode in ("cpu", "stream")}
            widths = "/".join(str(b) for b in sorted(set(self.bits), reverse=True))
            return (f"tp{self.tp} {widths}-bit, {len(host)} layers in host memory "
                    f"(decode: {decode['cpu']} cpu, {decode['stream']} stream) mb {self.prefill_micro_batch}/{self.decode_micro_batch}")
        if len(self.stages) == 1 and len(set(self.bits)) == 1:
            return f"tp{self.tp} {self.bits[0]}-bit"
        parts = []
        for s in self.stages:
            counts = {b: s.bits.count(b) for b in sorted(set(s.bits), reverse=True)}
            bits = f"{s.bits[0]}b" if len(counts) == 1 else " + ".join(f"{b}b x{n}" for b, n in counts.items())
            parts.append(f"{s.first_layer}-{s.last_layer} {bits}")
        stages = f" x{len(self.stages)} stages" if len(self.stages) > 1 else ""
        return f"tp{self.tp}{stages} [{'; '.join(parts)}] mb {self.prefill_micro_batch}/{self.decode_micro_batch}"


def precision_text(groups: list[FleetGroupPlan]) -> str:
    """What a fleet's replicas compute in, for people: `bf16`, `fp8, fp8 KV cache`, `16-bit`, `mixed 8/4-bit`, or
    the groups' precisions joined by ` + ` when they differ."""
    if any(g.replica.vllm is not None for g in groups):
        return " + ".join(dict.fromkeys(g.replica.precision for g in groups))
    return bits_text([b for g in groups for b in g.replica.bits])


def bits_text(bits: list[int]) -> str:
    """Layer bit-widths for people: `16-bit`, or `mixed 8/4-bit` when they differ."""
    widths = sorted(set(bits), reverse=True)
    return f"{widths[0]}-bit" if len(widths) == 1 else "mixed " + "/".join(map(str, widths)) + "-bit"


class ReplicaError(PlanInputError, ValueError):
    """A replica description is unreadable or does not fit the model; the message says where."""


class FleetGroupPlan(BaseModel):
    """`count` instances of one offering, each running `replicas` replicas."""

    cloud: str
    region: str
    instance_type: str
    gpu: str
    gpus_per_instance: int
    spot: bool
    price_per_hour: float
    count: int = Field(ge=1)
    replicas: int = Field(ge=1)
    replica: Replica
    quality: float
    class_shares: dict[str, float] = Field(description="fraction of each workload class this group serves")
    requests_per_s: dict[str, float] = Field(description="per instance, per class")
    finish_s: float
    startup_s: float = Field(0.0, description="of finish_s, the instance start-up before work begins (s)")
    work_factor: float = Field(1.0, gt=0, description="measured ÷ modelled work time the plan applied (calibration)")
    calibration: str | None = Field(None, description="where start-up and work factor come from, e.g. "
                                                      "'calibrated from 3 runs, last on 2026-12-02 10:15'")
    rate_spread: float = Field(0.0, ge=0, description="σ of ln(true ÷ predicted rate) (solver/uncertainty.py)")


class WorkloadClassPlan(BaseModel):
    name: str
    count: int
    input_tokens: float
    output_tokens: float


class BaselinePlan(BaseModel):
    name: str
    cost: float | None
    makespan_s: float | None
    savings: float | None = Field(None, description="baseline cost / costserve cost")
    note: str = ""
    fleet: str = Field("", description="what the baseline would rent, e.g. `2x g6.xlarge (1x L4) aws/us-east-1`")
    precision: str = Field("", description="the bits its replicas run, e.g. `16-bit` or `mixed 8/4-bit`")
    differs: str = Field("", description="how its fleet differs from costserve's (GPU type, precision, mix), or "
                         "`same fleet`")


def hardware_signature(gpu: str, gpus_per_instance: int, instance_type: str) -> str:
    """The hardware a calibration is kept for: `1x H100` for a GPU instance (the GPUs decide its speed), `cpu
    m7i.8xlarge` for a CPU one (its instance type does)."""
    return f"cpu {instance_type}" if gpu == "cpu" else f"{gpus_per_instance}x {gpu}"


LOCAL_CLOUD = "local"  # the `cloud` of a fleet group that is this machine (solver/local_plan.py)


class Plan(BaseModel):
    """A whole batch plan: fleet, predicted cost and makespan, and the baselines beside it."""

    model: str
    deadline_s: float
    budget: float | None
    quality_target: float
    spot_allowed: bool
    workload: list[WorkloadClassPlan]
    groups: list[FleetGroupPlan]
    cost: float
    makespan_s: float
    quality: float = Field(description="lowest predicted quality among the groups")
    baselines: list[BaselinePlan] = []
    outlook: Outlook | None = Field(None, description="makespan and cost at the confidence, slack, P(meet deadline)")
    clouds: str = Field("", description="the clouds whose offerings were planned, and why (asked for, enabled, all)")
    jobs_sha256: str | None = Field(None, description="SHA-256 of the job file planned (`submit --plan` checks it)")
    output_share: float = Field(1.0, gt=0, le=1, description="the workload's output tokens ÷ its jobs' max_tokens: 1 plans "
                                "the upper bound; less where earlier runs of the model wrote fewer (calibration)")
