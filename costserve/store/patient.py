"""SQLite connections that outwait a lock held by another process or a full disk, up to a bound, then stop with one line.

SQLite's own busy timeout (`timeout=`, LOCK_WAIT_S here) waits for a lock inside one call. A
run must also survive a lock held longer than that (a backup, a `sqlite3` shell left open in
a transaction), so a statement or commit that still finds the database locked is tried again
until LOCKED_GIVE_UP_S have passed since the first failure, then StoreLocked is raised: the
run stops there, resumable. A full disk ("database or disk is full") is tried again the same
way for FULL_GIVE_UP_S (space is often freed soon: a log rotated, a cache cleared), then
StoreFull. sqlite3 has no such bound of its own (its timeout is per call, for locks only, and a
larger one would hide the wait from the user), hence this class.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from costserve.durations import format_duration
from costserve.errors import StoreFull, StoreLocked
from costserve.notices import warn

LOCK_WAIT_S = 30.0  # SQLite's busy timeout per call (s)
LOCKED_GIVE_UP_S = float(os.environ.get("COSTSERVE_LOCKED_GIVE_UP_S", "600"))  # s of one lock before the run stops
FULL_GIVE_UP_S = float(os.environ.get("COSTSERVE_FULL_GIVE_UP_S", "60"))  # s of a full disk before the run stops
RETRY_PAUSE_S = 1.0


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _full(exc: sqlite3.OperationalError) -> bool:
    return "disk is full" in str(exc) or "disk I/O error" in str(exc)


class PatientConnection(sqlite3.Connection):
    """A sqlite3 connection whose `execute` and `commit` retry while another process holds the database locked."""

    path: Path = Path("database")
    full: bool = False  # gave up on a full disk: later writes fail at once until one succeeds

    def _patiently(self, call: Any, *args: Any) -> Any:
        first: float | None = None
        while True:
            try:
                result = call(*args)
                self.full = False
                return result
            except sqlite3.OperationalError as exc:
                locked, full = _locked(exc), _full(exc)
                if not (locked or full):
                    raise
                now = time.monotonic()
                if full and self.full:
                    raise StoreFull(f"{self.path} cannot be written (disk full); free space there") from None
                if first is None:
                    first = now - (LOCK_WAIT_S if locked else 0.0)  # the busy timeout already waited this long
                    what = "is locked by another process" if locked else "cannot be written: its disk is full"
                    warn(
                        f"{self.path} {what}; waiting up to {format_duration(LOCKED_GIVE_UP_S if locked else FULL_GIVE_UP_S)}"
                    )
                if locked and now - first >= LOCKED_GIVE_UP_S:
                    raise StoreLocked(
                        f"{self.path} stayed locked by another process for {format_duration(now - first)} "
                        f"(find it with `fuser {self.path}`); the run stopped, resume it once the lock is gone"
                    ) from None
                if full and now - first >= FULL_GIVE_UP_S:
                    self.full = True
                    raise StoreFull(
                        f"{self.path} could not be written for {format_duration(now - first)} (disk full); free space there"
                    ) from None
                time.sleep(RETRY_PAUSE_S)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self._patiently(super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        rows = list(parameters)  # a retry runs them again: INSERT OR REPLACE / keyed writes make that harmless
        return self._patiently(super().executemany, sql, rows)

    def commit(self) -> None:
        self._patiently(super().commit)


def patient_connect(path: Path) -> PatientConnection:
    """A PatientConnection to `path` in WAL mode (readers never wait for the writer), every statement its own
    transaction: a statement retried after a lock never continues a transaction whose snapshot went stale."""
    con = sqlite3.connect(path, timeout=LOCK_WAIT_S, factory=PatientConnection, isolation_level=None)
    assert isinstance(con, PatientConnection)
    con.path = Path(path)
    con.execute("PRAGMA journal_mode=WAL")
    return con
