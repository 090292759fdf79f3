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
records how many sequences were in flight (workers/occupancy.py), so a run can show the batch it
really ran beside the batch it was planned at.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from workers.sampling import job_generator, sample_row

if TYPE_CHECKING:
    from workers.occupancy import Occupancy


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
    return Command(
        group, False, seqs, tokens, pos, torch.tensor([s.slot for s in seqs]), torch.zeros(len(seqs), dtype=torch.long)
    )


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
        r = _Rounds(self, source if hasattr(source, "take") else ListSource(source), submit)  # type: ignore[arg-type]  # hasattr narrows a plain list to ListSource at run time
        occupancy = self.stats.occupancy
        while True:
            if not r.in_flight:  # every group is idle: wait for work, or end when the source is closed and empty
                if occupancy is not None:
                    occupancy.flush()  # the record is complete up to here, however long the wait
                if not r.source.wait():
                    break
                for g in range(self.groups):
                    r.start(g)
                yield from _drain(r.rejected)
                continue
            cmd = r.in_flight.popleft()
            t0 = time.perf_counter()
            logits = collect()
            if not cmd.prefill:
                self.stats.decode_seconds += time.perf_counter() - t0
            for row, s in enumerate(cmd.seqs):
                s.tokens.append(sample_row(logits[row], s.temperature, s.top_p, s.generator))
                self.stats.generated_tokens += 1
            g = cmd.group
            r.pending[g] -= 1
            if r.pending[g]:
                continue
            for s in [s for s in r.running[g] if finished(s)]:
                r.running[g].remove(s)
                r.free[g].append(s.slot)
                yield s
            r.start(g)
            for idle in (h for h in range(self.groups) if h != g and not r.pending[h]):
                r.start(idle)  # a group left idle by an empty source takes work that arrived since
            yield from _drain(r.rejected)
        if occupancy is not None:
            occupancy.flush()

    def _submit(self, c: Command, submit: Callable[[Command], None]) -> None:
        """Start one forward pass and count it (decode passes: their time, rows, context and shape)."""
        t0 = time.perf_counter()
        submit(c)
        if not c.prefill:
            self.stats.decode_seconds += time.perf_counter() - t0
            self.stats.decode_rows += len(c.seqs)
            self.stats.decode_context += int(c.pos.sum()) + len(c.seqs)
            self.stats.decode_shapes.append((len(c.seqs), int(c.pos.max()) + 1))
        self.stats.prefill_passes += c.prefill
        self.stats.decode_passes += not c.prefill
        self.stats.prompt_tokens += sum(len(s.prompt_ids) for s in c.seqs) if c.prefill else 0


class _Rounds:
    """The slots of one `ContinuousBatcher.run`: free and running per group, passes in flight, rounds pending."""

    def __init__(self, batcher: ContinuousBatcher, source: SeqSource, submit: Callable[[Command], None]) -> None:
        self.b, self.source, self.submit = batcher, source, submit
        per_group = batcher.per_group
        self.free = [list(range(g * per_group, (g + 1) * per_group)) for g in range(batcher.groups)]
        self.running: list[list[SeqState]] = [[] for _ in range(batcher.groups)]
        self.in_flight: deque[Command] = deque()
        self.pending = [0] * batcher.groups  # commands of the group's current round not yet collected
        self.rejected: list[SeqState] = []  # arrived with an error: yielded without a slot

    def admit(self, g: int) -> list[SeqState]:
        """New sequences from the source into group g's free slots (lowest slot first)."""
        new: list[SeqState] = []
        free = self.free[g]
        free.sort(reverse=True)
        while free and (taken := self.source.take(len(free))):
            for s in taken:
                if s.error is not None:
                    self.rejected.append(s)
                    continue
                s.slot = free.pop()
                new.append(s)
        return new

    def start(self, g: int) -> None:
        """Start group g's next round: a decode pass for its running sequences, prefill passes for those admitted."""
        b = self.b
        cmds = [decode_command(g, self.running[g])] if self.running[g] else []
        new = self.admit(g)
        cmds += [prefill_command(g, new[i : i + b.prefill_mb]) for i in range(0, len(new), b.prefill_mb)]
        self.running[g].extend(new)
        if cmds and b.stats.occupancy is not None:  # recorded as the round starts, before its forward passes
            b.stats.occupancy.record(sum(len(r) for r in self.running))
        for c in cmds:
            b._submit(c, self.submit)
            self.in_flight.append(c)
        self.pending[g] = len(cmds)
        b.stats.rounds += bool(cmds)


def _drain(items: list[SeqState]) -> Iterator[SeqState]:
    """Yield and remove every item of `items`."""
    while items:
        yield items.pop(0)


def new_seq(
    index: int,
    prompt_ids: list[int],
    max_new: int,
    temperature: float,
    top_p: float,
    stop: tuple[str, ...],
    seed: int | None,
    custom_id: str,
) -> SeqState:
    """A SeqState with its own random generator (none when greedy)."""
    gen = job_generator(seed, custom_id) if temperature > 0 else None
    return SeqState(index, prompt_ids, max_new, temperature, top_p, stop, gen)
