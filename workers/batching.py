"""Iteration-level (continuous) batching over the KV-cache slots of a replica.

Slots are split into groups, one per pipeline micro-batch (a single group when there is one
stage). A *round* of a group produces one token for every sequence in it: a decode
command for the sequences already running plus prefill commands (at most
`prefill_micro_batch` prompts each) for the jobs admitted into its free slots. When a
sequence finishes (EOS, a stop string, its token limit) its slot is refilled at the
group's next round, so no batch waits for its longest member. Waiting jobs are admitted
longest-`max_tokens` first, which keeps the tail of the batch short.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

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

    @property
    def ideal_rounds(self) -> float:
        """Rounds a perfect packing would need: generated tokens / slots."""
        return self.generated_tokens / max(self.slots, 1)


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
        seqs: Sequence[SeqState],
        submit: Callable[[Command], None],
        collect: Callable[[], Tensor],
        finished: Callable[[SeqState], bool],
    ) -> Iterator[SeqState]:
        """Generate every sequence; yield each as it finishes (completion order)."""
        waiting = deque(sorted(seqs, key=lambda s: -s.max_new))
        free = [list(range(g * self.per_group, (g + 1) * self.per_group)) for g in range(self.groups)]
        running: list[list[SeqState]] = [[] for _ in range(self.groups)]
        in_flight: deque[Command] = deque()
        pending = [0] * self.groups  # commands of the group's current round not yet collected

        def start_round(g: int) -> None:
            cmds = [decode_command(g, running[g])] if running[g] else []
            new: list[SeqState] = []
            free[g].sort(reverse=True)
            while waiting and free[g]:
                s = waiting.popleft()
                s.slot = free[g].pop()  # lowest free slot first
                new.append(s)
            cmds += [prefill_command(g, new[i : i + self.prefill_mb]) for i in range(0, len(new), self.prefill_mb)]
            running[g].extend(new)
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

        for g in range(self.groups):
            start_round(g)
        while in_flight:
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


def new_seq(index: int, prompt_ids: list[int], max_new: int, temperature: float, top_p: float, stop: tuple[str, ...], seed: int | None, custom_id: str) -> SeqState:
    """A SeqState with its own random generator (none when greedy)."""
    gen = job_generator(seed, custom_id) if temperature > 0 else None
    return SeqState(index, prompt_ids, max_new, temperature, top_p, stop, gen)
