"""The one result record of a shard: what a worker reports back through the broker, whichever backend runs it.

Workers share no files with the driver (a SkyPilot node has none; a local worker uses none), so
everything a shard produces travels back as its Celery task state, and the driver's run store
(costserve/store/results.py) is the only writer of `results.sqlite`. While a shard runs its
state is PROGRESS with the report so far (a heartbeat, and the results finished so far, so a
worker killed mid-shard loses at most the jobs in flight); when it ends, its result is the
whole report. A retry carries the outputs and failures of earlier attempts in its message, so
the report of the attempt that finishes holds every job of the shard once.

Times are unix seconds; `tokens` are output tokens.
"""

from __future__ import annotations

from typing import Any, TypedDict


class JobOutput(TypedDict):
    """One finished job: its OpenAI Batch output line, the attempt that produced it, when (unix s), output tokens."""

    custom_id: str
    line: int
    output: dict[str, Any]
    tokens: int
    attempt: int
    finished: float


class AttemptFailure(TypedDict):
    """One failed attempt at a shard: `final` when no retry follows."""

    attempt: int
    worker: str
    error: str
    final: bool
    at: float


class ShardReport(TypedDict):
    """A shard's record, as a worker reports it: who runs it (`worker` is host/pid; `pid` and `pgid` its process and
    process group), which attempt, since when, the outputs and failures of every attempt so far, and the occupancy windows
    of this worker's replica since its last report ([start, end, rounds, in_flight_sum, in_flight_max, slots])."""

    shard: str
    worker: str
    pid: int
    pgid: int
    queue: str
    attempt: int
    started: float
    finished: float | None
    outputs: list[JobOutput]
    failures: list[AttemptFailure]
    occupancy: list[list[float]]


PROGRESS = "PROGRESS"  # the Celery state of a shard being worked on; its meta is the ShardReport so far
