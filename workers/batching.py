"""Iteration-level (continuous) batching over the KV-cache slots of a replica.

Slots are split into groups, one per pipeline micro-batch (a single group when there is one
stage). A *round* of a group produces one token for every sequence in it: a decode
command for the sequences already running plus prefill commands (at most
`prefill_micro_batch` prompts each) for the jobs admitted into its free slots. When a
sequence finishes (EOS, a stop string, its token limit) its slot is refilled at the
group's next round, so no batch waits for its longest member.

The batcher runs an open-ended feed (`SeqSource`): it takes new sequences whenever slots are
free, and waits for the source only when nothing is in flight, so a worker that keeps its
source supplied keeps every slot busy across shard boundaries. A closed list (`ListSource`)
is admitted longest-`max_tokens` first, which keeps the tail of the batch short. Every round
records how many sequences were in flight (`Occupancy`), so a run can show the batch it
really ran beside the batch it was planned at.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from workers.sampling import job_generator, sample_row


@dataclass
class SeqState:
    """One job being generated: its prompt ids, cache slot and the tokens so far."""

    index: int
    prompt_ids: list[int]
    max_new: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    generator: torch.Generator | None
    slot: int = -1
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    text: str | None = None
    error: str | None = None  # set before admission when the job cannot run (it is yielded without a slot)

    @property
    def next_pos(self) -> int:
        """Position of the last generated token, the one the next decode step feeds in."""
        return len(self.prompt_ids) + len(self.tokens) - 1


@dataclass
class Command:
    """One forward pass through the whole pipeline: token ids [B, T], positions, slots, last real index."""

    group: int
    prefill: bool
    seqs: list[SeqState]
    tokens: Tensor
    pos: Tensor
    slots: Tensor
    last_index: Tensor


@dataclass
class BatchStats:
    """Counters of one generate call: rounds, forward passes, tokens."""

    slots: int = 0
    rounds: int = 0
    prefill_passes: int = 0
    decode_passes: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    decode_seconds: float = 0.0  # time inside submit + collect of decode passes (exact for one process)
    decode_rows: int = 0
    decode_context: int = 0  # sum over decode rows of their cached tokens
    # (rows, tokens each row attends to) per decode pass: attention runs every row of a pass
    # over the longest row's cache, so this is the shape a cost model must price
    decode_shapes: list[tuple[int, int]] = field(default_factory=list)
    occupancy: Occupancy | None = None  # sequences in flight per round, when someone records them

    @property
    def ideal_rounds(self) -> float:
        """Rounds a perfect packing would need: generated tokens / slots."""
        return self.generated_tokens / max(self.slots, 1)


OCCUPANCY_WINDOW_S = 2.0  # s; one occupancy record summarises the rounds of this long (bounded rows at any batch size)


@dataclass
class OccupancyWindow:
    """Rounds of one replica between `start` and `end` (unix s): how many, and the sequences in flight over them."""

    start: float
    end: float
    rounds: int
    in_flight_sum: int  # Σ over rounds of the sequences in flight (running in the replica's slots)
    in_flight_max: int
    slots: int  # the replica's slots (its planned batch)

    @property
    def mean(self) -> float:
        """Mean sequences in flight per round over the window."""
        return self.in_flight_sum / max(self.rounds, 1)


class Occupancy:
    """Sequences in flight per round, summarised into windows handed to `sink` as they close.

    A window closes after OCCUPANCY_WINDOW_S, and whenever the replica turns full (every slot in flight) or stops being
    full, so each window is either all full or all short of full: a report can cut a run into ramp-up, steady state
    and drain at window boundaries. Rows stay few: one per window in steady state, one per dip when feeding falters."""

    def __init__(self, slots: int, sink: Callable[[OccupancyWindow], None], window_s: float = OCCUPANCY_WINDOW_S) -> None:
        self.slots, self.sink, self.window_s = slots, sink, window_s
        self.current: OccupancyWindow | None = None

    def record(self, in_flight: int, now: float | None = None) -> None:
        """One round with `in_flight` sequences in the replica's slots."""
        now = time.time() if now is None else now
        w = self.current
        if w is not None and (w.in_flight_max >= self.slots) != (in_flight >= self.slots):
            self.flush()
            w = None
        if w is None:
            w = self.current = OccupancyWindow(now, now, 0, 0, 0, self.slots)
        w.end, w.rounds, w.in_flight_sum = now, w.rounds + 1, w.in_flight_sum + in_flight
        w.in_flight_max = max(w.in_flight_max, in_flight)
        if now - w.start >= self.window_s:
            self.flush()

    def flush(self) -> None:
        """Hand the open window to the sink (at the end of a feed, or when it is full)."""
        if self.current is not None and self.current.rounds:
            self.sink(self.current)
        self.current = None


class SeqSource(Protocol):
    """Where a batcher's sequences come from: `take` never blocks; `wait` blocks until `take` has something (True)
    or the source is closed and empty (False)."""

    def take(self, n: int) -> list[SeqState]: ...

    def wait(self) -> bool: ...


class ListSource:
    """A closed list of sequences, admitted longest-`max_new` first."""

    def __init__(self, seqs: Sequence[SeqState]) -> None:
        self.waiting = deque(sorted(seqs, key=lambda s: -s.max_new))

    def take(self, n: int) -> list[SeqState]:
        return [self.waiting.popleft() for _ in range(min(n, len(self.waiting)))]

    def wait(self) -> bool:
        return bool(self.waiting)


