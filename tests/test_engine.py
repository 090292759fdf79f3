"""The engine against transformers on the real SmolLM2, and its pipeline against itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine_fixtures import PROMPTS, JobStub
from workers.engine import Engine
from solver.plan import Replica

pytestmark = pytest.mark.slow
NEW_TOKENS = 20


def _jobs() -> list[JobStub]:
    return [JobStub(custom_id=f"p{i}", prompt=p, max_tokens=NEW_TOKENS) for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def fp32_generations(smollm2_dir: Path) -> list:
    with Engine(Replica.uniform(30, 32, decode_micro_batch=8), model=smollm2_dir) as engine:
        return engine.generate(_jobs())


def _first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def test_single_process_fp32_equals_transformers_generate(smollm2_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    with Engine(Replica.uniform(30, 32, decode_micro_batch=8), model=smollm2_dir) as engine:
        tok = engine.tokenizer
        ours = engine.generate(_jobs())
        ref_model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir))
        for job, gen in zip(_jobs(), ours):
            ids = torch.tensor([tok.encode(job.prompt)])
            ref = ref_model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
            if gen.finish_reason == "stop":  # ours drops the EOS token that ended it
                ref = ref[: ref.index(next(t for t in ref if t in engine.eos_ids))]
            diverge = _first_divergence(gen.token_ids, ref)
            if diverge is not None:
                # Only an exact tie between the two best logits may send greedy decoding apart.
                logits = ref_model(torch.tensor([tok.encode(job.prompt) + ref[:diverge]])).logits[0, -1]
                top2 = torch.topk(logits, 2).values
                assert top2[0] == top2[1], f"{job.custom_id}: tokens differ at {diverge} without a logit tie"
            assert gen.finish_reason in ("length", "stop")


@pytest.mark.parametrize("stages", [2, 3])
def test_pipeline_processes_equal_single_process(smollm2_dir: Path, stages: int, fp32_generations: list) -> None:
    single = fp32_generations
    replica = Replica.uniform(30, 32, stages=stages, decode_micro_batch=3)
    with Engine(replica, model=smollm2_dir) as engine:
        assert len(engine.pipeline.children) == stages - 1  # real stage processes
        piped = engine.generate(_jobs())
    assert [g.custom_id for g in piped] == [g.custom_id for g in single]
    assert [g.text for g in piped] == [g.text for g in single]
    assert [g.token_ids for g in piped] == [g.token_ids for g in single]


def test_mixed_precision_replica_is_coherent(smollm2_dir: Path) -> None:
    bits = [16] * 10 + [8] * 10 + [4] * 10
    replica = Replica.uniform(30, bits, stages=2, decode_micro_batch=4)
    jobs = [JobStub(custom_id="paris", prompt="The capital of France is", max_tokens=8),
            JobStub(custom_id="chat", messages=(("user", "What is the capital of France?"),), max_tokens=24)]
    with Engine(replica, model=smollm2_dir) as engine:
        out = engine.generate(jobs)
    assert "Paris" in out[0].text
    assert "Paris" in out[1].text and out[1].chat
