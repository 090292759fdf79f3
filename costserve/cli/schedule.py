"""`costserve schedule add|list|remove`: nightly batches from stored cron entries (`costserve scheduler` fires them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from costserve.cli.help import DEFAULT_MODEL, MODEL_HELP, SCHEDULE, HelpGroup, command
from costserve.cli.options import AvailableOption, CloudsOption, build_request, cli_settings, cloud_list
from costserve.cli.output import console, emit_json, fail, frame_table, one_line_errors
from costserve.schedule.beat import scheduler_pid
from costserve.schedule.store import (
    ScheduleEntry,
    ScheduleError,
    add_schedule,
    load_schedules,
    next_fire,
    remove_schedule,
)
from costserve.units import iso_time, json_keys

if TYPE_CHECKING:
    from costserve.config import Settings
    from costserve.request import BatchRequest

schedule_app = typer.Typer(
    help="Nightly (cron) batches: stored schedules that `costserve scheduler` fires.",
    no_args_is_help=True,
    cls=HelpGroup,
    epilog='Example: costserve schedule add nightly jobs.jsonl --cron "0 2 * * *" --budget 40',
)


@command(schedule_app, SCHEDULE, 'costserve schedule add nightly jobs.jsonl --cron "0 2 * * *" --budget 40', name="add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="a name for the schedule")],
    jobs: Annotated[Path, typer.Argument(help="job file submitted at each fire (read afresh each time)")],
    cron: Annotated[str, typer.Option(help='5-field cron expression in the local time zone, e.g. "0 2 * * *"')],
    budget: Annotated[Optional[float], typer.Option(help="most to spend per run, $")] = None,
    deadline: Annotated[
        str, typer.Option(help="each run finishes within this duration: 8h, 90m (a unit is required)")
    ] = "8h",
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default=DEFAULT_MODEL)] = None,
    quality: Annotated[float, typer.Option(help="least predicted quality vs the 16-bit model")] = 0.99,
    backend: Annotated[str, typer.Option(help="local or sky")] = "local",
    spot: Annotated[bool, typer.Option("--spot", help="allow spot instances")] = False,
    clouds: CloudsOption = None,
    available: AvailableOption = None,
) -> None:
    """Store a schedule that submits JOBS at each cron time."""
    if backend not in ("local", "sky"):
        fail(f"--backend: {backend!r} is not a backend (local or sky)")
    if not jobs.is_file():
        fail(f"{jobs}: no such job file")
    with one_line_errors():
        settings = cli_settings()
        request = build_request(
            settings,
            jobs=jobs,
            model=model,
            deadline=deadline,
            budget=budget,
            quality=quality,
            spot=spot,
            clouds=cloud_list(clouds),
            available=available,
            backend=backend,
        )
    try:
        entry = ScheduleEntry(name=name, cron=cron, request=request, created=time.strftime("%Y-%m-%d %H:%M:%S"))
    except ValueError as exc:
        fail(f"schedule name {name!r}: {str(exc).splitlines()[-1].strip()}")
    try:
        when = next_fire(entry, datetime.now(UTC))  # a bad cron is refused before the (slower) checks
        if any(e.name == name for e in load_schedules()):
            raise ScheduleError(f"schedule {name!r} exists; `costserve schedule remove {name}` first")
        would = _checked(name, request, settings)
        add_schedule(entry)
    except ScheduleError as exc:
        fail(str(exc))
    console.print(
        f"schedule {name}: `{cron}` next fires {when:%Y-%m-%d %H:%M %Z}; each fire would {would}", markup=False
    )
    if scheduler_pid() is None:
        console.print("no scheduler is running: `costserve scheduler` fires the schedules", markup=False)


def _checked(name: str, request: BatchRequest, settings: Settings) -> str:
    """The checks and plan a submit of `request` makes now (a budget the plan exceeds, a gated model without a token,
    lines naming another model fail here, not at 01:30); what each fire would do. One line and nothing stored else."""
    from costserve.cli.submit_view import check_submit
    from costserve.errors import CostserveError

    try:
        return check_submit(request, settings)
    except CostserveError as exc:
        fail(f"schedule {name}: {exc}; nothing was stored")


@command(schedule_app, SCHEDULE, "costserve schedule list", name="list")
def schedule_list(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of a table")] = False,
) -> None:
    """Stored schedules, when each fires next, and whether a scheduler is running to fire them."""
    import pandas as pd

    try:
        entries = load_schedules()
        now = datetime.now(UTC)
        rows = [
            {
                "name": e.name,
                "cron": e.cron,
                "next fire": next_fire(e, now),
                "jobs": e.jobs,
                "request": e.request.describe(),
            }
            for e in entries
        ]
    except ScheduleError as exc:
        fail(str(exc))
    pid = scheduler_pid()
    if json_out:
        iso = [json_keys(r | {"next fire": iso_time(r["next fire"].timestamp())}) for r in rows]  # type: ignore[attr-defined]
        emit_json({"scheduler_pid": pid, "schedules": iso})
        return
    for r in rows:
        r["next fire"] = f"{r['next fire']:%Y-%m-%d %H:%M %Z}"
    if not rows:
        console.print('no schedules: `costserve schedule add NAME --cron "0 2 * * *" JOBS --budget 40` adds one')
    else:
        console.print(frame_table(pd.DataFrame(rows), "schedules"))
    running = f"running (pid {pid})" if pid is not None else "not running: `costserve scheduler` fires the schedules"
    console.print(f"scheduler: {running}", markup=False)


@command(schedule_app, SCHEDULE, "costserve schedule remove nightly", name="remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="schedule name")]) -> None:
    """Delete a stored schedule."""
    try:
        remove_schedule(name)
    except ScheduleError as exc:
        fail(str(exc))
    console.print(f"schedule {name} removed", markup=False)