def prefill_command(group: int, seqs: list[SeqState]) -> Command:
    """Right-padded prompts of `seqs`; padding reuses the last token and never reaches real rows."""
    width = max(len(s.prompt_ids) for s in seqs)
    tokens = torch.tensor([s.prompt_ids + [s.prompt_ids[-1]] * (width - len(s.prompt_ids)) for s in seqs])
    pos = torch.arange(width).repeat(len(seqs), 1)
    last = torch.tensor([len(s.prompt_ids) - 1 for s in seqs])
    return Command(group, True, seqs, tokens, pos, torch.tensor([s.slot for s in seqs]), last)


def decode_command(group: int, seqs: list[SeqState]) -> Command:
    """One new token per sequence, at its next position (rows in slot order, so the cache reads are views)."""
    seqs = sorted(seqs, key=lambda s: s.slot)
    tokens = torch.tensor([[s.tokens[-1]] for s in seqs])
    pos = torch.tensor([[s.next_pos] for s in seqs])
    return Command(group, False, seqs, tokens, pos, torch.tensor([s.slot for s in seqs]), torch.zeros(len(seqs), dtype=torch.long))


class ContinuousBatcher:
    """Turns waiting sequences into pipeline commands and logits back into tokens.

    `submit(command)` starts a forward pass; `collect()` returns the logits [B, vocab] of the
    oldest pass still in flight (first in, first out). `finished(seq)` decides whether a
    sequence is done after each token (it sets `finish_reason`).
    """

    def __init__(self, groups: int, slots_per_group: int, prefill_micro_batch: int, stats: BatchStats) -> None:
        self.groups, self.per_group, self.prefill_mb = groups, slots_per_group, prefill_micro_batch
        self.stats = stats
        stats.slots = groups * slots_per_group

    def run(
        self,
        source: SeqSource | Sequence[SeqState],
        submit: Callable[[Command], None],
        collect: Callable[[], Tensor],
        finished: Callable[[SeqState], bool],
    ) -> Iterator[SeqState]:
        """Generate every sequence the source gives until it is closed and empty; yield each as it finishes
        (completion order). A sequence that arrives with `error` set is yielded at once, without a slot."""
        if not hasattr(source, "take"):
            source = ListSource(source)
        free = [list(range(g * self.per_group, (g + 1) * self.per_group)) for g in range(self.groups)]
        running: list[list[SeqState]] = [[] for _ in range(self.groups)]
        in_flight: deque[Command] = deque()
        pending = [0] * self.groups  # commands of the group's current round not yet collected
        rejected: list[SeqState] = []

        def admit(g: int) -> list[SeqState]:
            new: list[SeqState] = []
            free[g].sort(reverse=True)
            while free[g] and (taken := source.take(len(free[g]))):
                for s in taken:
                    if s.error is not None:
                        rejected.append(s)
                        continue
                    s.slot = free[g].pop()  # lowest free slot first
                    new.append(s)
            return new

        def start_round(g: int) -> None:
            cmds = [decode_command(g, running[g])] if running[g] else []
            new = admit(g)
            cmds += [prefill_command(g, new[i : i + self.prefill_mb]) for i in range(0, len(new), self.prefill_mb)]
            running[g].extend(new)
            if cmds and self.stats.occupancy is not None:  # recorded as the round starts, before its forward passes
                self.stats.occupancy.record(sum(len(r) for r in running))
            for c in cmds:
                t0 = time.perf_counter()
                submit(c)
                if not c.prefill:
                    self.stats.decode_seconds += time.perf_counter() - t0
                    self.stats.decode_rows += len(c.seqs)
                    self.stats.decode_context += int(c.pos.sum()) + len(c.seqs)
                    self.stats.decode_shapes.append((len(c.seqs), int(c.pos.max()) + 1))
                in_flight.append(c)
                self.stats.prefill_passes += c.prefill
                self.stats.decode_passes += not c.prefill
                self.stats.prompt_tokens += sum(len(s.prompt_ids) for s in c.seqs) if c.prefill else 0
            pending[g] = len(cmds)
            self.stats.rounds += bool(cmds)

        while True:
            if not in_flight:  # every group is idle: wait for work, or end when the source is closed and empty
                if self.stats.occupancy is not None:
                    self.stats.occupancy.flush()  # the record is complete up to here, however long the wait
                if not source.wait():
                    break
                for g in range(self.groups):
                    start_round(g)
                yield from _drain(rejected)
                continue
            cmd = in_flight.popleft()
            t0 = time.perf_counter()
            logits = collect()
            if not cmd.prefill:
                self.stats.decode_seconds += time.perf_counter() - t0
            for row, s in enumerate(cmd.seqs):
                s.tokens.append(sample_row(logits[row], s.temperature, s.top_p, s.generator))
                self.stats.generated_tokens += 1
            pending[cmd.group] -= 1
            if pending[cmd.group]:
                continue
            g = cmd.group
            done = [s for s in running[g] if finished(s)]
            for s in done:
                running[g].remove(s)
                free[g].append(s.slot)
                yield s
            start_round(g)
            for idle in (h for h in range(self.groups) if h != g and not pending[h]):
                start_round(idle)  # a group left idle by an empty source takes work that arrived since
            yield from _drain(rejected)
        if self.stats.occupancy is not None:
            self.stats.occupancy.flush()


def _drain(items: list[SeqState]) -> Iterator[SeqState]:
    """Yield and remove every item of `items`."""
    while items:
        yield items.pop(0)


def new_seq(index: int, prompt_ids: list[int], max_new: int, temperature: float, top_p: float, stop: tuple[str, ...], seed: int | None, custom_id: str) -> SeqState:
    """A SeqState with its own random generator (none when greedy)."""
    gen = job_generator(seed, custom_id) if temperature > 0 else None
    return SeqState(index, prompt_ids, max_new, temperature, top_p, stop, gen)
