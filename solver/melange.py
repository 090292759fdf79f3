"""Mélange's own input, planned by costserve's fleet MILP (`costserve plan --melange FILE`).

Mélange (Griggs et al., 2024; github.com/tyler-griggs/melange-release) plans a steady request
rate: `workload_distribution[i][j]` is the share of requests in input bucket i and output bucket
j, `total_request_rate` the requests/s, and each GPU of `gpu_info` has a `cost` ($/h) and
`tputs[i][j]`, its profiled maximum requests/s in that bucket. Its ILP buys whole GPUs for the
hour and assigns each bucket's rate (cut into `slice_factor` slices) to them.

costserve reads that file as is and plans one steady hour with the same MILP it uses for
batches: one workload class per non-empty bucket (rate × 3600 requests), one candidate per GPU
type (one GPU an instance, no start-up, no availability limit), each class served at its own
bucket's throughput, and `steady` cost (an instance is paid for the whole hour, as in Mélange).
costserve splits a bucket's rate continuously where Mélange cuts it into slices, so its answer
costs at most what Mélange's does for any `slice_factor`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costserve.errors import PlanInputError
from solver.candidates import Candidate
from solver.fleet import FleetProblem, FleetSolution, Infeasible, solve_fleet
from solver.jsonfile import read_json_model
from solver.workload import Workload, WorkloadClass

HOUR_S = 3600.0
UNLIMITED = 1_000_000  # Mélange has no availability limit


class MelangeGpu(BaseModel):
    model_config = ConfigDict(extra="allow")
    cost: float = Field(gt=0, description="$/h of one GPU")
    tputs: list[list[float]] = Field(min_length=1, description="max requests/s per bucket")


class MelangeInput(BaseModel):
    """Mélange's input JSON (extra keys allowed, as Mélange ignores them)."""

    model_config = ConfigDict(extra="allow")
    gpu_info: dict[str, MelangeGpu] = Field(min_length=1)
    workload_distribution: list[list[float]] = Field(min_length=1)
    total_request_rate: float = Field(gt=0, description="requests/s")
    slice_factor: int = Field(1, ge=1, description="Mélange's slices per bucket (costserve splits continuously)")

    @model_validator(mode="after")
    def _shapes(self) -> MelangeInput:
        rows, cols = len(self.workload_distribution), len(self.workload_distribution[0])
        if any(len(r) != cols for r in self.workload_distribution) or any(
            v < 0 for r in self.workload_distribution for v in r
        ):
            raise ValueError("workload_distribution: rows of equal length, shares ≥ 0")
        for gpu, info in self.gpu_info.items():
            if len(info.tputs) != rows or any(len(r) != cols for r in info.tputs):
                raise ValueError(
                    f"gpu_info.{gpu}.tputs: expected {rows} rows of {cols} values, as workload_distribution"
                )
            if any(v < 0 for r in info.tputs for v in r):
                raise ValueError(f"gpu_info.{gpu}.tputs: throughputs must be ≥ 0")
        return self

    def buckets(self) -> list[tuple[int, int, float]]:
        """(input bucket, output bucket, requests/s) of every bucket with requests."""
        return [
            (i, j, share * self.total_request_rate)
            for i, row in enumerate(self.workload_distribution)
            for j, share in enumerate(row)
            if share > 0
        ]

    def bucket_names(self) -> list[str]:
        """The workload class name of each bucket with requests, in buckets() order: `bucket I,J`."""
        return [f"bucket {i},{j}" for i, j, _ in self.buckets()]


class MelangeFileError(PlanInputError):
    """The Mélange input is unreadable or invalid; the message names the file and field."""


def load_melange(path: Path) -> MelangeInput:
    """Read and validate a Mélange input JSON."""
    return read_json_model(path, MelangeInput, MelangeFileError)


def melange_problem(spec: MelangeInput) -> FleetProblem:
    """One steady hour of `spec` as a FleetProblem: a class per bucket, a one-GPU candidate per GPU type."""
    buckets = spec.buckets()
    workload = Workload(
        tuple(
            WorkloadClass(name, rate * HOUR_S, 0, 0)  # type: ignore[arg-type]  # count: requests in one hour at the bucket's rate, fractional (the MILP takes floats)
            for name, (_, _, rate) in zip(spec.bucket_names(), buckets)
        )
    )
    candidates = [
        Candidate(
            offering=o,
            label=gpu,
            gpu=gpu,
            gpus_per_instance=1,
            spot=False,
            price_per_hour=info.cost,
            tp=1,
            replicas=1,
            bits=16,
            quality=1.0,
            requests_per_s=tuple(info.tputs[i][j] for i, j, _ in buckets),
            startup_seconds=0.0,
        )
        for o, (gpu, info) in enumerate(spec.gpu_info.items())
    ]
    return FleetProblem(candidates, workload, HOUR_S, {o: UNLIMITED for o in range(len(candidates))}, steady=True)


def plan_melange(spec: MelangeInput) -> FleetSolution:
    """The cheapest GPU mix serving `spec`'s rate for an hour; cost in $/h. Raises Infeasible (a bucket no GPU
    serves)."""
    problem = melange_problem(spec)
    unserved = [
        c.name
        for k, c in enumerate(problem.workload.classes)
        if not any(cand.requests_per_s[k] > 0 for cand in problem.candidates)
    ]
    if unserved:
        raise Infeasible(f"no GPU of gpu_info serves {unserved[0]} (every tputs value there is 0)")
    return solve_fleet(problem)


def melange_answer(solution: FleetSolution, spec: MelangeInput) -> dict[str, float]:
    """The solution in Mélange's result form: GPUs per type (0 for unused) and `cost` ($/h)."""
    counts = {gpu: 0 for gpu in spec.gpu_info}
    for g in solution.groups:
        counts[g.candidate.gpu] += g.count
    return {**counts, "cost": round(solution.cost, 6)}
