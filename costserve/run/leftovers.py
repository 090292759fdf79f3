"""What a dead driver left running on this machine: its pid, worker process groups and embedded Redis.

Processes are matched by pid and checked before anything is signalled (a recycled pid belongs to
something else): a driver by its command line, a worker by its working directory, Redis by name.
"""

from __future__ import annotations

import os
from pathlib import Path

from costserve.store.run_state import Event
from costserve.store.runs import RunStore


def _costserve_process(pid: int) -> bool:
    """Whether `pid` is alive and is a costserve process (a recycled pid belongs to something else)."""
    try:
        return b"costserve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _works_in(pid: int, run_dir: Path) -> bool:
    """Whether `pid` is a live process whose working directory is `run_dir` (how `submit` starts workers; Celery
    rewrites their command line, and a recycled pid belongs to something else)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == run_dir.resolve()
    except OSError:
        return False


def _recorded_pids(run: RunStore, kind: Event) -> list[int]:
    return [int(d) for d in run.events(kind)]


def driver_alive(run: RunStore) -> int | None:
    """The pid of the run's driver (`submit`/`resume`) if it is still running, else None."""
    pids = _recorded_pids(run, Event.DRIVER)
    return pids[-1] if pids and _costserve_process(pids[-1]) else None


def stop_leftovers(run: RunStore) -> None:
    """Stop the worker process groups and embedded Redis a dead driver left running (checked by command line first)."""
    import signal

    for pid in _recorded_pids(run, Event.WORKER_STARTED):
        if _works_in(pid, run.dir):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in _recorded_pids(run, Event.BROKER_PID):
        try:
            if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
