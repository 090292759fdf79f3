"""Stored schedules: `$COSTSERVE_HOME/schedules.json`, one entry per named nightly (or any cron) batch.

Each entry is a cron expression (5 fields, the machine's time zone) and the BatchRequest it
submits (run/spawn.py: a driver process of its own, handed the typed request). Celery beat
runs them (`costserve scheduler`); the cron expression is parsed by Celery's own `crontab`, so what `schedule list` shows as the next
fire time is what beat will do.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, field_validator

from catalog.home import costserve_home
from costserve.errors import RequestError
from costserve.request import BatchRequest

if TYPE_CHECKING:
    from celery.schedules import crontab

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ScheduleError(RequestError):
    """A bad schedule name, cron expression or store file; the message is one line."""


class ScheduleEntry(BaseModel):
    """One stored schedule: when it fires and the BatchRequest it submits (its job file is read afresh at each fire)."""

    name: str
    cron: str
    request: BatchRequest
    created: str = ""

    @property
    def jobs(self) -> str:
        """Absolute path of the job file."""
        return str(self.request.jobs)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("use letters, digits, '_', '.', '-' (at most 64)")
        return value


def schedules_path() -> Path:
    """`$COSTSERVE_HOME/schedules.json`."""
    return costserve_home() / "schedules.json"


def local_timezone_name() -> str:
    """The time zone cron times are in: `$TZ`, else /etc/timezone, else UTC."""
    for candidate in (os.environ.get("TZ", "").lstrip(":"), _read("/etc/timezone")):
        if candidate:
            try:
                ZoneInfo(candidate)
                return candidate
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return "UTC"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def parse_cron(expr: str, nowfun=None) -> crontab:
    """Celery's crontab for a 5-field cron expression (minute hour day-of-month month day-of-week)."""
    from celery.schedules import ParseException, crontab

    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"--cron {expr!r}: needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
            nowfun=nowfun,
        )
    except (ParseException, ValueError) as exc:
        raise ScheduleError(f"--cron {expr!r}: {exc}") from None


def next_fire(entry: ScheduleEntry, now: datetime, tz: tzinfo | None = None) -> datetime:
    """The first time after `now` at which beat fires `entry`, in `tz` (default the local time zone)."""
    zone = tz or ZoneInfo(local_timezone_name())
    local_now = now.astimezone(zone)
    schedule = parse_cron(entry.cron, nowfun=lambda: local_now)
    return local_now + schedule.remaining_estimate(local_now)


def load_schedules() -> list[ScheduleEntry]:
    """Every stored schedule, in the order added."""
    path = schedules_path()
    if not path.is_file():
        return []
    try:
        return [ScheduleEntry.model_validate(e) for e in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"{path}: not a schedules file ({str(exc).splitlines()[0]})") from None


def save_schedules(entries: list[ScheduleEntry]) -> None:
    """Write the store atomically (a crash leaves the old file, never half a file)."""
    path = schedules_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
    tmp.replace(path)


def add_schedule(entry: ScheduleEntry) -> None:
    """Store a new schedule; a name already used is an error (remove it first)."""
    parse_cron(entry.cron)
    entries = load_schedules()
    if any(e.name == entry.name for e in entries):
        raise ScheduleError(f"schedule {entry.name!r} exists; `costserve schedule remove {entry.name}` first")
    save_schedules(entries + [entry])


def remove_schedule(name: str) -> None:
    """Delete a stored schedule by name."""
    entries = load_schedules()
    if not any(e.name == name for e in entries):
        raise ScheduleError(f"no schedule named {name!r} (see `costserve schedule list`)")
    save_schedules([e for e in entries if e.name != name])
