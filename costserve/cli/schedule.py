"""`costserve schedule add|list|remove` and `costserve scheduler`: nightly batches from stored cron entries."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from costserve.request import BatchRequest

from costserve.schedule.store import ScheduleEntry, ScheduleError, add_schedule, load_schedules, next_fire, remove_schedule
from costserve.cli.output import console, fail, frame_table


def schedule_add(name: str, cron: str, request: BatchRequest) -> None:
    """Store a schedule of `request` after checking its name and cron expression."""
    try:
        entry = ScheduleEntry(name=name, cron=cron, request=request, created=time.strftime("%Y-%m-%d %H:%M:%S"))
    except ValueError as exc:
        fail(f"schedule name {name!r}: {str(exc).splitlines()[-1].strip()}")
    try:
        add_schedule(entry)
        when = next_fire(entry, datetime.now(timezone.utc))
    except ScheduleError as exc:
        fail(str(exc))
    console.print(f"schedule {name}: `{cron}` next fires {when:%Y-%m-%d %H:%M %Z}; run `costserve scheduler` to fire it",
                  markup=False)


def schedule_list() -> None:
    """A table of stored schedules with each one's next fire time."""
    import pandas as pd

    try:
        entries = load_schedules()
        now = datetime.now(timezone.utc)
        rows = [{"name": e.name, "cron": e.cron, "next fire": f"{next_fire(e, now):%Y-%m-%d %H:%M %Z}", "jobs": e.jobs,
                 "submit options": " ".join(e.submit_args)} for e in entries]
    except ScheduleError as exc:
        fail(str(exc))
    if not rows:
        console.print("no schedules: `costserve schedule add NAME --cron \"0 2 * * *\" JOBS --budget 40` adds one")
        return
    console.print(frame_table(pd.DataFrame(rows), "schedules"))


def schedule_remove(name: str) -> None:
    """Delete a schedule by name."""
    try:
        remove_schedule(name)
    except ScheduleError as exc:
        fail(str(exc))
    console.print(f"schedule {name} removed", markup=False)
