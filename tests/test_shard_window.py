"""Shards go to the broker a window at a time (costserve/run/shard_window.py)."""

from __future__ import annotations

from costserve.run.shard_window import ShardWindow, window_size
from workers.feed import shards_to_hold


def test_a_window_sends_oldest_first_and_only_as_many_as_it_holds() -> None:
    sent: list[str] = []
    window = ShardWindow(3, lambda sid: sent.append(sid) or len(sent), [f"s{i}" for i in range(7)])
    assert window.fill() == 3 and sent == ["s0", "s1", "s2"] and len(window) == 7
    assert window.fill() == 0  # full: nothing more goes out until a shard finishes
    window.finished("s1")
    assert window.fill() == 1 and sent[-1] == "s3" and set(window.sent) == {"s0", "s2", "s3"}
    window.resend("s0")  # lost with a worker: sent again, still one of the three
    assert sent[-1] == "s0" and window.sent["s0"] == 5 and window.fill() == 0
    assert window.take_all() == ["s0", "s2", "s3", "s4", "s5", "s6"] and len(window) == 0 and window.fill() == 0


def test_the_window_holds_what_every_replica_needs_twice_over() -> None:
    assert window_size(1, 16, 4) == 2 * shards_to_hold(16, 4) == 18
    assert window_size(3, 256, 32) == 3 * 2 * shards_to_hold(256, 32)
    assert window_size(0, 0, 0) >= 1  # a group always gets something to run


def test_a_group_that_finishes_its_own_shards_takes_the_last_waiting_shards_of_a_group_it_may_serve() -> None:
    from costserve.run.shard_window import rebalance

    sent: list[tuple[str, str]] = []

    def window(group: str, shards: list[str]) -> ShardWindow[None]:
        w: ShardWindow[None] = ShardWindow(2, lambda sid: sent.append((group, sid)), shards)
        w.fill()
        return w

    windows = {"g0": window("g0", ["a0", "a1", "a2", "a3", "a4"]), "g1": window("g1", ["b0"]), "g2": window("g2", [])}
    serves = {"g0": {"short"}, "g1": {"short", "long"}, "g2": {"long"}}  # g2 may not serve g0's short jobs
    windows["g1"].finished("b0")
    moves: list[tuple[str, str]] = []
    assert rebalance(windows, serves, lambda sid, to: moves.append((sid, to))) == 2
    assert moves == [("a4", "g1"), ("a3", "g1")]  # g0's last shards, sent to g1 at once
    assert sent[-2:] == [("g1", "a4"), ("g1", "a3")] and list(windows["g0"].waiting) == ["a2"]
    assert rebalance(windows, serves, lambda sid, to: moves.append((sid, to))) == 0  # g1 is full; g2 may not take "short"
    windows["g0"].finished("a0")
    assert windows["g0"].fill() == 1 and not windows["g0"].waiting  # g0 keeps what it has left
