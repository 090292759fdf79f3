"""A run's event log and the state it adds up to: the events half of `RunStore` (run.sqlite's events table).

Events are appended, never changed; what a run is doing now (`state`), whether it ended and
why it stopped are read from them, since its last resume.
"""

from __future__ import annotations

import sqlite3
import time

from costserve.errors import StopReason, StoreFull
from costserve.notices import warn
from costserve.store.run_state import Event, RunState


class RunEvents:
    """The events of one run (`db`: its run.sqlite connection, `id`: the run id)."""

    db: sqlite3.Connection
    id: str

    def event(self, kind: Event, detail: str = "") -> None:
        """Append an event (submitted, shard done, finished, ...). On a full disk the event is said, not recorded:
        events are the run's log, and the run must still be able to stop and say why."""
        try:
            self.db.execute("INSERT INTO events VALUES (?, ?, ?)", (time.time(), str(kind), detail))
            self.db.commit()
        except StoreFull:
            warn(f"run {self.id}: not recorded (disk full): {kind} {detail}")

    def _latest_since_resume(self, *kinds: Event) -> str | None:
        """The newest event of `kinds` since the last resume (a stopped or cancelled run can be resumed), or None."""
        row = self.db.execute(
            f"SELECT kind FROM events WHERE kind IN ({', '.join('?' * len(kinds))}) "
            "AND rowid > COALESCE((SELECT MAX(rowid) FROM events WHERE kind = 'resumed'), 0) ORDER BY rowid DESC LIMIT 1",
            [str(k) for k in kinds],
        ).fetchone()
        return None if row is None else str(row[0])

    def driver_pid(self) -> int | None:
        """The pid of the process driving the run now, None when none does (RunStore: the holder of driver.lock)."""
        raise NotImplementedError

    def cancel_requested(self) -> bool:
        """Whether `costserve cancel` asked this run to stop."""
        return self._latest_since_resume(Event.CANCEL_REQUESTED) is not None

    def ended(self) -> RunState | None:
        """FINISHED or STOPPED once the run's latest stretch (since its last resume) has ended; None while it has not."""
        latest = self._latest_since_resume(Event.FINISHED, Event.STOPPED)
        return None if latest is None else RunState(latest)

    def state(self) -> RunState:
        """Where the run is: a dry run, running, cancelling, interrupted (its driver is gone without recording an end),
        stopped or finished (its latest stretch since a resume)."""
        if self.dry_run:
            return RunState.DRY_RUN
        ended = self.ended()
        if ended is not None:
            return ended
        if self.driver_pid() is None:  # no process holds the driver lock: killed, or its machine restarted
            return RunState.INTERRUPTED
        return RunState.CANCELLING if self.cancel_requested() else RunState.RUNNING

    def record_stop(self, reason: StopReason, line: str) -> None:
        """The run stopped before every job had a result: its typed reason, then the one line that says how."""
        self.event(Event.STOP_REASON, str(reason))
        self.event(Event.STOPPED, line)

    def stop_reason(self) -> StopReason | None:
        """Why the run's latest stretch stopped, or None (it finished, or runs)."""
        if self.ended() is not RunState.STOPPED:
            return None
        reasons = self.events(Event.STOP_REASON)
        return StopReason(reasons[-1]) if reasons else StopReason.ERROR

    @property
    def dry_run(self) -> bool:
        """Whether this run was a `submit --dry-run` (planned and checked, nothing launched)."""
        return bool(self.events(Event.DRY_RUN))

    def created(self) -> float:
        """Unix time of the run's first event."""
        return float(self.db.execute("SELECT ts FROM events ORDER BY rowid LIMIT 1").fetchone()[0])

    def events(self, kind: Event) -> list[str]:
        """Details of every event of `kind`, oldest first (e.g. the pids recorded as "worker started")."""
        return [
            str(d) for (d,) in self.db.execute("SELECT detail FROM events WHERE kind = ? ORDER BY rowid", (str(kind),))
        ]

    def first_event_time(self, kind: Event) -> float | None:
        """Unix time of the first event of `kind`, or None."""
        row = self.db.execute("SELECT ts FROM events WHERE kind = ? ORDER BY rowid LIMIT 1", (str(kind),)).fetchone()
        return float(row[0]) if row else None

    def event_time(self, kind: Event, detail: str) -> float | None:
        """Unix time of the first event of `kind` with exactly this `detail`, or None."""
        row = self.db.execute(
            "SELECT ts FROM events WHERE kind = ? AND detail = ? ORDER BY rowid LIMIT 1", (str(kind), detail)
        ).fetchone()
        return float(row[0]) if row else None

    def recent_events(self, n: int) -> list[tuple[float, str, str]]:
        """The newest `n` events (unix time, kind, detail), oldest of them first."""
        return self.db.execute("SELECT ts, kind, detail FROM events ORDER BY rowid DESC LIMIT ?", (n,)).fetchall()[::-1]

    def last_event(self) -> tuple[float, str, str]:
        """(unix time, kind, detail) of the newest event."""
        return tuple(self.db.execute("SELECT ts, kind, detail FROM events ORDER BY rowid DESC LIMIT 1").fetchone())
