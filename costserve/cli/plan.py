"""`costserve plan`: the cheapest fleet for a job file or workload, printed beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from costserve.cli.output import BadLinePrinter, console, emit_json, err_console, fail
from costserve.cli.plan_view import show_plan
from costserve.config import load_settings
from costserve.durations import format_money
from costserve.errors import JobFileRejected
from costserve.request import BatchRequest

if TYPE_CHECKING:
    from costserve.config import Settings
    from solver.plan import Plan
    from solver.workload import Workload


def run_plan(
    request: BatchRequest,
    workload_file: Path | None,
    out: Path | None,
    baselines: bool,
    profiles: Path | None,
    json_out: bool = False,
) -> Plan:
    """Plan the request (its job file, or a workload JSON) and print it; writes the Plan as JSON to `out` when asked,
    and prints it as JSON on stdout with `json_out`."""
    from costserve.planning.batch import plan_request

    def measured(path: Path) -> None:
        console.print(f"CPU offerings: throughput from the measured profile {path} (per thread x vCPUs)", markup=False)

    settings = load_settings()
    workload, sha256 = _workload(request, workload_file, settings, profiles)
    if request.backend == "local":
        from costserve.planning.local import plan_local

        with console.status("planning this machine's run..."):
            plan = plan_local(request, str(request.model), workload, settings.local_cpu_price_per_hour).plan
        show_plan(plan, f"this machine's run of {workload.requests:,} jobs of {plan.model}")
        return _written(plan, request, out, json_out)
    if profiles is not None:
        console.print(f"jobs bucketed on the profile's own grid: {len(workload.classes)} classes", markup=False)
    with console.status("planning (fleet MILP and baselines)..."):
        plan = plan_request(request, workload, profiles, baselines, on_cpu_profile=measured, jobs_sha256=sha256)
    show_plan(plan, f"fleet for {workload.requests:,} jobs of {plan.model}")
    return _written(plan, request, out, json_out)


def _written(plan: Plan, request: BatchRequest, out: Path | None, json_out: bool) -> Plan:
    """The plan written to `out` (JSON) and printed as JSON on stdout, as asked."""
    if out is not None:
        out.write_text(plan.model_dump_json(indent=2))
        console.print(
            f"plan written to {out}; `costserve submit {request.jobs or 'JOBS'} --plan {out}` runs it", markup=False
        )
    if json_out:
        emit_json(plan.model_dump(mode="json"))
    return plan


def _workload(
    request: BatchRequest, workload_file: Path | None, settings: Settings, profiles: Path | None
) -> tuple[Workload, str | None]:
    """planning.batch.plan_workload, with bad lines printed and a job file with bad lines refused in one line."""
    from costserve.planning.batch import plan_workload

    bad_lines = BadLinePrinter(err_console, settings.max_errors)
    try:
        return plan_workload(request, workload_file, profiles, settings.default_max_tokens, bad_lines)
    except JobFileRejected as exc:
        if bad_lines.count:
            fail(
                f"{request.jobs}: {bad_lines.count} bad lines; fix them (costserve validate {request.jobs} lists them all)",
                code=1,
            )
        raise exc


def run_melange(path: Path, json_out: bool) -> None:
    """Plan a Mélange input file as a steady hour; print the GPU mix (Mélange's result form with `json_out`)."""
    import pandas as pd

    from costserve.cli.output import frame_table
    from solver.fleet import Infeasible
    from solver.melange import load_melange, melange_answer, plan_melange

    spec = load_melange(path)
    try:
        solution = plan_melange(spec)
    except Infeasible as exc:
        fail(f"{path}: no GPU mix serves this load: {exc}", code=1)
    if json_out:
        emit_json(melange_answer(solution, spec))
        return
    names = spec.bucket_names()
    rows = [
        {
            "GPU": g.candidate.gpu,
            "count": g.count,
            "$/h each": g.candidate.price_per_hour,
            "buckets served": ", ".join(f"{name} {share:.0%}" for name, share in zip(names, g.shares) if share > 1e-6),
        }
        for g in solution.groups
    ]
    console.print(
        frame_table(
            pd.DataFrame(rows), f"Mélange input {path.name}: {spec.total_request_rate:g} requests/s for one hour"
        )
    )
    console.print(
        f"cost {format_money(solution.cost)}/h (Mélange's result form: `costserve plan --melange {path} --json`)",
        markup=False,
        highlight=False,
    )
