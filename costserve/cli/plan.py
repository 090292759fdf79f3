"""`costserve plan`: the cheapest fleet for a job file or workload, printed beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from costserve.cli.output import BadLinePrinter, console, err_console, fail, frame_table
from costserve.config import load_settings
from costserve.errors import JobFileRejected
from costserve.request import BatchRequest

if TYPE_CHECKING:
    from costserve.config import Settings
    from solver.plan import Plan
    from solver.workload import Workload


def show_plan(plan: "Plan", title: str) -> None:
    """Print a plan: its fleet groups, predicted cost and makespan, and the baselines with savings."""
    import pandas as pd

    groups = pd.DataFrame([
        {"instances": g.count, "offering": f"{g.cloud}/{g.region}/{g.instance_type}" + (" (spot)" if g.spot else ""),
         "GPUs": f"{g.gpus_per_instance}x{g.gpu}" if g.gpus_per_instance else "cpu", "$/h": g.price_per_hour,
         "replica": g.replica.summary(),
         "classes": ", ".join(f"{k} {s:.0%}" for k, s in g.class_shares.items()), "done after": f"{g.finish_s / 3600:.2f}h"}
        for g in plan.groups
    ])
    console.print(frame_table(groups, title))
    console.print(f"predicted cost [bold]${plan.cost:.4g}[/], makespan [bold]{plan.makespan_s / 3600:.2f}h[/] "
                  f"(deadline {plan.deadline_s / 3600:g}h), quality {plan.quality:.4f}")
    if plan.baselines:
        rows = pd.DataFrame([{"baseline": b.name, "cost $": b.cost, "makespan h": (b.makespan_s or float("nan")) / 3600,
                              "costserve saves": f"{b.savings:.2f}x" if b.savings else b.note} for b in plan.baselines])
        console.print(frame_table(rows, "baselines (same deadline, budget, availability)"))


def run_plan(request: BatchRequest, workload_file: Path | None, json_out: Path | None, baselines: bool,
             profiles: Path | None) -> "Plan":
    """Plan the request (its job file, or a workload JSON) and print it; writes the Plan as JSON when asked."""
    from costserve.planning.batch import plan_request

    def measured(path: Path) -> None:
        console.print(f"CPU offerings: throughput from the measured profile {path} (per thread x vCPUs)", markup=False)

    workload = _workload(request, workload_file, load_settings())
    with console.status("planning (fleet MILP and baselines)..."):
        plan = plan_request(request, workload, profiles, baselines, on_cpu_profile=measured)
    show_plan(plan, f"fleet for {workload.requests:,} jobs of {plan.model}")
    if json_out is not None:
        json_out.write_text(plan.model_dump_json(indent=2))
        console.print(f"plan written to {json_out}", markup=False)
    return plan


def _workload(request: BatchRequest, workload_file: Path | None, settings: "Settings") -> "Workload":
    """The workload of a workload JSON, else of the request's job file (streamed, never all in memory)."""
    from costserve.run.prepare import scan_jobs
    from solver.workload import load_workload_json

    if workload_file is not None:
        return load_workload_json(workload_file)
    bad_lines = BadLinePrinter(err_console, settings.max_errors)
    try:
        return scan_jobs(request, settings.default_max_tokens, bad_lines).workload
    except JobFileRejected as exc:
        if bad_lines.count:
            fail(f"{request.jobs}: {bad_lines.count} bad lines; fix them (costserve validate {request.jobs} lists them all)",
                 code=1)
        raise exc
