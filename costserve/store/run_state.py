"""A run's state as types: the events it records, the state they add up to, and its shard and fleet rows.

The run store keeps an append-only events table (kind, detail) and two row tables (shards,
fleet). Each kind of event has one spelling here (`Event`), a run's state is derived from them
(`RunState`, with the `StopReason` a stop carries), and rows come back as named tuples instead
of positional ones.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Event(StrEnum):
    """The kinds of event a run records (the `kind` column of run.sqlite's events)."""

    CREATED = "created"
    DRIVER = "driver"
    DRY_RUN = "dry run"  # the run is a `submit --dry-run`: planned and checked, nothing launched
    DRY_RUN_CHECK = "dry run check"  # SkyPilot's offline dryrun of the run's tasks: started, then N/M accepted
    REJECTED = "rejected"
    MODEL_OVERRIDE = "model override"
    CARRIED = "carried"
    PREPARED = "prepared"  # every shard of the run is written: what is left is running them
    QUEUED = "queued"
    BROKER = "broker"
    BROKER_LOST = "broker lost"  # the broker stopped answering (detail: how, and what the driver does)
    BROKER_BACK = "broker back"  # it answers again: after an outage, or restarted (the embedded one)
    BROKER_PID = "broker pid"
    LAUNCHING = "launching"
    LAUNCH_FAILED = "launch failed"  # a group's launch failed (no capacity, a quota, a cloud error): re-planned
    FLEET_UP = "fleet up"
    FLEET_DOWN = "fleet down"
    WORKER_STARTED = "worker started"
    WORKER_STALLED = "worker stalled"
    WORKER_LOST = "worker lost"
    SHARD_DONE = "shard done"
    SHARD_FAILED = "shard failed"
    GROUP_LOST = "group lost"
    REPLACED = "replaced"
    NO_REPLACEMENT = "no replacement"
    REBALANCED = "rebalanced"
    STEERED = "steered"  # the deadline steering added capacity: what it measured, what it added, at what cost
    DEADLINE_MISS = "deadline miss"  # the steering cannot make the deadline: by how much, measured how
    CANCEL_REQUESTED = "cancel requested"
    STOP_REASON = "stop reason"  # the StopReason of the stop recorded next
    STOPPED = "stopped"
    FINISHED = "finished"
    RESUMED = "resumed"


class RunState(StrEnum):
    """Where a run is, derived from its events since its last resume."""

    DRY_RUN = "dry run"
    RUNNING = "running"
    CANCELLING = "cancelling"
    INTERRUPTED = "interrupted"  # not ended, and no driver: killed (SIGKILL, out of memory) or its machine restarted
    STOPPED = "stopped"
    FINISHED = "finished"


class ShardState(StrEnum):
    """A shard of a run: queued (sent or waiting to be) until every job of it has a result."""

    QUEUED = "queued"
    DONE = "done"


class ShardRow(NamedTuple):
    """One shard of a run: its id, the fleet group that serves it, its jobs and its state."""

    shard_id: str
    group: str
    jobs: int
    state: ShardState


class FleetRow(NamedTuple):
    """One period a fleet group was up: `instances` at `price_per_hour` ($/h each) from `up` to `down` (unix s; None
    while it runs)."""

    group: str
    group_index: int
    instances: int
    price_per_hour: float
    up: float
    down: float | None

    def cost(self, now: float) -> float:
        """Dollars this period has cost by `now` (unix s)."""
        return self.instances * self.price_per_hour * ((self.down or now) - self.up) / 3600


def running_price_per_hour(rows: list[FleetRow]) -> float:
    """What the groups still up cost together, $/h."""
    return sum(r.instances * r.price_per_hour for r in rows if r.down is None)
