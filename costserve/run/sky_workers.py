"""The live view's Fleet for SkyPilot groups: finished shards come back through the broker's result store.

Remote workers share no directory with the driver, so each shard travels inline in its Celery
task (`workers.tasks.run_jobs`) and its outputs come back as the task result; this writes them
into the run store as they arrive. A shard that failed is re-sent, at most MAX_SHARD_ATTEMPTS times.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from costserve.run.replan import RUN_TASK, GroupReplacer
from costserve.store.results import shard_run_stats
from costserve.store.runs import RunStore

MAX_SHARD_ATTEMPTS = 3


class RemoteWorkers:
    """The live view's Fleet for SkyPilot groups: collects finished shards from the result store."""

    def __init__(self, store: RunStore, results: sqlite3.Connection, app: Any, pending: dict[str, tuple[Any, str, list[dict]]]) -> None:  # type: ignore[type-arg]
        self.store, self.results, self.app, self.pending = store, results, app, pending
        self.attempts: dict[str, int] = {sid: 1 for sid in pending}
        self.error: str | None = None
        self.replacer: GroupReplacer | None = None  # set once the fleet is up

    def poll(self) -> None:
        from workers.shard_io import save_result, save_shard_run

        for sid, (res, queue, jobs) in list(self.pending.items()):
            if not res.ready():
                continue
            if not res.successful():
                if self.attempts[sid] >= MAX_SHARD_ATTEMPTS:
                    self.error = f"shard {sid} failed {MAX_SHARD_ATTEMPTS} times on queue {queue}: {res.result!r}"
                    del self.pending[sid]
                    continue
                self.attempts[sid] += 1
                self.store.event("shard resent", f"{sid} (attempt {self.attempts[sid]})")
                self.pending[sid] = (self.app.send_task(RUN_TASK, args=(sid, jobs), queue=queue), queue, jobs)
                continue
            done = res.get()
            for o in done["outputs"]:
                save_result(self.results, o["custom_id"], o["line"], sid, o["output"], done["attempt"], o["tokens"], o["finished"])
            errors = sum(o["output"].get("error") is not None for o in done["outputs"])
            save_shard_run(self.results, sid, done["worker"], done["queue"] or queue, done["attempt"], done["started"],
                           len(done["outputs"]), sum(o["tokens"] for o in done["outputs"]), errors, done["finished"])
            res.forget()
            del self.pending[sid]
        if self.replacer is not None and self.error is None:
            self.replacer.check(self.pending)
            self.error = self.replacer.error

    def alive(self) -> bool:
        return self.error is None

    def gone(self) -> str:
        return f"{self.error} (run {self.store.id})"

    def status(self, now: float) -> RenderableType:
        table = Table(box=None, header_style="dim")
        for column in ("group", "instances", "shards done", "queued", "tokens", "last shard"):
            table.add_column(column, justify="left" if column == "group" else "right")
        done = shard_run_stats(self.results, "queue")
        for queue, _, instances, _, _, _ in self.store.fleet():
            if queue == "broker":
                continue
            n, tok, last = done.get(queue, (0, 0, None))
            waiting = sum(1 for _, q, _ in self.pending.values() if q == queue)
            table.add_row(queue, str(instances), str(n), str(waiting), f"{tok or 0:,}", f"{now - last:.0f}s ago" if last else "–")
        return table
