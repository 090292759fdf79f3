"""SQLite connections that outwait a lock held by another process, up to a bound, then stop with one line.

SQLite's own busy timeout (`timeout=`, LOCK_WAIT_S here) waits for a lock inside one call. A
run must also survive a lock held longer than that (a backup, a `sqlite3` shell left open in
a transaction), so a statement or commit that still finds the database locked is tried again
with backoff until LOCKED_GIVE_UP_S have passed since the first failure, then
StoreLocked is raised: the run stops there, resumable. sqlite3 has no such bound of its own
(its timeout is per call and a larger one would hide the wait from the user), hence this class.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from costserve.errors import CostserveError
from costserve.notices import warn

LOCK_WAIT_S = 30.0  # SQLite's busy timeout per call (s)
LOCKED_GIVE_UP_S = float(os.environ.get("COSTSERVE_LOCKED_GIVE_UP_S", "600"))  # s of one lock before the run stops
RETRY_PAUSE_S = 1.0


class StoreLocked(CostserveError):
    """A run database stayed locked by another process longer than LOCKED_GIVE_UP_S."""


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class PatientConnection(sqlite3.Connection):
    """A sqlite3 connection whose `execute` and `commit` retry while another process holds the database locked."""

    path: Path = Path("database")

    def _patiently(self, call: Any, *args: Any) -> Any:
        first: float | None = None
        while True:
            try:
                return call(*args)
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
                now = time.monotonic()
                if first is None:
                    first = now - LOCK_WAIT_S  # the busy timeout already waited this long
                    warn(f"{self.path} is locked by another process; waiting up to {LOCKED_GIVE_UP_S:.0f}s for it")
                if now - first >= LOCKED_GIVE_UP_S:
                    raise StoreLocked(f"{self.path} stayed locked by another process for {now - first:.0f}s "
                                      f"(find it with `fuser {self.path}`); the run stopped, resume it once the lock is gone") from None
                time.sleep(RETRY_PAUSE_S)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self._patiently(super().execute, sql, parameters)  # type: ignore[no-any-return]

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
