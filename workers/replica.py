"""The replica description a worker runs: the same JSON as `solver.plan.Replica`.

Workers may not import the solver, so this is the worker's own reading of that contract
(a test round-trips a solver Replica through it). Stage `device` is "cpu" or "cuda[:i]";
a planner GPU name (e.g. "L4") means "this machine's accelerator" and maps to cuda when
one exists, else cpu. Bits per layer: 32, 16, 8 or 4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workers.quantize import BITS


class ReplicaError(Exception):
    """A replica description is unreadable or does not fit the model; the message says where."""


class HostLayer(BaseModel):
    """A layer kept in host memory; per phase it runs on the host "cpu" or is "stream"ed to the stage's device."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    layer: int = Field(ge=0)
    prefill: Literal["cpu", "stream"]
    decode: Literal["cpu", "stream"]


class StageSpec(BaseModel):
    """Decoder layers [first_layer, last_layer] on one device, with each layer's bit-width and any host-resident layers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    device: str = "cpu"
    first_layer: int = Field(ge=0)
    last_layer: int = Field(ge=0)
    bits: list[int]
    host_layers: list[HostLayer] = []

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        n = self.last_layer - self.first_layer + 1
        if n < 1:
            raise ValueError(f"stage layers {self.first_layer}..{self.last_layer} are empty")
        if len(self.bits) != n:
            raise ValueError(f"stage {self.first_layer}..{self.last_layer} has {n} layers but {len(self.bits)} bit-widths")
        bad = sorted(set(self.bits) - set(BITS))
        if bad:
            raise ValueError(f"bits {bad} not supported; use {list(BITS)}")
        host = [h.layer for h in self.host_layers]
        outside = [layer for layer in host if not self.first_layer <= layer <= self.last_layer]
        if outside:
            raise ValueError(f"host layer {outside[0]} is not in stage {self.first_layer}..{self.last_layer}")
        if len(set(host)) != len(host):
            raise ValueError("a host layer is listed twice")
        return self

    def host_modes(self) -> dict[int, tuple[str, str]]:
        """{layer: (prefill mode, decode mode)} of this stage's host-resident layers."""
        return {h.layer: (h.prefill, h.decode) for h in self.host_layers}

    def torch_device(self) -> str:
        """The torch device this stage runs on here: cuda when asked for and present, else cpu."""
        import torch

        if self.device.startswith("cuda") or self.device.lower() not in ("cpu", "host"):
            if torch.cuda.is_available():
                return self.device if self.device.startswith("cuda") else "cuda"
        return "cpu"


class ReplicaSpec(BaseModel):
    """An ordered list of pipeline stages plus the prefill and decode micro-batch sizes (sequences)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tp: int = Field(1, ge=1)
    stages: list[StageSpec] = Field(min_length=1)
    prefill_micro_batch: int = Field(4, ge=1)
    decode_micro_batch: int = Field(16, ge=1)

    @property
    def bits(self) -> list[int]:
        return [b for s in self.stages for b in s.bits]

    @property
    def n_layers(self) -> int:
        return self.stages[-1].last_layer + 1

    def check_layers(self, n_layers: int) -> None:
        """Raise ReplicaError unless the stages cover layers 0..n_layers-1 contiguously, in order."""
        expected = 0
        for i, s in enumerate(self.stages):
            if s.first_layer != expected:
                raise ReplicaError(f"stage {i} starts at layer {s.first_layer}, expected {expected} (stages must be contiguous)")
            expected = s.last_layer + 1
        if expected != n_layers:
            raise ReplicaError(f"stages cover layers 0..{expected - 1} but the model has {n_layers} layers")

    @classmethod
    def uniform(cls, n_layers: int, bits: int | list[int] = 32, stages: int = 1, decode_micro_batch: int = 16, prefill_micro_batch: int = 4) -> ReplicaSpec:
        """`stages` near-equal contiguous stages on the CPU; `bits` one width or one per layer."""
        per_layer = [bits] * n_layers if isinstance(bits, int) else list(bits)
        bounds = [round(i * n_layers / stages) for i in range(stages + 1)]
        return cls(
            stages=[StageSpec(first_layer=a, last_layer=b - 1, bits=per_layer[a:b]) for a, b in zip(bounds, bounds[1:])],
            prefill_micro_batch=prefill_micro_batch,
            decode_micro_batch=decode_micro_batch,
        )


def read_replica(path: Path) -> ReplicaSpec:
    """Read a replica JSON file: a bare Replica, or a Plan (its first group's replica is used)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ReplicaError(f"{path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ReplicaError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None
    if isinstance(data, dict) and "groups" in data:
        if not data["groups"]:
            raise ReplicaError(f"{path}: the plan has no fleet groups")
        data = data["groups"][0]["replica"]
    try:
        return ReplicaSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "replica"
        raise ReplicaError(f"{path}: {where}: {err['msg']}") from None
