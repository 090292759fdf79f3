"""The run store: `$COSTSERVE_HOME/runs/<id>/`, the source of truth for what a run has done.

A run directory (mode 0700) holds `input.json` (job file path, SHA-256, line count),
`plan.json`, `replica-<queue>.json` per queue, `shards/` (the shard files workers read),
`run.sqlite` (shard states and events) and `results.sqlite` (one row per finished job,
written by the workers, keyed by custom_id: `store/results.py`), `request.json` (the
BatchRequest), then `results.jsonl` and logs.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalog.home import costserve_home
from costserve.store.patient import patient_connect
from costserve.store.results import results_db, results_per_shard, results_rows
from costserve.store.run_events import RunEvents
from costserve.store.run_state import Event, FleetRow, ShardRow, ShardState, running_price_per_hour

if TYPE_CHECKING:
    from costserve.request import BatchRequest
    from solver.plan import Plan


def list_runs() -> list[RunStore]:
    """Every run in the store, oldest first (ids start with their creation time)."""
    if not runs_dir().is_dir():
        return []
    return [RunStore(d) for d in sorted(runs_dir().iterdir()) if (d / "run.sqlite").is_file()]


def runs_dir() -> Path:
    """Where runs live: `$COSTSERVE_HOME/runs`."""
    return costserve_home() / "runs"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunStore(RunEvents):
    """One run directory and its state database."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.id = self.dir.name
        self.db = patient_connect(self.dir / "run.sqlite")
        self._driver_lock: int | None = None  # fd of driver.lock while this process drives the run
        self._read: dict[str, Any] = {}  # the run's JSON files as read: each parsed once per store
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS shards (shard_id TEXT PRIMARY KEY, queue TEXT, jobs INTEGER, "
            "state TEXT, updated REAL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS events (ts REAL, kind TEXT, detail TEXT)")
        # one row per period a group was up: a resumed run adds a period
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS fleet (queue TEXT, group_index INTEGER, instances INTEGER, "
            "price_per_hour REAL, up REAL, down REAL)"
        )
        self.db.commit()

    @classmethod
    def create(
        cls, jobs_path: Path, jobs: int, sha256: str | None = None, files: dict[str, str] | None = None
    ) -> RunStore:
        """A new run for `jobs` valid jobs of `jobs_path` (referenced by path and SHA-256, not copied; `sha256` when the
        caller hashed it while reading), with `files` (name → text: the request, the plan) in its directory. Both
        databases exist when this returns.

        `run.sqlite` is created last: a directory is a run (listed, resumable) only once everything it needs to be
        resumed is in it, so a driver killed while creating it leaves no half-made run."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        run_dir = runs_dir() / run_id
        run_dir.mkdir(parents=True, mode=0o700)
        run_dir.chmod(0o700)
        (run_dir / "input.json").write_text(
            json.dumps(
                {"path": str(jobs_path.resolve()), "sha256": sha256 or file_sha256(jobs_path), "jobs": jobs}, indent=2
            )
        )
        for name, text in (files or {}).items():
            (run_dir / name).write_text(text)
        results_db(run_dir).close()
        store = cls(run_dir)
        store.event(Event.CREATED, str(jobs_path))
        return store

    @classmethod
    def open(cls, run_id: str | None = None) -> RunStore:
        """An existing run by its id or a unique prefix of it (`20261206-19`); None: the latest run.

        FileNotFoundError, one line, names the runs directory when none matches, or the matches when several do."""
        run_dir = runs_dir() / run_id if run_id else None
        if run_dir is not None and (run_dir / "run.sqlite").is_file():
            return cls(run_dir)
        matches = [r for r in list_runs() if run_id is None or r.id.startswith(run_id)]
        if run_id is None and matches:
            return matches[-1]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            what = f"no such run {run_id!r}" if run_id else "no runs yet"
            raise FileNotFoundError(f"{runs_dir()}: {what}")
        listed = ", ".join(r.id for r in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise FileNotFoundError(f"run id prefix {run_id!r} matches {len(matches)} runs ({listed}): give more of it")

    def claim_driver(self) -> None:
        """Become the run's only driver: an exclusive lock on `driver.lock`, held until this process exits (the kernel
        releases it however the process ends), then the "driver" event. RunStateError when another process holds it."""
        import os

        from costserve.errors import RunStateError
        from costserve.store.process_lock import hold

        fd = hold(self.dir / "driver.lock")
        if fd is None:
            pid = self.driver_pid()
            raise RunStateError(
                f"run {self.id} is being driven by another process"
                f"{f' (pid {pid})' if pid and pid > 0 else ''}; `costserve cancel {self.id}` stops it"
            )
        self._driver_lock = fd  # kept open for the life of this process
        self.event(Event.DRIVER, str(os.getpid()))

    def driver_pid(self) -> int | None:
        """The pid of the process driving this run now (it holds `driver.lock`), None when no process does."""
        from costserve.store.process_lock import holder

        pid = holder(self.dir / "driver.lock")
        if pid == -1:  # a driver of an earlier version wrote no pid into the lock: its event names it
            pids = self.events(Event.DRIVER)
            return int(pids[-1]) if pids else -1
        return pid

    def add_shard(self, shard_id: str, queue: str, jobs: int) -> None:
        """Record a shard written to `shards/` and about to be queued."""
        self.db.execute(
            "INSERT OR REPLACE INTO shards VALUES (?, ?, ?, 'queued', ?)", (shard_id, queue, jobs, time.time())
        )
        self.db.commit()

    def move_shard(self, shard_id: str, queue: str) -> None:
        """Record that a shard was re-sent to another queue (its group was lost)."""
        self.db.execute("UPDATE shards SET queue = ? WHERE shard_id = ?", (queue, shard_id))
        self.db.commit()

    def shards(self, state: ShardState | None = None) -> list[ShardRow]:
        """Every shard, or those in `state`, by id."""
        sql = (
            "SELECT shard_id, queue, jobs, state FROM shards"
            + (" WHERE state = ?" if state else "")
            + " ORDER BY shard_id"
        )
        rows = self.db.execute(sql, (str(state),) if state else ())
        return [ShardRow(sid, group, jobs, ShardState(st)) for sid, group, jobs, st in rows]

    def shard_done(self, shard_id: str) -> None:
        """Mark one shard done: its every job has a result."""
        self.db.execute(
            "UPDATE shards SET state = 'done', updated = ? WHERE shard_id = ? AND state != 'done'",
            (time.time(), shard_id),
        )
        self.event(Event.SHARD_DONE, shard_id)

    def mark_finished_shards(self, results: sqlite3.Connection) -> int:
        """Mark shards whose every job has a result as done; returns how many shards are done."""
        finished = results_per_shard(results)
        for shard in self.shards(ShardState.QUEUED):
            sid = shard.shard_id
            if finished.get(sid, 0) >= shard.jobs:
                self.db.execute("UPDATE shards SET state = 'done', updated = ? WHERE shard_id = ?", (time.time(), sid))
                self.event(Event.SHARD_DONE, sid)
        self.db.commit()
        return len(self.shards(ShardState.DONE))

    def fleet_up(
        self, queue: str, group_index: int, instances: int, price_per_hour: float, since: float | None = None
    ) -> None:
        """Record that plan group `group_index` is running since `since` (epoch s; default now): `instances` instances
        at $/h each, serving `queue`."""
        self.db.execute(
            "INSERT INTO fleet VALUES (?, ?, ?, ?, ?, NULL)",
            (queue, group_index, instances, price_per_hour, time.time() if since is None else since),
        )
        self.event(Event.FLEET_UP, f"{queue}: {instances} instance(s) at ${price_per_hour:.4f}/h")

    def fleet_down(self, queue: str) -> None:
        """Record that the group serving `queue` was torn down (its billing stops now)."""
        self.db.execute("UPDATE fleet SET down = ? WHERE queue = ? AND down IS NULL", (time.time(), queue))
        self.event(Event.FLEET_DOWN, queue)

    def fleet(self) -> list[FleetRow]:
        """Every period a fleet group was up, by group index then start."""
        rows = self.db.execute(
            "SELECT queue, group_index, instances, price_per_hour, up, down FROM fleet ORDER BY group_index, up"
        )
        return [FleetRow(*row) for row in rows]

    def running_price_per_hour(self) -> float:
        """What the groups still up cost together now, $/h."""
        return running_price_per_hour(self.fleet())

    def close_dangling_fleet(self) -> None:
        """End periods a dead driver left open, now: what it left running was billed until it is stopped."""
        self.db.execute("UPDATE fleet SET down = MAX(up, ?) WHERE down IS NULL", (time.time(),))
        self.db.commit()

    def spend(self, now: float | None = None) -> float:
        """Dollars spent so far: instances x $/h x uptime of every group (running groups count up to `now`)."""
        now = time.time() if now is None else now
        return sum(row.cost(now) for row in self.fleet())

    def plan(self) -> Plan | None:
        """The run's plan.json, or None when it has none (read once per store; a re-plan's write_json replaces it)."""
        if "plan.json" not in self._read:
            path = self.dir / "plan.json"
            from solver.plan import Plan

            self._read["plan.json"] = Plan.model_validate_json(path.read_text()) if path.is_file() else None
        return self._read["plan.json"]

    def input_info(self) -> dict[str, Any]:
        """input.json: the job file's path, SHA-256 and number of valid jobs (written once, at creation)."""
        if "input.json" not in self._read:
            self._read["input.json"] = json.loads((self.dir / "input.json").read_text())
        return dict(self._read["input.json"])

    def results_done(self) -> int:
        """Jobs with a result in results.sqlite (0 before any worker wrote one)."""
        return results_rows(self.dir, "results")

    def request(self) -> BatchRequest | None:
        """The BatchRequest this run was submitted with (request.json, written once at creation), or None."""
        if "request.json" not in self._read:
            from costserve.request import BatchRequest

            self._read["request.json"] = BatchRequest.load(self.dir)
        return self._read["request.json"]

    def write_json(self, name: str, data: Any) -> Path:
        """Write a JSON file in the run directory (plan.json, replica files)."""
        path = self.dir / name
        path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
        self._read.pop(name, None)
        return path
