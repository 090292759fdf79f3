"""Plans for a BatchRequest: the cloud fleet (`plan` and `submit --backend sky`), and re-plans of a run's unfinished jobs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costserve.planning.offerings import model_row, requested_offerings
from costserve.request import BatchRequest

if TYPE_CHECKING:
    import pandas as pd

    from solver.plan import Job, Plan
    from solver.planner import Calibrate
    from solver.workload import Workload


def cpu_profile_for(model: str) -> tuple[dict[str, Any] | None, Path]:
    """This model's `costserve profile --device cpu` profile if one was written (else None), and where it is looked for."""
    from solver.device_profile import default_profile_path, load_device_profile

    path = default_profile_path("cpu", model)
    return (load_device_profile(path) if path.is_file() else None), path


def expected_workload(model: str, workload: Workload) -> tuple[Workload, float]:
    """The workload at the output length earlier runs of `model` wrote (the calibrated share of max_tokens), and that
    share; unchanged, share 1, before any run of the model finished."""
    from costserve.store.calibration import output_share_for
    from solver.workload import expected_outputs

    share = output_share_for(model)
    return (workload, 1.0) if share is None else (expected_outputs(workload, share.share), share.share)


def plan_workload(
    request: BatchRequest,
    workload_file: Path | None,
    profiles: Path | None,
    default_max_tokens: int,
    on_bad_line: Callable[[Any], None],
) -> tuple[Workload, str | None]:
    """What `plan` plans: a workload JSON, else the request's job file (streamed, each bad line to `on_bad_line`),
    bucketed on the throughput profile's own grid when `profiles` is given, so each class is one profiled bucket; and
    the job file's SHA-256 (None for a workload JSON), which the plan records for `submit --plan`."""
    from costserve.jobs.scan import scan_jobs
    from solver.workload import load_workload_json

    grid = None
    if profiles is not None:
        from catalog.load import load_gpus
        from solver.profiles import load_profile

        grid = load_profile(profiles, set(load_gpus()["gpu"])).grid()
    if workload_file is not None:
        return load_workload_json(workload_file, grid), None
    scan = scan_jobs(request, default_max_tokens, on_bad_line, grid=grid)
    return scan.workload, scan.sha256


def plan_request(
    request: BatchRequest,
    workload: Workload,
    profiles: Path | None = None,
    with_baselines: bool = True,
    on_cpu_profile: Callable[[Path], None] | None = None,
    check_clouds: bool = True,
    jobs_sha256: str | None = None,
) -> Plan:
    """The cheapest fleet for `workload` under the request's model, deadline, budget, quality, spot, clouds and GPU caps.

        `profiles` is a Mélange-format file of measured throughputs; `on_cpu_profile(path)` is told when the model's
        measured CPU profile prices CPU offerings. Without `--clouds`, the clouds SkyPilot reports enabled are planned
        (unless `check_clouds` or the check_clouds setting is off; planning/cloud_scope.py). `jobs_sha256`, the job
    file's hash, is recorded in the plan (`submit --plan` checks the file is still that one). Raises BadRequestError, CatalogError, ProfileError or PlanningError
        (one line each).
    """
    from solver.planner import plan_batch

    row = model_row(str(request.model))
    from costserve.config import load_settings

    check = check_clouds and load_settings().check_clouds
    offerings, gpus, caps, clouds = requested_offerings(request.clouds, request.available, check)
    profile = None
    if profiles is not None:
        from solver.profiles import load_profile

        profile = load_profile(profiles, set(gpus["gpu"]))
    cpu_profile, path = cpu_profile_for(row["model"])
    if cpu_profile is not None and on_cpu_profile is not None:
        on_cpu_profile(path)
    workload, share = expected_workload(str(row["model"]), workload)
    plan = plan_batch(
        workload,
        row,
        offerings,
        gpus,
        request.deadline_s,
        request.budget,
        request.quality,
        request.spot,
        caps,
        with_baselines,
        profile,
        cpu_profile=cpu_profile,
        calibrate=cloud_calibration(str(row["model"])),
        own_weights=request.model_source is not None,
        confidence=request.confidence,
    )
    return plan.model_copy(update={"output_share": share, "clouds": clouds, "jobs_sha256": jobs_sha256})


def cloud_calibration(model: str) -> Calibrate | None:
    """What finished cloud runs of `model` measured, as the planner looks it up (None before any): per hardware and
    replica, the weighted start-up (s), work factor and `calibrated from N runs, last on DATE`."""
    from costserve.store.calibration import calibrations_of

    known = calibrations_of(model)
    if not known:
        return None

    def lookup(hardware: str, replica: str) -> tuple[float, float, str, float] | None:
        found = known.get((hardware, replica))
        return None if found is None else (found.startup_s, found.work_factor, found.describe(), found.log_spread)

    return lookup


def replan_jobs(
    jobs: list[Job],
    request: BatchRequest,
    model: str,
    offerings: pd.DataFrame,
    gpus: pd.DataFrame,
    remaining_s: float,
    remaining_budget: float | None,
    measured: Calibrate | None = None,
) -> Plan:
    """A fleet for a run's unfinished `jobs` on what is left of its deadline (s) and budget ($), no baselines.

    `offerings` may have had availability taken away (groups just lost); `measured` is what the run's own groups
    measured, as a calibration (run/sky_steer.py), else finished runs' calibrations count. Raises PlanningError when
    none fits.
    """
    from solver.planner import plan_batch
    from solver.workload import workload_from_jobs

    return plan_batch(
        workload_from_jobs(jobs),
        model_row(model),
        offerings,
        gpus,
        remaining_s,
        remaining_budget,
        request.quality,
        request.spot,
        with_baselines=False,
        calibrate=measured or cloud_calibration(model),
        own_weights=request.model_source is not None,
        confidence=request.confidence,
    )
