"""`costserve submit --backend sky --dry-run`: one SkyPilot task per fleet group, checked by SkyPilot's offline dryrun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costserve.errors import LaunchError
from costserve.notices import step
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from solver.plan import Plan

# Offline, the dryrun fakes an AWS account (moto); other clouds would need real credentials.
DRYRUN_CLOUDS = ("aws",)


def dryrun_run(store: RunStore, plan: Plan, model_source: str | None = None) -> list[dict[str, Any]]:
    """Write `sky/g<i>.yaml` per fleet group of a created run and dry-run each; one row per task:
    task, accepted, nodes, what SkyPilot chose (or its error)."""
    from costserve.planning.offerings import current_offerings
    from costserve.run.sky_tasks import node_tasks, require_skypilot
    from deploy.skypilot import dryrun

    require_skypilot()
    store.event(Event.DRY_RUN_CHECK, "started")
    offerings, gpus, _ = current_offerings()
    request = store.request()
    shard_size = request.shard_size if request is not None else 32
    files = node_tasks(plan.model, model_source, shard_size).write(
        plan, gpus, store.dir
    )  # the files a launch would write
    with step("SkyPilot dryrun (offline)..."):
        try:
            report = dryrun(files, store.dir / "sky-home", offerings[offerings["cloud"].isin(DRYRUN_CLOUDS)], gpus)
        except (RuntimeError, OSError) as exc:
            raise LaunchError(str(exc)) from None
    store.event(Event.DRY_RUN_CHECK, f"{sum(t['ok'] for t in report['tasks'])}/{len(files)} accepted")
    return [
        {
            "task": Path(t["file"]).name,
            "accepted": "yes" if t["ok"] else "no",
            "nodes": t.get("num_nodes", ""),
            "SkyPilot chose": _chosen(t) if t["ok"] else t["error"],
        }
        for t in report["tasks"]
    ]


def _chosen(task: dict[str, Any]) -> str:
    c = task["chosen"]
    acc = ",".join(f"{k}:{v}" for k, v in (c.get("accelerators") or {}).items())
    return f"{c['instance_type']} {c['region']}{' spot' if c['use_spot'] else ''} {acc}".strip()
