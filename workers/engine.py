"""The inference engine: `Engine(replica).generate(jobs)` returns one Generation per job, in input order.

`Engine.serve(feed)` runs an open-ended feed instead (a worker's shards, workers/feed.py): jobs
are admitted while others decode, and each slot's KV cache holds the replica's longest
sequence (`Replica.max_seq_len`, else the model's context), so any job can take any free slot
(a longer one grows the cache once the replica drains); a job the model cannot fit fails alone.

Jobs are any objects with the fields of `costserve.jobs.Job` (custom_id, prompt or
messages, max_tokens, temperature, top_p, stop, seed). One stage runs in this process;
several stages run as one process each, hidden states passing over torch.distributed
(`workers/pipeline.py`), with this process holding the last stage and the scheduler.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from solver.plan import Job, Replica, ReplicaError
from workers.batching import BatchStats, Command, ContinuousBatcher, ListSource, SeqSource, SeqState, new_seq
from workers.cpu import available_cpus, widen_dtype
from workers.loader import build_stage, read_model_args
from workers.model import StageModel
from workers.model_source import resolve_model_dir
from workers.occupancy import Occupancy
from workers.prompts import encode_prompt
from workers.replica import torch_device


@dataclass
class Generation:
    """The engine's answer to one job; `error` is set (and text empty) when the job could not run."""

    index: int
    custom_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "error"
    chat: bool
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)
    finished: float = 0.0  # unix s when the engine gave it (workers/feed.py stamps it; 0 until then)


# tokens per KV-cache slot when the replica does not say (a replica file written by hand): every slot holds it at once,
# so the model's whole context would be too much (SmolLM2, 64 slots × 8,192 tokens in fp32: 24 GiB); a longer job grows it
DEFAULT_SLOT_TOKENS = 1024


class JobFeed(Protocol):
    """An open-ended supply of jobs for `Engine.serve`: `take` never blocks and returns (key, job) pairs; `wait`
    blocks until `take` has something (True) or the feed is closed and empty (False)."""

    def take(self, n: int) -> list[tuple[int, Job]]: ...

    def wait(self) -> bool: ...


class LocalPipeline:
    """All stages in this process, run one after another; results are ready at submit time."""

    def __init__(self, stages: list[StageModel]) -> None:
        self.stages = stages
        self._ready: list[Tensor] = []

    def setup(self, slots: int, max_seq: int, dtype: torch.dtype) -> None:
        for s in self.stages:
            s.setup_cache(slots, max_seq, dtype, device=_device_of(s))

    def submit(self, cmd: Command) -> None:
        x = cmd.tokens
        for s in self.stages:
            d = _device_of(s)
            x = s(x.to(d), cmd.slots.to(d), cmd.pos.to(d), cmd.last_index.to(d))
        self._ready.append(x.cpu())

    def collect(self) -> Tensor:
        return self._ready.pop(0)

    def close(self) -> None:
        self.stages = []

    def abort(self) -> None:
        self.close()


def _device_of(stage: StageModel) -> str:
    return str(stage.compute_device)


