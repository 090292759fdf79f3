"""The Plan: the typed, JSON-serialisable contract between the planner and everything after it.

Provisioners (`deploy/`) launch `groups`; workers run each group's `replica` description.
Money in $, rates in $/h, times in seconds, throughput in requests/s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HostLayer(BaseModel):
    """A decoder layer kept in host memory, and per phase where it runs: the host "cpu", or "stream"ed to the device."""

    model_config = ConfigDict(frozen=True)

    layer: int = Field(ge=0)
    prefill: Literal["cpu", "stream"]
    decode: Literal["cpu", "stream"]


class Stage(BaseModel):
    """A contiguous range of decoder layers [first, last] on one device of the replica."""

    model_config = ConfigDict(frozen=True)

    device: str
    first_layer: int = Field(ge=0)
    last_layer: int = Field(ge=0)
    bits: list[int] = Field(description="bit-width of each layer of the stage, in order")
    host_layers: list[HostLayer] = Field(default=[], description="layers of the stage kept in host memory (CPU–GPU hybrid)")


class Replica(BaseModel):
    """How one replica is laid out: tensor-parallel degree, pipeline stages, micro-batches."""

    model_config = ConfigDict(frozen=True)

    tp: int = Field(ge=1)
    stages: list[Stage] = Field(min_length=1)
    prefill_micro_batch: int = Field(ge=1)
    decode_micro_batch: int = Field(ge=1)

    @property
    def bits(self) -> list[int]:
        return [b for s in self.stages for b in s.bits]

    def summary(self) -> str:
        """One line for tables: e.g. `tp2 8-bit`, `tp1 8-bit, 12 layers in host memory (decode: 4 cpu, 8 stream)`
        or `tp1 x2 stages [0-39 8b; 40-79 8b x38 + 4b x2] mb 4/32`."""
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
