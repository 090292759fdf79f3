"""Shards to a SkyPilot fleet group: sent inline (remote workers share no run directory) to the group's broker queue,
which is named after the run (deploy/skypilot.py: group_queue), so runs sharing a broker never take each other's shards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from costserve.run.shard_window import ShardWindow
    from costserve.store.runs import RunStore

RUN_TASK = "workers.tasks.run_jobs"


def send_shard(app: Any, store: "RunStore", shard: str, group: str) -> Any:
    """Send one shard's jobs, read from its file in the run directory, to fleet group `group` (g0, g1, ...) of
    `store`'s run; its async result. The payload is held only until the broker has it."""
    from deploy.skypilot import group_queue
    from workers.shard_io import read_shard

    payload = [job.to_json() for job in read_shard(store.dir, shard)]
    return app.send_task(RUN_TASK, args=(shard, payload), queue=group_queue(store.id, group))


def group_window(app: Any, store: "RunStore", group: str, size: int, shards: list[str]) -> "ShardWindow[Any]":
    """A window of `size` shards on fleet group `group`'s queue, holding `shards` (sent as it is filled)."""
    from costserve.run.shard_window import ShardWindow

    return ShardWindow(size, lambda sid: send_shard(app, store, sid, group), shards)
