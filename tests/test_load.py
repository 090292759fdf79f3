"""Load: 5,000 short jobs in 100 shards through the embedded Redis with 2 local workers; nothing lost or duplicated,
memory bounded. The shard window refills ~100 times; batches of 10^5-10^6 jobs are measured by `python -m bench.scale`
(tests assert behaviour, benches measure scale)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costserve.store.runs import RunStore, runs_dir

pytestmark = pytest.mark.slow
JOBS = 5_000


def _vm_hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def test_five_thousand_jobs_two_workers(tmp_path: Path, tiny_llama_dir: Path) -> None:
    import redis

    jobs = tmp_path / "jobs.jsonl"
    with jobs.open("w") as f:
        for i in range(JOBS):
            f.write(json.dumps({"id": f"L{i:05d}", "prompt": f"n {i}", "max_tokens": 1, "temperature": 0}) + "\n")
    out = tmp_path / "out.jsonl"
    driver = subprocess.Popen([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--model", str(tiny_llama_dir),
                               "--out", str(out), "--workers", "2", "--shard-size", "50", "--yes"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    driver_peak = broker_peak = 0.0
    client = None
    try:
        while driver.poll() is None:
            driver_peak = max(driver_peak, _vm_hwm_mib(driver.pid) or 0.0)
            if client is None and runs_dir().is_dir():
                for run_dir in runs_dir().iterdir():
                    row = RunStore(run_dir).db.execute("SELECT detail FROM events WHERE kind = 'broker'").fetchone()
                    if row:
                        client = redis.Redis(unix_socket_path=row[0].removeprefix("redis+socket://"))
            if client is not None:
                try:
                    broker_peak = max(broker_peak, client.info("memory")["used_memory_peak"] / 2**20)
                except redis.exceptions.ConnectionError:
                    pass  # the broker stops at the end of the run
            time.sleep(0.5)
        output = driver.communicate()[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-3000:]
    ids = [json.loads(line)["custom_id"] for line in out.open()]
    assert ids == [f"L{i:05d}" for i in range(JOBS)]  # none lost, none duplicated, input order
    assert client is not None and 0 < broker_peak < 64, broker_peak  # shards are references, sent a window at a time
    assert 0 < driver_peak < 1024, driver_peak  # the driver streams the job file; it never holds all jobs
