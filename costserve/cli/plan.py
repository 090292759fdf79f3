"""`costserve plan`: the cheapest fleet for a job file or workload, printed beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from catalog.availability import apply_availability, parse_gpu_limits
from catalog.load import CatalogError, load_models
from costserve.planning.offerings import current_offerings
from costserve.config import ConfigError, load_settings
from costserve.durations import parse_duration
from costserve.jobs.reader import JobFileError, valid_jobs
from costserve.cli.output import BadLinePrinter, console, err_console, fail, frame_table

if TYPE_CHECKING:
    from solver.plan import Plan


def _workload(jobs: Path | None, workload_file: Path | None, default_max_tokens: int, max_errors: int):  # type: ignore[no-untyped-def]
    from solver.workload import WorkloadFileError, load_workload_json, workload_from_jobs

    if (jobs is None) == (workload_file is None):
        fail("give a job file or --workload W.json (one of them)")
    if workload_file is not None:
        try:
            return load_workload_json(workload_file)
        except WorkloadFileError as exc:
            fail(str(exc))
    bad_lines = BadLinePrinter(err_console, max_errors)
    try:
        workload = workload_from_jobs(valid_jobs(jobs, default_max_tokens, bad_lines))  # streamed, never all in memory
    except JobFileError as exc:
        fail(str(exc))
    if bad_lines.count:
        fail(f"{jobs}: {bad_lines.count} bad lines; fix them (costserve validate {jobs} lists them all)", code=1)
    return workload


def _cpu_profile(model: str) -> dict | None:  # type: ignore[type-arg]
    """This model's CPU profile from `costserve profile --device cpu`, if one was written; says so when used."""
    from solver.device_profile import default_profile_path, load_device_profile

    path = default_profile_path("cpu", model)
    if not path.is_file():
        return None
    console.print(f"CPU offerings: throughput from the measured profile {path} (per thread x vCPUs)", markup=False)
    return load_device_profile(path)


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


def run_plan(
    jobs: Path | None, workload_file: Path | None, model: str | None, deadline: str, budget: float | None,
    quality: float, spot: bool, available: str | None, json_out: Path | None, baselines: bool,
    profiles: Path | None = None,
    clouds: str | None = None,
) -> "Plan":
    """Plan and print; writes the Plan as JSON when `json_out` is given; returns it.

    `clouds` (comma-separated, e.g. "aws,gcp") keeps only those clouds' offerings.
    """

    from solver.planner import PlanningError, plan_batch

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    try:
        deadline_s = parse_duration(deadline)
    except ValueError as exc:
        fail(f"--deadline: {exc}")
    if budget is not None and budget <= 0:
        fail("--budget must be more than $0")
    if not 0.0 <= quality <= 1.0:
        fail("--quality is a fraction of the 16-bit model's quality, between 0 and 1 (e.g. 0.99)")
    models = load_models()
    name = model or settings.default_model
    match = models[models["model"].str.lower() == name.lower()]
    if match.empty:
        fail(f"--model: unknown model {name!r} (known: {', '.join(models['model'])})")
    offerings, gpus, _ = current_offerings()
    if clouds:
        wanted = {c.strip().lower() for c in clouds.split(",") if c.strip()}
        unknown = wanted - set(offerings["cloud"])
        if unknown:
            fail(f"--clouds: unknown cloud(s) {', '.join(sorted(unknown))} (catalog has {', '.join(sorted(set(offerings['cloud'])))})")
        offerings = offerings[offerings["cloud"].isin(wanted)]
    try:
        caps = parse_gpu_limits(available, set(gpus["gpu"]))
        offerings = apply_availability(offerings, None, caps)
    except (ValueError, CatalogError) as exc:
        fail(str(exc))
    profile = None
    if profiles is not None:
        from solver.profiles import ProfileError, load_profile

        try:
            profile = load_profile(profiles, set(gpus["gpu"]))
        except ProfileError as exc:
            fail(str(exc))
    workload = _workload(jobs, workload_file, settings.default_max_tokens, settings.max_errors)
    cpu_profile = _cpu_profile(match.iloc[0]["model"])
    with console.status("planning (fleet MILP and baselines)..."):
        try:
            plan = plan_batch(workload, match.iloc[0], offerings, gpus, deadline_s, budget, quality, spot, caps, baselines, profile,
                              cpu_profile=cpu_profile)
        except PlanningError as exc:
            fail(str(exc), code=1)
    show_plan(plan, f"fleet for {workload.requests:,} jobs of {plan.model}")
    if json_out is not None:
        json_out.write_text(plan.model_dump_json(indent=2))
        console.print(f"plan written to {json_out}", markup=False)
    return plan
