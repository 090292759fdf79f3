"""Shards to a SkyPilot fleet group: sent inline (remote workers share no run directory) to the group's broker queue,
which is named after the run (deploy/skypilot.py: group_queue), so runs sharing a broker never take each other's shards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from costserve.store.runs import RunStore

RUN_TASK = "workers.tasks.run_jobs"


def send_shard(app: Any, store: "RunStore", shard: str, group: str, payload: list[dict[str, Any]]) -> Any:
    """Send one shard's jobs (`Job.to_json` objects) to fleet group `group` (g0, g1, ...) of `store`'s run; its async
    result."""
    from deploy.skypilot import group_queue

    return app.send_task(RUN_TASK, args=(shard, payload), queue=group_queue(store.id, group))
