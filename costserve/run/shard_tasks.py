"""The one execution protocol of every backend: shards out to the broker, their reports back into the run store.

A shard is sent inline in one Celery task (`workers.tasks.run_shard`), its jobs read from its
file when it is sent, less those that already have a result (a resent shard runs only what is
missing). Shards go out a window at a time (run/shard_window.py), so the broker holds a
window's jobs and results, never the batch's. The worker publishes its ShardReport
(workers/shard_report.py) as the task's state while it runs and returns it when done; each poll
reads the state of every shard of the window, writes what is new through the run store
(store/result_records.py, the only writer of results.sqlite) and forgets a finished shard's
result in the broker. Why results travel through the broker rather than a shared directory or
object storage: a SkyPilot node shares nothing with the driver but the broker, and the window
already bounds what the broker holds; one path for both backends means one set of faults.

One retry policy: a worker retries a failed shard itself (workers/tasks.py, MAX_ATTEMPTS
attempts counted as the driver's sends plus Celery's retries, the last running its jobs one at
a time); a shard that failed its last attempt stops the run, resumable.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from costserve.store.result_records import ingest_report, save_final_failure
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from costserve.store.shard_files import read_shard

if TYPE_CHECKING:
    from costserve.run.shard_window import ShardWindow

RUN_TASK = "workers.tasks.run_shard"
SETTLE_S = 15.0  # s the driver waits, after the last result, for the last shards' final reports
SETTLE_POLL_S = 0.2


@dataclass
class ShardState:
    """What a poll found of one sent shard: `finished` (its report is written), or `error` (its last attempt failed)."""

    finished: bool = False
    error: str | None = None


class ShardTasks:
    """Sends a run's shards to broker queues and writes their reports into the run store."""

    def __init__(self, store: RunStore, results: sqlite3.Connection, app: Any) -> None:
        self.store, self.results, self.app = store, results, app
        self.sends: Counter[str] = Counter()  # shard → times this driver sent it (the attempt count starts there)
        self.problem: str | None = None  # the latest failed attempt, for the live view

    def send(self, shard: str, queue: str) -> str:
        """Send `shard`'s jobs without a result to broker queue `queue`; its task id.

        Only the id is kept: Celery's AsyncResult subscribes to the task's result (Redis pub/sub, for `.get()`)
        until it is dropped, and this driver polls states instead (a subscription left open fails at exit once the
        broker is gone)."""
        done = {cid for (cid,) in self.results.execute("SELECT custom_id FROM results WHERE shard = ?", (shard,))}
        jobs = [job.to_json() for job in read_shard(self.store.dir, shard) if job.custom_id not in done]
        self.sends[shard] += 1
        sent = self.app.send_task(
            RUN_TASK, args=(self.store.id, shard, jobs), kwargs={"sent": self.sends[shard]}, queue=queue
        )
        return str(sent.id)

    def check(self, shard: str, task: str, group: str) -> ShardState:
        """Write what the shard's task (its id) reported since the last check (`group`: the name its shard runs are kept
        under); its state."""
        from workers.shard_report import PROGRESS
        from workers.tasks import MAX_ATTEMPTS

        meta = self.app.backend.get_task_meta(task)
        status, result = meta.get("status"), meta.get("result")
        if status in ("STARTED", PROGRESS, "SUCCESS") and isinstance(result, dict) and "outputs" in result:
            for failure in ingest_report(self.results, result, group):  # type: ignore[arg-type]  # a backend's task meta is a plain dict; ingest_report reads it as a ShardReport
                self.problem = f"{shard} attempt {failure['attempt']} failed on {failure['worker']}: {failure['error']}"
                self.store.event(Event.SHARD_FAILED, self.problem + ("" if failure["final"] else "; retrying"))
        if status == "SUCCESS":  # its jobs without a result when sent have one now: the shard is done
            self.store.shard_done(shard)
            self.app.backend.forget(task)
            return ShardState(finished=True)
        if status == "FAILURE":
            error = _error_line(result)
            attempts = self.sends[shard] - 1 + MAX_ATTEMPTS
            save_final_failure(self.results, shard, attempts, error)
            self.problem = f"{shard} attempt {attempts} failed: {error}"
            self.store.event(Event.SHARD_FAILED, self.problem)
            self.app.backend.forget(task)
            return ShardState(
                finished=True,
                error=f"{shard} failed on all of its {MAX_ATTEMPTS} attempts on queue {group} (last: {error})",
            )
        return ShardState()

    def poll(self, window: ShardWindow[str], group: str) -> str | None:
        """Check every sent shard of `window` (run/shard_window.py) of fleet group `group`: finished ones leave it and
        waiting ones take their place. Returns the error of a shard that failed its last attempt, if one did."""
        error = None
        for sid, task in list(window.sent.items()):
            state = self.check(sid, task, group)
            if state.finished:
                window.finished(sid)
            error = error or state.error
        window.fill()
        return error

    def settle(self, windows: dict[str, ShardWindow[str]], timeout_s: float = SETTLE_S) -> None:
        """Once every job has a result: poll the windows (group → window) until every sent shard's final report is
        read, for at most `timeout_s` (s). A worker returns its report a moment after the shard's last result, and
        that report carries the shard run and the replica's latest occupancy windows."""
        from costserve.run.broker_watch import broker_errors

        deadline = time.monotonic() + timeout_s
        try:
            while any(w.sent for w in windows.values()) and time.monotonic() < deadline:
                for group, window in windows.items():
                    self.poll(window, group)
                time.sleep(SETTLE_POLL_S)
        except broker_errors():
            pass  # the broker is gone: every job has a result, only the last shards' final reports are missing

    def reconnect(self, url: str, windows: Iterable[ShardWindow[str]]) -> None:
        """The broker at `url` answers again (an outage ended, or it was restarted, empty): a new Celery app on it
        (Celery's result store gives up on a connection it lost for good), and every sent shard of `windows` sent
        again (what the broker held may be lost; a copy runs only the jobs without a result)."""
        from workers.celery_app import make_app

        self.app = make_app(url)
        for window in windows:
            for sid in list(window.sent):
                window.resend(sid)


def _error_line(result: Any) -> str:
    """One line of a failed task's error, as the result backend keeps it (an exception, or its serialized form)."""
    if isinstance(result, dict):
        message = result.get("exc_message", "")
        text = f"{result.get('exc_type', 'Error')}: {' '.join(map(str, message)) if isinstance(message, list) else message}"
    else:
        text = f"{type(result).__name__}: {result}" if result is not None else "unknown"
    return (text.splitlines() or ["unknown"])[0][:300]