class Engine:
    """A loaded replica: tokenizer, stages (quantized per layer) and the continuous batcher."""

    def __init__(self, replica: Replica | None = None, model: str | Path | None = None, processes: bool | None = None, threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        if replica is not None and replica.engine != "costserve":
            raise ReplicaError(f"this replica runs on {replica.engine} (workers/vllm_engine.py), not costserve's engine")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model_dir = resolve_model_dir(model)
        self.args = read_model_args(self.model_dir)
        self.replica = replica or Replica.uniform(self.args.n_layers)
        self.replica.check_layers(self.args.n_layers)
        torch.set_num_threads(threads or min(torch.get_num_threads(), available_cpus()))  # never more than it is given
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.eos_ids = _eos_ids(self.model_dir, self.tokenizer)
        stages = self.replica.stages
        if processes is None:
            processes = len(stages) > 1
        if processes and len(stages) > 1:
            from workers.pipeline import ProcessPipeline

            per_stage = max(1, threads // len(stages)) if threads else None
            self.pipeline: LocalPipeline | ProcessPipeline = ProcessPipeline(self.model_dir, self.args, self.replica, per_stage)
        else:
            self.pipeline = LocalPipeline([build_stage(self.model_dir, self.args, s, torch_device(s)) for s in stages])
        self.groups = len(stages) if processes else 1
        self.stats = BatchStats()
        # fp32 replicas keep an fp32 KV cache (exact reference); lower precisions keep it in bf16 where bf16 is
        # native (CUDA, AMX), and in fp32 on CPUs that emulate bf16 (its attention matmuls would run ~10x slower)
        low = {widen_dtype(torch_device(s).split(":")[0]) for s in stages}
        self.kv_dtype = torch.float32 if set(self.replica.bits) == {32} or torch.float32 in low else torch.bfloat16

    # -- public API ---------------------------------------------------------------

    @property
    def slots(self) -> int:
        """Sequences the replica holds at once (KV-cache slots): pipeline groups × decode micro-batch."""
        return self.groups * self.replica.decode_micro_batch

    def generate(self, jobs: Iterable[Job]) -> list[Generation]:
        """Generate every job; results in input order."""
        return sorted(self.stream(jobs), key=lambda g: g.index)

    def stream(self, jobs: Iterable[Job]) -> Iterator[Generation]:
        """Generate every job, yielding each Generation as soon as it finishes (completion order; index = position).

        A closed list: the KV cache holds this call's longest job, and jobs are admitted longest first."""
        jobs = list(jobs)
        seqs = [self._seq(i, job) for i, job in enumerate(jobs)]
        runnable = [s for s in seqs if s.error is None]
        longest = max((len(s.prompt_ids) + s.max_new for s in runnable), default=0)
        yield from self._run(ListSource(seqs), {i: job for i, job in enumerate(jobs)}, longest, None)

    def serve(self, feed: JobFeed, occupancy: Occupancy | None = None) -> Iterator[Generation]:
        """Generate the jobs of an open-ended feed until it is closed and empty, yielding each Generation as it finishes
        (index = the job's key). Jobs are admitted in the feed's order whenever a slot is free; each slot's KV cache
        holds `seq_capacity` tokens. A job that needs more (the planner's estimate of the longest job was short) waits
        until the replica drains, the cache grows to hold it, and the feed goes on. `occupancy` records the sequences
        in flight per round."""
        jobs: dict[int, Job] = {}
        source = _SeqFeed(self, feed, jobs, self.seq_capacity)
        while True:
            yield from self._run(source, jobs, source.capacity, occupancy)
            need = source.blocked_need()
            if need is None:
                return
            source.capacity = min(self.args.max_position, 1 << (need - 1).bit_length())

    @property
    def seq_capacity(self) -> int:
        """Tokens (prompt + output) one slot of an open feed holds at first: the replica's max_seq_len (the planner's
        longest job), else DEFAULT_SLOT_TOKENS; at most the model's context. A longer job grows it (see serve)."""
        return min(self.replica.max_seq_len or DEFAULT_SLOT_TOKENS, self.args.max_position)

    def _seq(self, key: int, job: Job) -> SeqState:
        """The SeqState of a job; `error` set when its prompt leaves no room to generate in the model's context."""
        ids = self.encode(job)
        room = self.args.max_position - len(ids)
        if room < 1:
            seq = SeqState(key, ids, 0, 0.0, 1.0, (), None)
            seq.error = f"prompt is {len(ids)} tokens; the model's context is {self.args.max_position}"
            return seq
        return new_seq(key, ids, min(job.max_tokens, room), job.temperature, job.top_p, tuple(job.stop), job.seed, job.custom_id)

    def _run(self, source: SeqSource | list[SeqState], jobs: dict[int, Job], max_seq: int, occupancy: Occupancy | None) -> Iterator[Generation]:
        self.stats = BatchStats(occupancy=occupancy)
        per_group = self.replica.decode_micro_batch
        if max_seq > 0:
            self.pipeline.setup(self.groups * per_group, max_seq, self.kv_dtype)
        batcher = ContinuousBatcher(self.groups, per_group, self.replica.prefill_micro_batch, self.stats)
        for s in batcher.run(source, self.pipeline.submit, self.pipeline.collect, self._finished):
            job = jobs.pop(s.index)
            if s.error is not None:
                yield Generation(s.index, job.custom_id, "", len(s.prompt_ids), 0, "error", job.messages is not None, s.error)
                continue
            text = s.text if s.text is not None else self.tokenizer.decode(s.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            yield Generation(s.index, job.custom_id, text, len(s.prompt_ids), len(s.tokens), s.finish_reason or "length",
                             job.messages is not None, token_ids=s.tokens)

    def close(self) -> None:
        """Stop stage processes and free the model."""
        self.pipeline.close()

    def abort(self) -> None:
        """Drop a replica that failed mid-batch (a stage process died, a peer timed out) without waiting on it."""
        self.pipeline.abort()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------

    def encode(self, job: Job) -> list[int]:
        """Prompt token ids of a job (see encode_prompt)."""
        return encode_prompt(self.tokenizer, job)

    def _finished(self, s: SeqState) -> bool:
        if s.tokens[-1] in self.eos_ids:
            s.tokens.pop()
            s.finish_reason = "stop"
            return True
        if s.stop:
            text = self.tokenizer.decode(s.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            cut = min((i for i in (text.find(t) for t in s.stop) if i >= 0), default=-1)
            if cut >= 0:
                s.text, s.finish_reason = text[:cut], "stop"
                return True
        if len(s.tokens) >= s.max_new:
            s.finish_reason = "length"
            return True
        return False


class _SeqFeed:
    """A JobFeed seen as the batcher's SeqSource: each job taken is encoded (in the engine's thread) and remembered.

    A job longer than `capacity` stops admission: it stays first in line until the replica drained and the engine
    grew the cache (`blocked_need`)."""

    def __init__(self, engine: Engine, feed: JobFeed, jobs: dict[int, Job], capacity: int) -> None:
        self.engine, self.feed, self.jobs, self.capacity = engine, feed, jobs, capacity
        self.backlog: deque[SeqState] = deque()  # taken from the feed, not yet admitted

    def take(self, n: int) -> list[SeqState]:
        if len(self.backlog) < n:
            for key, job in self.feed.take(n - len(self.backlog)):
                self.jobs[key] = job
                self.backlog.append(self.engine._seq(key, job))  # an error only when the model's context is too short
        out: list[SeqState] = []
        while self.backlog and len(out) < n and self._fits(self.backlog[0]):
            out.append(self.backlog.popleft())
        return out

    def wait(self) -> bool:
        if self.backlog:
            return self._fits(self.backlog[0])  # False: the replica is drained, the cache must grow first
        return self.feed.wait()

    def blocked_need(self) -> int | None:
        """Tokens the first waiting job needs when it does not fit the cache, else None."""
        if self.backlog and not self._fits(self.backlog[0]):
            return len(self.backlog[0].prompt_ids) + self.backlog[0].max_new
        return None

    def _fits(self, s: SeqState) -> bool:
        return s.error is not None or len(s.prompt_ids) + s.max_new <= self.capacity


def _eos_ids(model_dir: Path, tokenizer: object) -> frozenset[int]:
    """Token ids that end a sequence: the config's and generation config's eos ids and the tokenizer's."""
    import json

    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        f = model_dir / name
        if f.is_file():
            eos = json.loads(f.read_text()).get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    tok_eos = getattr(tokenizer, "eos_token_id", None)
    if tok_eos is not None:
        ids.add(tok_eos)
    return frozenset(ids)
