"""Engine behaviour on a tiny random Llama: quantized layers, continuous batching, sampling, stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from engine_fixtures import JobStub
from workers.engine import Engine
from workers.quantize import Bf16Linear, Int4Linear, Int8Linear, parameter_bytes, quantize_block
from workers.replica import ReplicaError, Replica, read_replica
from workers.results import batch_output_line


@pytest.mark.parametrize("rows", [1, 4, 8, 9, 64])
@pytest.mark.parametrize(("cls", "tolerance"), [(Bf16Linear, 0.01), (Int8Linear, 0.02), (Int4Linear, 0.15)])
def test_quantized_linear_is_close_to_fp32(cls: type, tolerance: float, rows: int) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(256, 384, bias=False)
    x = torch.randn(rows, 256)
    ref = linear(x)
    err = (cls(linear)(x) - ref).norm() / ref.norm()
    assert err < tolerance, f"{cls.__name__} relative error {err:.4f} at {rows} rows"
    assert err > 0 or cls is Bf16Linear  # really quantized, not a copy


def test_parameter_bytes_drop_with_bits() -> None:
    from workers.model import Block, ModelArgs

    args = ModelArgs(vocab_size=10, dim=256, n_layers=1, n_heads=4, n_kv_heads=2, head_dim=64,
                     intermediate_size=512, norm_eps=1e-5, rope_theta=1e4, tie_embeddings=True, max_position=64)
    sizes = {}
    for bits in (32, 16, 8, 4):
        torch.manual_seed(0)
        block = Block(args)
        quantize_block(block, bits)
        sizes[bits] = parameter_bytes(block)
    linear_params = 256 * (256 + 2 * 128) + 256 * 256 + 256 * 1024 + 512 * 256
    assert sizes[32] == 4 * linear_params + 2 * 4 * 256  # + two fp32 norms
    assert sizes[16] / sizes[32] == pytest.approx(0.5, abs=0.01)
    assert sizes[8] / sizes[32] == pytest.approx(0.25, abs=0.02)  # int8 + one bf16 scale per row
    assert sizes[4] / sizes[32] == pytest.approx(0.125 + 2 * 2 / 32 / 4, abs=0.02)  # + bf16 scale, zero per 32


def _tiny_engine(tiny_llama_dir: Path, slots: int = 4, **kw: object) -> Engine:
    engine = Engine(Replica.uniform(4, 32, decode_micro_batch=slots, **kw), model=tiny_llama_dir)
    return engine


def test_continuous_batching_steps_near_ideal(tiny_llama_dir: Path) -> None:
    import random

    rng = random.Random(7)
    jobs = [JobStub(custom_id=f"j{i}", prompt=f"job {i} " * rng.randint(1, 6), max_tokens=rng.randint(8, 256)) for i in range(60)]
    with _tiny_engine(tiny_llama_dir, slots=8) as engine:
        engine.eos_ids = frozenset()  # random weights: run every job to its max_tokens
        out = engine.generate(jobs)
        stats = engine.stats
    assert [g.completion_tokens for g in out] == [j.max_tokens for j in jobs]
    assert all(g.finish_reason == "length" for g in out)
    assert stats.generated_tokens == sum(j.max_tokens for j in jobs)
    ideal = sum(j.max_tokens for j in jobs) / 8
    assert stats.rounds <= 1.15 * ideal, f"{stats.rounds} rounds vs ideal {ideal:.0f}"
    # a static batcher (8 at a time, each batch as long as its longest job) would need far more
    static = sum(max(j.max_tokens for j in jobs[i : i + 8]) for i in range(0, len(jobs), 8))
    assert stats.rounds < 0.8 * static


def test_seeded_sampling_is_reproducible(tiny_llama_dir: Path) -> None:
    jobs = [JobStub(custom_id="a", prompt="Hello", max_tokens=12, temperature=1.0, seed=3),
            JobStub(custom_id="b", prompt="Hello", max_tokens=12, temperature=1.0, seed=4),
            JobStub(custom_id="c", prompt="Hello", max_tokens=12, temperature=1.0, top_p=0.5, seed=3)]
    with _tiny_engine(tiny_llama_dir) as engine:
        engine.eos_ids = frozenset()
        first = [g.token_ids for g in engine.generate(jobs)]
        again = [g.token_ids for g in engine.generate(list(reversed(jobs)))][::-1]
    assert first == again  # same seed, same tokens, whatever the batch order
    assert first[0] != first[1]


def test_stop_strings_eos_and_context_overflow(tiny_llama_dir: Path) -> None:
    with _tiny_engine(tiny_llama_dir) as engine:
        engine.eos_ids = frozenset()
        free = engine.generate([JobStub(custom_id="x", prompt="abc", max_tokens=30)])[0]
        stop = free.text[5:8]
        assert stop.strip()
        jobs = [JobStub(custom_id="s", prompt="abc", max_tokens=30, stop=(stop,)),
                JobStub(custom_id="long", prompt="word " * 3000, max_tokens=5)]
        cut, too_long = engine.generate(jobs)
        assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.find(stop)]
        assert too_long.finish_reason == "error" and "context" in (too_long.error or "")
        k = next(i for i, t in enumerate(free.token_ids) if i and t not in free.token_ids[:i])
        engine.eos_ids = frozenset({free.token_ids[k]})  # that token now ends the sequence
        ended = engine.generate([JobStub(custom_id="e", prompt="abc", max_tokens=30)])[0]
        assert ended.finish_reason == "stop" and ended.token_ids == free.token_ids[:k]


def test_batch_output_lines_follow_openai_format(tiny_llama_dir: Path) -> None:
    with _tiny_engine(tiny_llama_dir) as engine:
        chat, plain = engine.generate([JobStub(custom_id="c", messages=(("user", "Hi"),), max_tokens=4),
                                       JobStub(custom_id="p", prompt="Hi", max_tokens=4)])
    c, p = batch_output_line(chat, "tiny", created=0), batch_output_line(plain, "tiny", created=0)
    assert c["custom_id"] == "c" and c["error"] is None
    assert c["response"]["body"]["object"] == "chat.completion"
    assert c["response"]["body"]["choices"][0]["message"]["content"] == chat.text
    assert p["response"]["body"]["choices"][0]["text"] == plain.text
    assert p["response"]["body"]["usage"]["total_tokens"] == plain.prompt_tokens + plain.completion_tokens
    assert chat.prompt_tokens > plain.prompt_tokens  # the chat template wraps the message


def test_replica_reads_the_planners_json(tmp_path: Path) -> None:
    from solver.plan import HostLayer, Replica, Stage

    planned = Replica(tp=1, stages=[Stage(device="L4", first_layer=0, last_layer=1, bits=[16, 8]),
                                    Stage(device="L4", first_layer=2, last_layer=3, bits=[4, 4],
                                          host_layers=[HostLayer(layer=3, prefill="stream", decode="cpu")])],
                      prefill_micro_batch=2, decode_micro_batch=8)
    path = tmp_path / "r.json"
    path.write_text(planned.model_dump_json())
    spec = read_replica(path)
    assert spec.bits == [16, 8, 4, 4] and spec.decode_micro_batch == 8
    assert spec.stages[0].host_modes() == {} and spec.stages[1].host_modes() == {3: ("stream", "cpu")}
    spec.check_layers(4)
    with pytest.raises(ReplicaError, match="model has 30 layers"):
        spec.check_layers(30)
    path.write_text(json.dumps({"stages": [{"first_layer": 0, "last_layer": 1, "bits": [3, 8]}]}))
    with pytest.raises(ReplicaError, match=r"r.json: stages.0: .*bits \[3\] not supported"):
        read_replica(path)
