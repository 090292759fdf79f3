"""Workload classes: jobs bucketed on an input × output token-length grid (Mélange-style).

A class keeps its request count and total input/output tokens; the planner costs a class
at its mean lengths. Output length is the job's `max_tokens` (an upper bound, so plans are
conservative). Sources: job files (chars/4 token estimate unless counts are given) or a
workload JSON `{"classes": [{"input_tokens": .., "output_tokens": .., "count": ..}]}`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from costserve.errors import PlanInputError
from solver.jsonfile import read_json_model

# Bucket upper edges (tokens). 3 × 3 = 9 classes: short chat, mid, long-document prompts
# against short, medium and long generations.
DEFAULT_INPUT_EDGES: tuple[float, ...] = (256, 2048, math.inf)
DEFAULT_OUTPUT_EDGES: tuple[float, ...] = (128, 512, math.inf)


@dataclass(frozen=True)
class WorkloadClass:
    """Requests of one length bucket: `count` requests totalling the given tokens."""

    name: str
    count: int
    input_tokens_total: int
    output_tokens_total: int

    @property
    def input_tokens(self) -> float:
        """Mean prompt length (tokens)."""
        return self.input_tokens_total / self.count

    @property
    def output_tokens(self) -> float:
        """Mean output length (tokens)."""
        return self.output_tokens_total / self.count


@dataclass(frozen=True)
class Workload:
    """The batch as classes, in grid order (input bucket major); `longest_job_tokens` is the most tokens one job needs
    (prompt + max_tokens; 0: not known, the longest class mean stands in)."""

    classes: tuple[WorkloadClass, ...]
    longest_job_tokens: int = 0

    @property
    def longest_tokens(self) -> int:
        """Tokens the longest job needs (prompt + max_tokens), or the longest class's mean when not known."""
        means = [math.ceil(c.input_tokens + c.output_tokens) for c in self.classes]
        return max([self.longest_job_tokens, *means])

    @property
    def requests(self) -> int:
        return sum(c.count for c in self.classes)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens_total for c in self.classes)


def _bucket_name(edges: tuple[float, ...], index: int) -> str:
    low = 0 if index == 0 else int(edges[index - 1])
    high = edges[index]
    return f"{low}+" if math.isinf(high) else f"{low}-{int(high)}"


def _class_label(input_edges: tuple[float, ...], i: int, output_edges: tuple[float, ...], o: int) -> str:
    return f"in {_bucket_name(input_edges, i)} / out {_bucket_name(output_edges, o)}"


def bucket_workload(
    groups: Iterable[tuple[int, int, int]],
    input_edges: tuple[float, ...] = DEFAULT_INPUT_EDGES,
    output_edges: tuple[float, ...] = DEFAULT_OUTPUT_EDGES,
) -> Workload:
    """Bucket (input tokens, output tokens, count) groups into a Workload; empty buckets are dropped."""
    totals: dict[tuple[int, int], list[int]] = {}
    longest = 0
    for inp, out, count in groups:
        if count <= 0:
            continue
        longest = max(longest, int(inp + out))
        key = (bisect.bisect_left(input_edges, inp), bisect.bisect_left(output_edges, out))
        acc = totals.setdefault(key, [0, 0, 0])
        acc[0] += count
        acc[1] += inp * count
        acc[2] += out * count
    classes = tuple(
        WorkloadClass(_class_label(input_edges, i, output_edges, o), *totals[(i, o)]) for i, o in sorted(totals)
    )
    return Workload(classes, longest)


def class_name(
    input_tokens: float,
    output_tokens: float,
    input_edges: tuple[float, ...] = DEFAULT_INPUT_EDGES,
    output_edges: tuple[float, ...] = DEFAULT_OUTPUT_EDGES,
) -> str:
    """The name of the workload class a request of these lengths (tokens) falls in, as bucket_workload names it."""
    return _class_label(
        input_edges,
        bisect.bisect_left(input_edges, input_tokens),
        output_edges,
        bisect.bisect_left(output_edges, output_tokens),
    )


Grid = tuple[tuple[float, ...], tuple[float, ...]]  # (input edges, output edges), upper bucket edges in tokens


def expected_outputs(workload: Workload, share: float) -> Workload:
    """The workload with each class's output tokens at `share` of its max_tokens (at least one token a request)."""
    return replace(
        workload,
        classes=tuple(
            replace(c, output_tokens_total=max(c.count, round(c.output_tokens_total * share))) for c in workload.classes
        ),
    )


def workload_from_jobs(
    jobs: Iterable[Any], tokens_of: Callable[[Any], int] | None = None, grid: Grid | None = None
) -> Workload:
    """Workload of validated Jobs; `tokens_of(job)` counts prompt tokens (default: chars/4 estimate); `grid` the
    bucket edges (default: the 3 × 3 grid above; a throughput profile's own grid when one is given).

    Jobs are duck-typed (`estimated_input_tokens()`, `max_tokens`): solver/ never imports costserve/.
    """
    count_input = tokens_of or (lambda job: job.estimated_input_tokens())
    return bucket_workload(
        ((count_input(job), job.max_tokens, 1) for job in jobs), *(grid or (DEFAULT_INPUT_EDGES, DEFAULT_OUTPUT_EDGES))
    )


class _ClassEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    input_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    count: int = Field(ge=1)


class _WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classes: list[_ClassEntry] = Field(min_length=1)


class WorkloadFileError(PlanInputError):
    """The workload JSON is unreadable or invalid; the message names the file and field."""


def load_workload_json(path: Path, grid: Grid | None = None) -> Workload:
    """Read `{"classes": [{"input_tokens", "output_tokens", "count"}]}` and bucket it (on `grid`, default 3 × 3)."""
    data = read_json_model(path, _WorkloadFile, WorkloadFileError)
    return bucket_workload(
        ((c.input_tokens, c.output_tokens, c.count) for c in data.classes),
        *(grid or (DEFAULT_INPUT_EDGES, DEFAULT_OUTPUT_EDGES)),
    )
