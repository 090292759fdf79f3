"""Launching a SkyPilot stretch of a run: the Redis head node, one cluster per group, and the shards sent inline.

Each shard travels inline in its Celery task (run/shard_tasks.py, as on every backend), because remote
workers share no directory with the driver; each group's shards are sent a window at a time.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costserve.notices import step
from costserve.run.sky_queues import group_window
from costserve.store.run_state import Event, ShardState
from costserve.store.runs import RunStore
from solver.plan import Plan

if TYPE_CHECKING:
    import pandas as pd

    from costserve.run.shard_tasks import ShardTasks
    from costserve.run.shard_window import ShardWindow
    from costserve.run.sky_tasks import NodeTasks


def broker_price_per_hour(offerings: pd.DataFrame, cloud: str) -> float:
    """$/h of the broker head node: 2 vCPUs at the cloud's cheapest CPU $/vCPU·h (0 when the catalog has none)."""
    cpu = offerings[(offerings["gpu"] == "cpu") & (offerings["cloud"] == cloud)]
    return float((cpu["price_per_hour"] / cpu["vcpus"]).min() * 2) if len(cpu) else 0.0


def launch_clusters(
    store: RunStore,
    fleet: Any,
    launch: Plan,
    files: list[Path],
    first: int,
    broker: str | None,
    offerings: pd.DataFrame,
    tasks: NodeTasks,
) -> tuple[str, list[tuple[str, BaseException, float]]]:
    """Launch the broker head node (unless `broker`) and every group of `launch` (its task `files`, with the secrets
    `tasks` supplies); returns the broker URL and the groups whose launch raised: (queue, exception, epoch s started),
    for the replacer to re-plan (run/replan.py). A head node refused in every region of the fleet: NoCapacity."""
    from costserve.run.broker_url import redact_url
    from deploy.skypilot import REDIS_PORT

    if broker is None:
        password = secrets.token_urlsafe(24)
        with step("launching the broker head node (Redis)..."):
            ip, cloud = _launch_head(store, fleet, launch.groups, password)
        broker = f"redis://:{password}@{ip}:{REDIS_PORT}/0"
        store.fleet_up("broker", -1, 1, broker_price_per_hour(offerings, cloud))
    store.event(Event.BROKER, redact_url(broker))
    failed: list[tuple[str, BaseException, float]] = []
    for i, (path, group) in enumerate(zip(files, launch.groups), start=first):
        store.event(Event.LAUNCHING, f"g{i}")  # the group's start-up counts from here (costserve/run/calibrate.py)
        started = time.time()
        try:
            with step(f"launching g{i}: {group.count}x {group.cloud}/{group.region}/{group.instance_type}..."):
                fleet.launch_group(path, f"g{i}", tasks.secrets(broker))
        except Exception as exc:  # noqa: BLE001 — the replacer re-raises what is not the cloud refusing
            failed.append((f"g{i}", exc, started))
            continue
        store.fleet_up(f"g{i}", i, group.count, group.price_per_hour)
    return broker, failed


def _launch_head(store: RunStore, fleet: Any, groups: list[Any], password: str) -> tuple[str, str]:
    """Launch the Redis head node in the region of the first group, else of the next group in another region, as the
    cloud refuses; (its IP, its cloud). NoCapacity when every one refuses (nothing else was launched)."""
    from costserve.errors import NoCapacity
    from costserve.run.launch_failure import classify
    from deploy.sky_fleet import cluster_name
    from deploy.skypilot import head_task_config, write_head_task

    refused = []
    for cloud, region in dict.fromkeys((g.cloud, g.region) for g in groups):
        write_head_task(store.dir, cloud, region)  # the file to audit, as `--dry-run` writes it
        try:
            return str(fleet.launch_broker(head_task_config(cloud, region), password)), cloud
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            fleet.forget(cluster_name(store.id, "broker"))  # whatever SkyPilot half-made goes down now
            store.event(Event.LAUNCH_FAILED, f"broker head node ({cloud}/{region}): {failure}")
            refused.append(f"{cloud}/{region}: {failure.kind}")
    raise NoCapacity(
        f"the broker head node could not launch ({'; '.join(refused)}); no group was launched; "
        f"`costserve resume {store.id}` tries again (or pass --broker)"
    )


def shard_windows(
    store: RunStore, tasks: ShardTasks, plan: Plan, first: int, shard_size: int
) -> dict[str, ShardWindow[Any]]:
    """A window per group of `plan.groups[first:]` over its queued shards (run/shard_window.py), filled: the first
    shards of each group are sent, inline, and the rest wait."""
    from costserve.run.shard_window import window_size

    queued: dict[str, list[str]] = {}
    for sid, queue, *_ in store.shards(ShardState.QUEUED):
        queued.setdefault(queue, []).append(sid)
    windows = {}
    for i in range(first, len(plan.groups)):
        g = plan.groups[i]
        size = window_size(g.count * g.replicas, g.replica.planned_batch, shard_size)
        windows[f"g{i}"] = group_window(tasks, f"g{i}", size, queued.get(f"g{i}", []))
    sent = sum(w.fill() for w in windows.values())
    store.event(
        Event.QUEUED,
        f"{sum(len(w) for w in windows.values())} shards on {len(windows)} queue(s), {sent} sent "
        "(the rest as the groups finish them)",
    )
    return windows
