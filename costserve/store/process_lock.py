"""A lock a process holds for its whole life: the run's one driver (`driver.lock`), a home's one scheduler.

An exclusive flock on a file, taken without waiting; the kernel releases it however the process ends (SIGKILL
included), so a lock is never left stale. The holder writes its pid into the file, so another process can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def hold(path: Path) -> int | None:
    """Hold `path`'s lock for the life of this process and write this pid into it; the open fd (keep it open), or None
    when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def holder(path: Path) -> int | None:
    """The pid of the process holding `path`'s lock (-1 when it wrote none), None when no process holds it."""
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)  # closing drops a shared lock taken just now
    return None
