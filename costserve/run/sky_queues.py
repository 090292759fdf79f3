"""Shards to a SkyPilot fleet group's broker queue, which is named after the run (deploy/skypilot.py: group_queue), so
runs sharing a broker never take each other's shards. They travel as on every backend (run/shard_tasks.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from costserve.run.shard_tasks import ShardTasks
    from costserve.run.shard_window import ShardWindow


def group_window(tasks: ShardTasks, group: str, size: int, shards: list[str]) -> ShardWindow[Any]:
    """A window of `size` shards on fleet group `group`'s (g0, g1, ...) queue, holding `shards` (sent as it is filled)."""
    from costserve.run.shard_window import ShardWindow
    from deploy.skypilot import group_queue

    queue = group_queue(tasks.store.id, group)
    return ShardWindow(size, lambda sid: tasks.send(sid, queue), shards)
