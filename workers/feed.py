"""One running engine per worker, fed by every shard the worker holds: `EngineFeed.run(jobs)`.

A worker holds several shards at once (Celery's threads pool: one task thread per shard lease,
`workers/tasks.py`). Each task thread hands its jobs to the feed and waits for their
Generations; one engine thread runs `engine.serve(feed)` without stopping between shards, so a
slot freed by a finished sequence is refilled from whichever shard has jobs waiting (oldest
shard first, so leases are given back in the order they were taken). The shard size is a
bookkeeping unit: it decides how often a lease is acknowledged, not how full the replica is.

Faults: when the engine raises, every shard with a job admitted to it gets the error (each
retries, and each counts the attempt); the engine is dropped and the next job rebuilds it.
A shard on its last attempt runs `alone`: the feed stops admitting, lets the replica drain,
then runs that shard's jobs one at a time, so a job that breaks the engine fails alone.

Written here rather than taken from a library: Celery delivers one task per pool slot and
vLLM's `LLM.generate` / costserve's `Engine.stream` take closed lists; the feed is the small
piece that joins many leases into one open-ended stream of jobs.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from costserve.errors import WorkerError
from solver.plan import Job
from workers.engine import Generation
from workers.occupancy import Occupancy, OccupancyWindow


class EngineFailed(WorkerError):
    """The engine broke while some of a shard's jobs were in it; `cause` is what it raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


@dataclass(eq=False)
class _Ticket:
    """One shard's jobs in the feed: how many are admitted so far, and the answers."""

    jobs: list[Job]
    alone: bool
    note: str = ""  # what an error of a job run alone starts with
    next: int = 0  # jobs[:next] have been admitted
    answers: queue.Queue[Generation | BaseException] = field(default_factory=queue.Queue)

    @property
    def untaken(self) -> int:
        return len(self.jobs) - self.next


