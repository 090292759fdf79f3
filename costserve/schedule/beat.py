"""`costserve scheduler`: Celery beat firing the stored schedules, each as a `costserve submit --yes` subprocess.

Beat and one worker run in this process (`worker -B`); the broker is an embedded Redis in
`$COSTSERVE_HOME/scheduler/` unless `--broker` or the `broker` setting names one. The beat
scheduler below reads `schedules.json` at start and again whenever the file changes, so
`schedule add/remove` take effect without a restart. Missed fire times (the scheduler was
down) are not replayed: the next one is kept, as cron does.
"""

from __future__ import annotations

import os
import subprocess
import sys
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


def submit_command(entry: ScheduleEntry, out: Path) -> list[str]:
    """The `costserve submit` command line a fire runs."""
    return [sys.executable, "-m", "costserve.cli", "submit", entry.jobs, "--yes", "--out", str(out), *entry.submit_args]


def fire_schedule(name: str) -> int:
    """Run one schedule's submit now (the beat task); returns its exit code. Output goes to the schedule's log."""
    entry = next((e for e in load_schedules() if e.name == name), None)
    if entry is None:
        return 0  # removed since beat queued it
    folder = scheduler_dir() / name
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with (folder / "scheduler.log").open("ab") as log:
        log.write(f"--- {stamp} firing {name}\n".encode())
        log.flush()
        env = {
            k: v for k, v in os.environ.items() if k != "COSTSERVE_BROKER"
        }  # the scheduler's broker is not the run's
        return subprocess.call(
            submit_command(entry, folder / f"{stamp}.results.jsonl"), stdout=log, stderr=subprocess.STDOUT, env=env
        )


def run_scheduler(broker: str | None) -> None:
    """Run beat and one worker here until interrupted."""
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
