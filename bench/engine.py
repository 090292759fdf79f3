"""Engine throughput: output tokens/s and peak RSS on 256 varied prompts (max_tokens 16-128).

Variants, each in a fresh process so peak RSS is its own:
  (a) transformers `generate`, one prompt at a time (fp32)
  (b) transformers `generate`, left-padded batches of 16 (fp32)
  (c) costserve fp32, (d) costserve int8, (e) costserve 2-stage int8 (two processes),
  (m) the demo's mixed 16/8/4-bit 2-stage replica (examples/replica-mixed.json; like (e), its
      decode micro-batch is --slots ÷ stages, so every costserve variant decodes up to --slots sequences)
  (v) vLLM's CPU build, fp32, max_num_seqs = --slots (workers/vllm_engine.py; runs in .venv-vllm,
      which `make test` builds; eager mode unless --vllm-compile: its compile takes minutes)
All greedy, same token ids, each job stops at EOS or its max_tokens; only tokens a job
keeps are counted (padding and tokens past a job's end in (b) are not). (a) is slow
(~15 tokens/s here), so by default it runs on a sample of the prompts (`--baseline-sample`;
tokens/s of one-at-a-time generation does not depend on which prompts run together).

    python -m bench.engine [--prompts 256] [--baseline-sample 32] [--slots 64] [--profile cpu.json]

With --profile (from `costserve profile`), the costserve rows also show the decode
tokens/s the profile-fed cost model predicts (`solver/device_profile.py`) at the run's
mean decode batch and context, and the error against the measured decode phase.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "a": "transformers generate, 1 at a time",
    "b": "transformers generate, batches of 16",
    "c": "costserve fp32",
    "d": "costserve int8",
    "e": "costserve 2-stage int8",
    "m": "costserve mixed (examples/replica-mixed.json)",
    "v": "vLLM-CPU fp32",
}
# The checks each run prints (issue 21: a kernel-path change once made int8 5x slower than fp32 unnoticed; issue 15:
# on a CPU costserve's engine must stay ahead of vLLM's CPU build).
CHECKS = (("d", "c", 1.0), ("d", "a", 4.0), ("d", "b", 1.5), ("m", "c", 1.0), ("c", "v", 1.0), ("d", "v", 1.0))
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def bench_jobs(n: int, seed: int = 0) -> list[Any]:
    """n jobs from examples/ (chat and completion prompts), max_tokens uniform in 16..128, greedy."""
    from dataclasses import replace

    from costserve.jobs.reader import read_jobs
    from costserve.jobs.schema import Job

    base = [j for f in ("jobs.jsonl", "plain.jsonl") for j in read_jobs(REPO / "examples" / f, 64) if isinstance(j, Job)]
    rng = random.Random(seed)
    return [replace(base[i % len(base)], custom_id=f"b{i}", max_tokens=rng.randint(16, 128), temperature=0.0, stop=())
            for i in range(n)]


def run_transformers(model_dir: Path, jobs: list[Any], batch: int) -> tuple[int, float]:
    """Tokens kept and seconds for transformers generate over `jobs` in batches of `batch`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.engine import _eos_ids
    from workers.prompts import encode_prompt

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    eos = _eos_ids(model_dir, tok)
    kept, t0 = 0, time.perf_counter()
    for i in range(0, len(jobs), batch):
        chunk = jobs[i : i + batch]
        ids = [encode_prompt(tok, j) for j in chunk]
        width = max(map(len, ids))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 2
        x = torch.tensor([[pad] * (width - len(r)) + r for r in ids])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])
        with torch.inference_mode():
            out = model.generate(x, attention_mask=mask, max_new_tokens=max(j.max_tokens for j in chunk), do_sample=False,
                                 pad_token_id=pad, eos_token_id=sorted(eos))
        for row, job in zip(out[:, width:].tolist(), chunk):
            n = next((k for k, t in enumerate(row) if t in eos), len(row))
            kept += min(n, job.max_tokens)
    return kept, time.perf_counter() - t0


def run_costserve(model_dir: Path, jobs: list[Any], replica: Any) -> tuple[int, float, dict[str, float]]:
    """Tokens generated, seconds (load time excluded) and decode-phase figures for the costserve engine."""
    from workers.engine import Engine

    with Engine(replica, model=model_dir) as engine:
        t0 = time.perf_counter()
        gens = engine.generate(jobs)
        secs, st = time.perf_counter() - t0, engine.stats
        decode = {"decode_tokens_per_s": st.decode_rows / st.decode_seconds, "mean_batch": st.decode_rows / st.decode_passes,
                  "mean_context": st.decode_context / st.decode_rows, "bits": min(replica.bits), "decode_shapes": st.decode_shapes}
        return sum(g.completion_tokens for g in gens), secs, decode


def run_vllm(model_dir: Path, jobs: list[Any], slots: int, compile_: bool) -> tuple[int, float]:
    """Tokens generated and seconds (engine start excluded) for vLLM-CPU at fp32, `slots` sequences at once."""
    import os

    from solver.plan import Replica, Stage, VllmSettings
    from workers.vllm_engine import VllmEngine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB
    settings = VllmSettings(dtype="float32", max_num_seqs=slots, max_model_len=2048, enforce_eager=not compile_)
    replica = Replica(engine="vllm", stages=[Stage(first_layer=0, last_layer=29, bits=[16] * 30)], vllm=settings)
    with VllmEngine(replica, model_dir) as engine:
        t0 = time.perf_counter()
        gens = list(engine.stream(jobs))
        return sum(g.completion_tokens for g in gens), time.perf_counter() - t0


