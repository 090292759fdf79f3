"""Measured throughput profiles in the Mélange/AIBrix format, overriding the roofline model.

    {"input_edges": [...], "output_edges": [...],       # bucket upper edges, tokens
     "gpu_info": {"A10G": {"cost": 1.01, "tputs": [[req/s, ...], ...]}}}

`tputs[i][j]` is one GPU's measured requests/s, at 16 bits, for requests in input bucket i
and output bucket j. With a profile, the jobs are bucketed on the profile's own grid (`grid`),
so each class is one profiled bucket and takes that bucket's value.
For a profiled GPU, every configuration's modelled throughput is scaled by measured / modelled
at 16-bit on one GPU, so quantized and tensor-parallel configurations keep their modelled
ratios. `cost` is informational: prices come from the offerings catalog.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costserve.errors import PlanInputError
from solver.jsonfile import read_json_model


class GpuProfile(BaseModel):
    model_config = ConfigDict(extra="allow")
    cost: float | None = None
    tputs: list[list[float]] = Field(min_length=1)


class ThroughputProfile(BaseModel):
    """A Mélange-format throughput table with its bucket edges."""

    model_config = ConfigDict(extra="allow")
    input_edges: list[float] = Field(min_length=1)
    output_edges: list[float] = Field(min_length=1)
    gpu_info: dict[str, GpuProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> ThroughputProfile:
        for gpu, info in self.gpu_info.items():
            if len(info.tputs) != len(self.input_edges) or any(len(r) != len(self.output_edges) for r in info.tputs):
                raise ValueError(
                    f"gpu_info.{gpu}.tputs: expected {len(self.input_edges)} rows of {len(self.output_edges)} values"
                )
            if any(v < 0 for r in info.tputs for v in r):
                raise ValueError(f"gpu_info.{gpu}.tputs: throughputs must be ≥ 0")
        return self

    def grid(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The profile's bucket edges as a workload grid: (input edges, output edges), each closed with +inf so
        longer requests form a last class (costed at the last profiled bucket's throughput)."""
        import math

        def closed(edges: list[float]) -> tuple[float, ...]:
            return tuple(edges) if math.isinf(edges[-1]) else (*edges, math.inf)

        return closed(self.input_edges), closed(self.output_edges)

    def requests_per_s(self, gpu: str, input_tokens: float, output_tokens: float) -> float | None:
        """Measured req/s of one `gpu` for requests of these lengths, or None if not profiled."""
        info = self.gpu_info.get(gpu)
        if info is None:
            return None
        i = min(bisect.bisect_left(self.input_edges, input_tokens), len(self.input_edges) - 1)
        j = min(bisect.bisect_left(self.output_edges, output_tokens), len(self.output_edges) - 1)
        return info.tputs[i][j]


class ProfileError(PlanInputError):
    """The profile file is unreadable or invalid; the message names the file and field."""


def load_profile(path: Path, known_gpus: set[str]) -> ThroughputProfile:
    """Read and validate a profile; every GPU must be one of gpus.csv."""
    profile = read_json_model(path, ThroughputProfile, ProfileError)
    unknown = sorted(set(profile.gpu_info) - known_gpus)
    if unknown:
        raise ProfileError(f"{path}: gpu_info.{unknown[0]}: not a GPU of gpus.csv")
    return profile
