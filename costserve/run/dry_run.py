"""`costserve submit --backend sky --dry-run`: the launch minus the cloud.

Every task file a launch would write is written (one per fleet group, and the broker head node's),
then checked by SkyPilot itself, offline: its launch dryrun where its tools are present, else (no
rsync) its task parser, with one line saying the full check needs rsync. What a launch would need
and this machine lacks (rsync, a Hugging Face token for a gated model) is one warning line each,
not a stop: a dry run is for reading the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from costserve.errors import LaunchError
from costserve.notices import step, warn
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from solver.plan import Plan

# Offline, the dryrun fakes an AWS account (moto); other clouds would need real credentials.
DRYRUN_CLOUDS = ("aws",)


def missing_tools() -> list[str]:
    """One line per tool SkyPilot's launch dryrun needs and this machine lacks (rsync: it syncs the file mounts)."""
    if shutil.which("rsync") is None:
        return [
            "rsync: not found; the task files are still written and parsed by SkyPilot, but its full launch "
            "dryrun needs rsync (apt-get install rsync)"
        ]
    return []


def dryrun_run(store: RunStore, plan: Plan, model_source: str | None = None) -> list[dict[str, Any]]:
    """Write every task file of a created run (`sky/g<i>.yaml` per fleet group and `sky/broker.yaml`) and have
    SkyPilot check each; one row per task: task, accepted, nodes, what SkyPilot chose (or its error)."""
    from costserve.planning.offerings import current_offerings
    from costserve.run.sky_tasks import node_tasks, require_skypilot
    from deploy.skypilot import dryrun, write_head_task

    require_skypilot()
    missing = missing_tools()
    for line in missing:
        warn(line)
    store.event(Event.DRY_RUN_CHECK, "started")
    offerings, gpus, _ = current_offerings()
    request = store.request()
    shard_size = request.shard_size if request is not None else 32
    tasks = node_tasks(plan.model, model_source, shard_size, require_token=False, plan=plan)  # no token: a warning here
    files = tasks.write(plan, gpus, store.dir)  # the files a launch would write
    files.append(write_head_task(store.dir, plan.groups[0].cloud, plan.groups[0].region))
    how = "task parser only" if missing else "launch dryrun"
    with step(f"SkyPilot {how} (offline) of {len(files)} task file(s)..."):
        try:
            report = dryrun(
                files,
                store.dir / "sky-home",
                offerings[offerings["cloud"].isin(DRYRUN_CLOUDS)],
                gpus,
                parse_only=bool(missing),
            )
        except (RuntimeError, OSError) as exc:
            raise LaunchError(str(exc)) from None
    store.event(Event.DRY_RUN_CHECK, f"{sum(t['ok'] for t in report['tasks'])}/{len(files)} accepted ({how})")
    return [
        {
            "task": Path(t["file"]).name,
            "accepted": ("yes" if t["ok"] else "no") + (" (parsed)" if missing and t["ok"] else ""),
            "nodes": t.get("num_nodes", ""),
            "SkyPilot chose": _chosen(t) if t["ok"] else t["error"],
        }
        for t in report["tasks"]
    ]


def _chosen(task: dict[str, Any]) -> str:
    c = task["chosen"]
    acc = ",".join(f"{k}:{v}" for k, v in (c.get("accelerators") or {}).items())
    return f"{c['instance_type'] or ''} {c['region']}{' spot' if c['use_spot'] else ''} {acc}".strip()
