"""`costserve scheduler`: Celery beat firing the stored schedules, each submit in a driver process of its own.

Beat and one worker run in this process (`worker -B`); the broker is an embedded Redis in
`$COSTSERVE_HOME/scheduler/` unless `--broker` or the `broker` setting names one. The beat
scheduler below reads `schedules.json` at start and again whenever the file changes, so
`schedule add/remove` take effect without a restart. Missed fire times (the scheduler was
down) are not replayed: the next one is kept, as cron does.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import Scheduler

from catalog.home import costserve_home
from costserve.schedule.store import ScheduleEntry, load_schedules, local_timezone_name, parse_cron

SCHEDULER_QUEUE = "costserve-schedules"
FIRE_TASK = "costserve.scheduler.fire_schedule"


def scheduler_dir() -> Path:
    """`$COSTSERVE_HOME/scheduler`: the embedded broker, and a folder of logs and results per schedule."""
    path = costserve_home() / "scheduler"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


LOCK_FILE = "scheduler.lock"  # held (flock) by the running scheduler for its whole life; holds its pid


def scheduler_pid() -> int | None:
    """The pid of the scheduler running for this COSTSERVE_HOME, None when none is (nobody holds its lock)."""
    from costserve.store.process_lock import holder

    return holder(costserve_home() / "scheduler" / LOCK_FILE)


def hold_scheduler_lock() -> int:
    """Become this COSTSERVE_HOME's only scheduler (two would fire every schedule twice); the lock's fd, kept open for
    the life of the process. ScheduleError naming the running one otherwise."""
    from costserve.schedule.store import ScheduleError
    from costserve.store.process_lock import hold

    fd = hold(scheduler_dir() / LOCK_FILE)
    if fd is None:
        raise ScheduleError(f"a scheduler is already running (pid {scheduler_pid()}); one fires every schedule")
    return fd


def loaded_lines(entries: list[ScheduleEntry]) -> list[str]:
    """One line per schedule the scheduler fires: name, cron, next fire time, job file."""
    from datetime import UTC, datetime

    from costserve.schedule.store import next_fire

    now = datetime.now(UTC)
    if not entries:
        return ["no schedules yet: `costserve schedule add` adds one (this scheduler picks it up)"]
    return [f"{e.name}: `{e.cron}`, next {next_fire(e, now):%Y-%m-%d %H:%M %Z}, {e.jobs}" for e in entries]


def beat_entries(entries: list[ScheduleEntry]) -> dict[str, dict[str, Any]]:
    """Celery beat_schedule entries for stored schedules: the fire task on the scheduler's queue."""
    return {
        e.name: {
            "task": FIRE_TASK,
            "schedule": parse_cron(e.cron),
            "args": (e.name,),
            "options": {"queue": SCHEDULER_QUEUE},
        }
        for e in entries
    }


class StoredScheduler(Scheduler):
    """An in-memory beat scheduler whose entries are `schedules.json`, re-read when the file changes."""

    _mtime: float | None = None

    def setup_schedule(self) -> None:
        self._reload()

    def _reload(self) -> None:
        from costserve.schedule.store import schedules_path

        path = schedules_path()
        self._mtime = path.stat().st_mtime if path.is_file() else None
        self.merge_inplace(beat_entries(load_schedules()))

    def tick(self, *args: Any, **kwargs: Any) -> float:
        from costserve.schedule.store import schedules_path

        path = schedules_path()
        if (path.stat().st_mtime if path.is_file() else None) != self._mtime:
            self._reload()
        return min(super().tick(*args, **kwargs), 30.0)  # look at the file at least every 30 s


def make_scheduler_app(broker: str) -> Celery:
    """The scheduler's Celery app: beat schedule from the store, times in the local time zone."""
    app = Celery("costserve-scheduler", broker=broker)
    app.conf.update(
        timezone=local_timezone_name(),
        enable_utc=False,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        broker_connection_retry_on_startup=True,
        beat_scheduler="costserve.schedule.beat:StoredScheduler",
    )
    app.task(name=FIRE_TASK)(fire_schedule)
    return app


def fire_schedule(name: str) -> int:
    """Run one schedule's submit now (the beat task) in a driver process of its own; returns its exit code. Its output
    goes to the schedule's log, its results beside it (`STAMP.results.jsonl`)."""
    from costserve.run.spawn import SubmitOrder, spawn_driver

    entry = next((e for e in load_schedules() if e.name == name), None)
    if entry is None:
        return 0  # removed since beat queued it
    folder = scheduler_dir() / name
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    request = entry.request.model_copy(update={"out": folder / f"{stamp}.results.jsonl", "errors_out": None})
    with (folder / "scheduler.log").open("a") as log:
        log.write(f"--- {stamp} firing {name}\n")
        log.flush()
        return spawn_driver(
            SubmitOrder(request=request), folder, stdout=log, stderr=subprocess.STDOUT, caller_broker=False
        ).wait()


def run_scheduler(broker: str | None) -> None:
    """Run beat and one worker here until interrupted, after printing the schedules it loaded."""
    from costserve.notices import say

    hold_scheduler_lock()
    entries = load_schedules()
    say(f"costserve scheduler (pid {os.getpid()}): {len(entries)} schedule(s) loaded")
    for line in loaded_lines(entries):
        say(f"  {line}")
    redis = None
    if broker is None:
        from deploy.local import EmbeddedRedis

        redis = EmbeddedRedis(scheduler_dir())
        broker = redis.url
    app = make_scheduler_app(broker)
    try:
        app.Worker(beat=True, queues=[SCHEDULER_QUEUE], concurrency=1, pool="solo", loglevel="INFO").start()
    finally:
        if redis is not None:
            redis.stop()
