"""`submit --plan plan.json`: run exactly the plan `costserve plan --out` wrote, once it is checked to still hold.

A plan is a promise made from three things: the job file (its SHA-256 is in the plan), the model, and the catalog's
prices for the offerings it chose. When any of them changed since, the plan is refused in one line that says what
changed, so that what was reviewed is what runs. The plan's deadline, budget, quality target and spot choice become
the run's.
"""

from __future__ import annotations

from pathlib import Path

from costserve.errors import BadRequestError
from costserve.request import BatchRequest
from solver.plan import Plan

PRICE_TOLERANCE = 1e-6  # $/h: a price that moved by less is the same price (CSV round trips)


def read_plan(path: Path) -> Plan:
    """The Plan in `path`; BadRequestError (one line) when it is not a file `costserve plan --out` wrote."""
    from pydantic import ValidationError

    try:
        return Plan.model_validate_json(path.read_text())
    except OSError as exc:
        raise BadRequestError(f"--plan {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise BadRequestError(
            f"--plan {path}: not a plan from `costserve plan --out` ({where}: {first['msg']})"
        ) from None


def plan_changes(plan: Plan, request: BatchRequest, jobs_sha256: str) -> list[str]:
    """What changed since `plan` was made, one phrase each: the job file, the model, an offering's price."""
    from costserve.jobs.file_model import catalog_name
    from costserve.planning.offerings import current_offerings

    changed = []
    if plan.jobs_sha256 is None:
        changed.append("it was planned from a --workload, not from a job file")
    elif plan.jobs_sha256 != jobs_sha256:
        changed.append(
            f"{request.job_file.name} changed since (SHA-256 {plan.jobs_sha256[:12]}… planned, {jobs_sha256[:12]}… now)"
        )
    model = catalog_name(str(request.model)) or str(request.model)
    if model != plan.model:
        changed.append(f"the model ({plan.model} planned, {model} now)")
    offerings, _, _ = current_offerings()
    for i, g in enumerate(plan.groups):
        label = f"g{i} {g.cloud}/{g.region}/{g.instance_type}{' spot' if g.spot else ''}"
        row = offerings[
            (offerings["cloud"] == g.cloud)
            & (offerings["region"] == g.region)
            & (offerings["instance_type"] == g.instance_type)
        ]
        if row.empty:
            changed.append(f"{label} is no longer in the catalog")
            continue
        now = float(row.iloc[0]["spot_price_per_hour" if g.spot else "price_per_hour"])
        if not abs(now - g.price_per_hour) <= PRICE_TOLERANCE:  # NaN (spot withdrawn) counts as changed
            changed.append(f"{label} costs ${now:.4g}/h now, ${g.price_per_hour:.4g}/h planned")
    return changed


def given_plan(request: BatchRequest, jobs_sha256: str) -> tuple[Plan, BatchRequest]:
    """The plan `request.plan_file` names, checked (BadRequestError listing what changed), and the request with the
    plan's deadline, budget, quality target and spot choice."""
    assert request.plan_file is not None
    plan = read_plan(request.plan_file)
    changed = plan_changes(plan, request, jobs_sha256)
    if changed:
        raise BadRequestError(
            f"--plan {request.plan_file}: {'; '.join(changed)}; plan again (`costserve plan {request.job_file} --out "
            f"{request.plan_file.name}`) and review it"
        )
    update = {
        "deadline_s": plan.deadline_s,
        "budget": plan.budget,
        "quality": plan.quality_target,
        "spot": plan.spot_allowed,
    }
    return plan, request.model_copy(update=update)
