"""`costserve submit --backend sky --dry-run`: plan a fleet, write one SkyPilot task per group, and dry-run them offline."""

from __future__ import annotations

from pathlib import Path

from costserve.store.runs import RunStore
from costserve.cli.output import console, fail, frame_table

# Offline, the dryrun fakes an AWS account (moto); other clouds would need real credentials.
DRYRUN_CLOUDS = "aws"


def run_sky_submit(jobs_path: Path, model: str | None, quality: float, deadline: str, budget: float | None,
                   spot: bool) -> int:
    """Plan over the dry-runnable clouds, write `sky/g<i>.yaml` per fleet group in a new run, dry-run each; exit code."""
    import pandas as pd

    from costserve.planning.offerings import current_offerings
    from costserve.cli.plan import run_plan
    from deploy.skypilot import dryrun, write_group_tasks

    console.print(f"offline dryrun: planning over {DRYRUN_CLOUDS} offerings (the account the dryrun fakes)")
    store = RunStore.create(jobs_path, 0)
    plan = run_plan(jobs_path, None, model, deadline, budget, quality, spot, None, store.dir / "plan.json", True,
                    None, DRYRUN_CLOUDS)
    store.write_json("input.json", {**store.input_info(), "jobs": sum(k.count for k in plan.workload)})
    offerings, gpus, _ = current_offerings()
    files = write_group_tasks(plan, gpus, store.dir)
    with console.status("SkyPilot dryrun (offline)..."):
        try:
            report = dryrun(files, store.dir / "sky-home", offerings[offerings["cloud"] == DRYRUN_CLOUDS], gpus)
        except (RuntimeError, OSError) as exc:
            fail(str(exc))
    rows = [{"task": Path(t["file"]).name, "accepted": "yes" if t["ok"] else "no",
             "nodes": t.get("num_nodes", ""), "SkyPilot chose": _chosen(t) if t["ok"] else t["error"]} for t in report["tasks"]]
    console.print(frame_table(pd.DataFrame(rows), f"run {store.id}: SkyPilot tasks (launch with `sky launch --secret COSTSERVE_BROKER FILE`)"))
    console.print(f"task files: {store.dir / 'sky'}", markup=False)
    store.event("dryrun", f"{sum(t['ok'] for t in report['tasks'])}/{len(files)} accepted")
    return 0 if all(t["ok"] for t in report["tasks"]) else 1


def _chosen(task: dict) -> str:  # type: ignore[type-arg]
    c = task["chosen"]
    acc = ",".join(f"{k}:{v}" for k, v in (c.get("accelerators") or {}).items())
    return f"{c['instance_type']} {c['region']}{' spot' if c['use_spot'] else ''} {acc}".strip()
