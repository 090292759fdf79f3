"""Shards go to a broker queue a window at a time, so neither the broker nor the driver ever holds the whole batch.

A window keeps `size` shards sent and not finished on one queue: enough that every replica
serving the queue holds what it needs to stay at its planned batch (workers/feed.py
`shards_to_hold`) and finds the next shard already queued when it acknowledges one, twice
over so a shard finished just after the driver's poll does not leave a replica short until the
next. The rest wait as ids in the driver (a few bytes each; their jobs stay in the run's shard
files). A group that runs faster than planned finishes its window sooner and so is sent more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from workers.feed import shards_to_hold

Sent = TypeVar("Sent")  # what sending a shard returns (a Celery AsyncResult, or None)


def window_size(holders: int, slots: int, shard_size: int) -> int:
    """Shards to keep sent and unfinished on a queue that `holders` replicas of `slots` sequences each serve."""
    return max(1, holders) * 2 * shards_to_hold(max(1, slots), max(1, shard_size))


class ShardWindow(Generic[Sent]):
    """The shards of one queue: waiting (ids, in order) and sent (id → what `send` returned), at most `size` sent."""

    def __init__(self, size: int, send: Callable[[str], Sent], shards: Iterable[str] = ()) -> None:
        self.size, self.send = size, send
        self.waiting: deque[str] = deque(shards)
        self.sent: dict[str, Sent] = {}

    def fill(self) -> int:
        """Send waiting shards, oldest first, until `size` are out or none wait; returns how many were sent."""
        n = 0
        while self.waiting and len(self.sent) < self.size:
            sid = self.waiting.popleft()
            self.sent[sid] = self.send(sid)
            n += 1
        return n

    def finished(self, shard: str) -> None:
        """`shard` is done (or given up): it leaves the window, making room for a waiting one."""
        self.sent.pop(shard, None)

    def resend(self, shard: str) -> None:
        """Send `shard` again (its earlier copy was lost with a worker); it stays in the window."""
        self.sent[shard] = self.send(shard)

    def take_all(self) -> list[str]:
        """Every shard of the window, sent and waiting, in order; the window is left empty (its group is gone)."""
        shards = sorted(self.sent) + list(self.waiting)
        self.sent.clear()
        self.waiting.clear()
        return shards

    def __len__(self) -> int:
        """Shards not finished: sent and waiting."""
        return len(self.sent) + len(self.waiting)


def rebalance(
    windows: dict[str, ShardWindow[Sent]], serves: dict[str, set[str]], move: Callable[[str, str], None]
) -> int:
    """Late binding: a group with room in its window and nothing left waiting takes waiting shards of another group
    whose every workload class it may serve too (`serves`: group → classes its plan gives it a share of), the victim's
    last shards first. So a group that runs faster than planned takes more of the batch, and the jobs are bound to a
    group when they are sent, not up front. `move(shard, group)` records each move; returns how many moved."""
    moved = 0
    for thief, mine in windows.items():
        room = mine.size - len(mine.sent)
        for victim, theirs in windows.items():
            if room <= 0 or mine.waiting:
                break
            if victim == thief or not theirs.waiting or not serves.get(victim, set()) <= serves.get(thief, set()):
                continue
            while room > 0 and theirs.waiting:
                sid = theirs.waiting.pop()
                move(sid, thief)
                mine.waiting.append(sid)
                mine.fill()
                room, moved = room - 1, moved + 1
    return moved