def child(variant: str, model_dir: Path, n: int, sample: int, slots: int, compile_: bool = False) -> None:
    import torch

    torch.set_num_threads(2)
    jobs = bench_jobs(n)
    decode: dict[str, float] = {}
    if variant == "v":
        tokens, secs = run_vllm(model_dir, jobs, slots, compile_)
    elif variant == "a":
        tokens, secs = run_transformers(model_dir, jobs[:sample], 1)
    elif variant == "b":
        tokens, secs = run_transformers(model_dir, jobs, 16)
    else:
        from solver.plan import Replica

        if variant == "m":  # the example's stages and bits at the same decode slots as (c), (d) and (e)
            replica = Replica.model_validate_json((REPO / "examples" / "replica-mixed.json").read_text())
            replica = replica.model_copy(update={"decode_micro_batch": slots // len(replica.stages)})
        else:
            bits, stages = {"c": (32, 1), "d": (8, 1), "e": (8, 2)}[variant]
            replica = Replica.uniform(30, bits, stages=stages, decode_micro_batch=slots // stages, prefill_micro_batch=8)
        tokens, secs, decode = run_costserve(model_dir, jobs, replica)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"tokens": tokens, "seconds": secs, "peak_rss_mib": rss / 1024, **decode}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--baseline-sample", type=int, default=32, help="prompts for variant (a)")
    p.add_argument("--slots", type=int, default=64, help="decode batch slots of the costserve variants")
    p.add_argument("--variants", default="abcdem", help="letters of the variants to run, in order ((v) needs .venv-vllm)")
    p.add_argument("--profile", type=Path, help="device profile from `costserve profile`: adds predicted decode tokens/s")
    p.add_argument("--vllm-python", type=Path, default=VLLM_PYTHON, help="the Python of an environment with vLLM (variant v)")
    p.add_argument("--vllm-compile", action="store_true", help="variant (v) with vLLM's compile (minutes to start)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child, a.model_dir, a.prompts, a.baseline_sample, a.slots, a.vllm_compile)
        return
    from workers.cpu import prefer_passive_omp

    prefer_passive_omp()  # as `costserve` does for its workers; the children inherit it

    import pandas as pd

    from workers.model_source import resolve_model_dir

    model_dir = resolve_model_dir(None)
    rows = []
    for v in a.variants:
        python = str(a.vllm_python) if v == "v" else sys.executable
        if v == "v" and not a.vllm_python.exists():
            sys.exit(f"variant (v) needs vLLM: {a.vllm_python} is missing (`make install-vllm` builds .venv-vllm)")
        cmd = [python, "-m", "bench.engine", "--child", v, "--model-dir", str(model_dir), "--prompts", str(a.prompts),
               "--baseline-sample", str(a.baseline_sample), "--slots", str(a.slots)] + (["--vllm-compile"] * a.vllm_compile)
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        prompts = a.baseline_sample if v == "a" else a.prompts
        rows.append({"variant": f"({v}) {VARIANTS[v]}", "prompts": prompts, "tokens": r["tokens"], "seconds": round(r["seconds"], 1),
                     "tokens/s": r["tokens"] / r["seconds"], "peak RSS MiB": round(r["peak_rss_mib"])})
        if "decode_tokens_per_s" in r:
            rows[-1]["decode tok/s"] = r["decode_tokens_per_s"]
            rows[-1]["mean decode batch"] = r["mean_batch"]
            if a.profile and v in "cd":  # the profile predicts one process; (e) overlaps two
                from solver.device_profile import decode_run_tokens_per_s, load_device_profile

                # priced pass by pass: each decode pass at its rows and the context its attention spans
                pred = decode_run_tokens_per_s(load_device_profile(a.profile), [int(r["bits"])] * 30, r["decode_shapes"])
                rows[-1]["predicted decode tok/s"] = pred
                rows[-1]["prediction error %"] = (pred / r["decode_tokens_per_s"] - 1) * 100
        print(f"done {rows[-1]['variant']}: {rows[-1]['tokens/s']:.1f} tokens/s", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    by = dict(zip(a.variants, df["tokens/s"]))
    if "a" in by:
        df["vs (a)"] = df["tokens/s"] / by["a"]
    if "b" in by:
        df["vs (b)"] = df["tokens/s"] / by["b"]
    print(df.round(2).to_string(index=False))
    _print_checks(by)


def _print_checks(by: dict[str, float]) -> None:
    """One line per target whose two variants ran: the ratio, the target, ok or BELOW; and the conditions."""
    import os

    from workers.cpu import available_cpus, matmul_dtype

    for v, base, target in CHECKS:
        if v in by and base in by:
            ratio = by[v] / by[base]
            print(f"check ({v}) / ({base}) = {ratio:.2f}x, target >= {target:g}x: {'ok' if ratio >= target else 'BELOW'}")
    print(f"conditions: load average {os.getloadavg()[0]:.2f}, {available_cpus()} CPUs given, "
          f"quantized matmuls widen to {matmul_dtype()} (workers/cpu.py)")


if __name__ == "__main__":
    main()