class EngineFeed:
    """An engine in its own thread, fed by many callers at once; `run(jobs)` yields their Generations.

    `load()` returns the engine, building it on first use and after `drop(engine)` released a broken one.
    `on_window(window)` receives the occupancy record of the running replica (of `engine.slots` slots) every few
    seconds.
    """

    def __init__(
        self,
        load: Callable[[], Any],
        drop: Callable[[Any], None],
        on_window: Callable[[OccupancyWindow], None] | None = None,
    ) -> None:
        self._load, self._drop = load, drop
        self._on_window = on_window
        self._lock = threading.Condition()
        self._tickets: deque[_Ticket] = deque()  # with jobs not yet admitted, oldest first
        self._active: dict[int, tuple[_Ticket, int]] = {}  # key → (ticket, position) of each admitted job
        self._keys = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="engine-feed", daemon=True)
        self._thread.start()

    # -- callers (task threads) -----------------------------------------------------

    def run(self, jobs: list[Job], alone: bool = False, note: str = "") -> Iterator[Generation]:
        """Hand `jobs` to the engine and yield each Generation as it finishes (index = position in `jobs`).

        Raises EngineFailed when the engine broke with any of them in it (none of the rest will come).
        `alone`: run them one at a time on an otherwise empty replica (a shard's last attempt); the error of a job
        that breaks the engine then starts with `note`."""
        if not jobs:
            return
        ticket = _Ticket(list(jobs), alone, note)
        with self._lock:
            self._tickets.append(ticket)
            self._lock.notify_all()
        try:
            for _ in range(len(ticket.jobs)):
                answer = ticket.answers.get()
                if isinstance(answer, BaseException):
                    raise answer
                yield answer
        finally:  # the caller stopped early (its database failed): jobs not yet admitted are withdrawn
            with self._lock:
                if ticket in self._tickets:
                    self._tickets.remove(ticket)

    # -- the batcher's side (engine thread): the JobFeed protocol of Engine.serve ------

    def take(self, n: int) -> list[tuple[int, Job]]:
        """Up to `n` jobs, oldest shard first; none while the oldest shard must run alone."""
        out: list[tuple[int, Job]] = []
        with self._lock:
            while self._tickets and len(out) < n and not self._tickets[0].alone:
                t = self._tickets[0]
                while t.untaken and len(out) < n:
                    key = next(self._keys)
                    self._active[key] = (t, t.next)
                    out.append((key, t.jobs[t.next]))
                    t.next += 1
                if not t.untaken:
                    self._tickets.popleft()
        return out

    def wait(self) -> bool:
        """Block until a job can be taken (True); False when the next shard must run alone (the replica drained)."""
        with self._lock:
            while not self._tickets:
                self._lock.wait()
            return not self._tickets[0].alone

    # -- engine thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._tickets:
                    self._lock.wait()
                alone = self._tickets[0].alone
            engine: Any = None
            try:
                if alone:
                    self._run_alone()
                    continue
                engine = self._load()  # the loaded engine, or a new one after a failure dropped it
                occupancy = Occupancy(engine.slots, self._on_window) if self._on_window is not None else None
                for gen in engine.serve(self, occupancy):
                    self._answer(gen)
            except Exception as exc:  # the engine broke: every shard with a job in it fails this attempt
                if engine is not None:
                    self._drop(engine)
                self._fail_admitted(exc)

    def _answer(self, gen: Generation) -> None:
        with self._lock:
            ticket, position = self._active.pop(gen.index)
        gen.index, gen.finished = position, time.time()  # the engine's time, not when a busy task thread gets to it
        ticket.answers.put(gen)

    def _fail_admitted(self, exc: BaseException) -> None:
        """Fail every shard with a job admitted (its other jobs are withdrawn: the retry runs them); a load failure,
        with nothing admitted, fails the oldest waiting shard so that nobody waits on an engine that cannot start."""
        with self._lock:
            failed = {id(t): t for t, _ in self._active.values()}
            if not failed and self._tickets:
                failed[id(self._tickets[0])] = self._tickets[0]
            self._active.clear()
            self._tickets = deque(t for t in self._tickets if id(t) not in failed)
        for t in failed.values():
            t.answers.put(EngineFailed(exc))

    def _run_alone(self) -> None:
        """Run the oldest shard's jobs one at a time; a job whose generation raises fails alone, and the engine is
        dropped (the next job loads a new one)."""
        with self._lock:
            if not self._tickets or not self._tickets[0].alone:
                return  # withdrawn meanwhile
            ticket = self._tickets.popleft()
        for position, job in enumerate(ticket.jobs):
            engine: Any = None
            try:
                engine = self._load()
                gens = list(engine.stream([job]))
            except Exception as exc:  # whatever broke the engine, this job alone fails
                if engine is not None:
                    self._drop(engine)
                gens = [
                    Generation(
                        0,
                        job.custom_id,
                        "",
                        0,
                        0,
                        "error",
                        job.messages is not None,
                        f"{ticket.note}{type(exc).__name__}: {exc}",
                    )
                ]
            for g in gens:
                g.index = position
                ticket.answers.put(g)


def shards_to_hold(slots: int, shard_size: int) -> int:
    """Shard leases a worker holds at once to keep `slots` sequences in flight with shards of `shard_size` jobs.

    ceil(slots / shard_size) shards fill the slots; as many again cover the jobs of shards that wait on one long
    straggler before they can be acknowledged; one more is already here when a shard is acknowledged."""
    return 2 * -(-slots // shard_size) + 1


class ListFeed:
    """A closed list of jobs as a JobFeed (keys = positions), for engines that run an open feed."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs, self.next = jobs, 0

    def take(self, n: int) -> list[tuple[int, Job]]:
        out = [(i, self.jobs[i]) for i in range(self.next, min(self.next + n, len(self.jobs)))]
        self.next += len(out)
        return out

    def wait(self) -> bool:
        return self.next < len(self.jobs)
