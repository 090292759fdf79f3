"""`costserve plan`: the cheapest fleet for a job file or workload, printed beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from costserve.cli.output import BadLinePrinter, console, emit_json, err_console, fail
from costserve.cli.plan_view import show_plan
from costserve.config import load_settings
from costserve.errors import JobFileRejected
from costserve.request import BatchRequest

if TYPE_CHECKING:
    from costserve.config import Settings
    from solver.plan import Plan
    from solver.workload import Workload


def run_plan(request: BatchRequest, workload_file: Path | None, out: Path | None, baselines: bool,
             profiles: Path | None, json_out: bool = False) -> "Plan":
    """Plan the request (its job file, or a workload JSON) and print it; writes the Plan as JSON to `out` when asked,
    and prints it as JSON on stdout with `json_out`."""
    from costserve.planning.batch import plan_request

    def measured(path: Path) -> None:
        console.print(f"CPU offerings: throughput from the measured profile {path} (per thread x vCPUs)", markup=False)

    workload = _workload(request, workload_file, load_settings())
    with console.status("planning (fleet MILP and baselines)..."):
        plan = plan_request(request, workload, profiles, baselines, on_cpu_profile=measured)
    show_plan(plan, f"fleet for {workload.requests:,} jobs of {plan.model}")
    if out is not None:
        out.write_text(plan.model_dump_json(indent=2))
        console.print(f"plan written to {out}", markup=False)
    if json_out:
        emit_json(plan.model_dump(mode="json"))
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
