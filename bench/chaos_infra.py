"""The faults of issue 35 for `bench.chaos`: the run's own infrastructure. The driver SIGKILLed at named points of its
preparation (costserve/run/kill_points.py), the broker SIGKILLed mid-run (embedded, and an external redis-server), and
the driver signalled (TERM, INT, HUP); each followed by `costserve resume` where the run stopped.

Each scenario is `(home, jobs, out) -> run_dir`, like those in bench/chaos.py, and notes in FAULT_AT when it injected
its fault. Every run must end by itself; a stop prints its last line here, so the table's reader sees it was one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.chaos_faults import FAULT_AT, Runner, first_int, free_port, start_redis
from costserve.store.runs import results_rows

Scenario = Callable[[Path, Path, Path], Path]


def _last_line(proc: subprocess.Popen[bytes]) -> str:
    """Wait for `proc`; its exit code and last line of output, for the bench's log."""
    output = proc.communicate()[0].decode(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    return f"exit {proc.returncode}: {lines[-1] if lines else ''}"


def _resume(costserve: Runner, home: Path, run: Path, *extra: str) -> None:
    print(f"  resume: {_last_line(costserve(home, 'resume', run.name, *extra))[:160]}", flush=True)


def killed_while_preparing(costserve: Runner, submit: Runner, run_dir: Callable[[Path], Path], point: str) -> Scenario:
    """The driver SIGKILLs itself at `point` of its preparation ($COSTSERVE_KILL_AT), then `costserve resume`."""

    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        os.environ["COSTSERVE_KILL_AT"] = point
        try:
            driver = submit(home, jobs, out)
        finally:
            os.environ.pop("COSTSERVE_KILL_AT")
        print(f"  driver at {point!r}: {_last_line(driver)[:120]}", flush=True)
        FAULT_AT[home] = time.monotonic()
        run = run_dir(home)
        _resume(costserve, home, run)
        return run

    return scenario


def broker_killed(submit: Runner, run_dir: Callable[[Path], Path], wait: Callable[..., None]) -> Scenario:
    """SIGKILL of the run's embedded redis-server after its first results; the driver restarts it by itself."""

    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        driver = submit(home, jobs, out)
        run = run_dir(home)
        wait(lambda: results_rows(run, "results") >= 8)
        pid = first_int(run / "run.sqlite", "SELECT detail FROM events WHERE kind = 'broker pid' ORDER BY rowid DESC")
        FAULT_AT[home] = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        print(f"  driver: {_last_line(driver)[:160]}", flush=True)
        return run

    return scenario


def external_broker_killed(
    costserve: Runner, submit: Runner, run_dir: Callable[[Path], Path], wait: Callable[..., None]
) -> Scenario:
    """SIGKILL of an external redis-server (`--broker`) after the first results: the run waits
    $COSTSERVE_BROKER_GIVE_UP_S (30 s here) and stops in one line; the server is started again, then `resume`."""

    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        with tempfile.TemporaryDirectory(prefix="cs-broker-") as folder:
            server = start_redis(port, Path(folder))
            os.environ["COSTSERVE_BROKER_GIVE_UP_S"] = "30"
            try:
                driver = submit(home, jobs, out, "--broker", url)
                run = run_dir(home)
                wait(lambda: results_rows(run, "results") >= 8)
                FAULT_AT[home] = time.monotonic()
                server.kill()
                server.wait()
                print(f"  driver: {_last_line(driver)[:200]}", flush=True)
                server = start_redis(port, Path(folder))  # back, empty: the run store keeps what is done
                _resume(costserve, home, run, "--broker", url)
            finally:
                os.environ.pop("COSTSERVE_BROKER_GIVE_UP_S", None)
                server.kill()
                server.wait()
        return run

    return scenario


def driver_signalled(
    costserve: Runner, submit: Runner, run_dir: Callable[[Path], Path], wait: Callable[..., None], sig: signal.Signals
) -> Scenario:
    """`sig` to the driver after its first results: it stops in one line (printed), then `costserve resume`."""

    def scenario(home: Path, jobs: Path, out: Path) -> Path:
        driver = submit(home, jobs, out)
        run = run_dir(home)
        wait(lambda: results_rows(run, "results") >= 8)
        FAULT_AT[home] = time.monotonic()
        driver.send_signal(sig)
        print(f"  driver: {_last_line(driver)[:200]}", flush=True)
        _resume(costserve, home, run)
        return run

    return scenario


def scenarios(costserve: Runner, submit: Runner, run_dir: Callable[[Path], Path], wait: Callable[..., None]) -> dict[str, Scenario]:
    """The rows of issue 35, by name."""
    rows = {
        f"driver SIGKILL at '{point}', then resume": killed_while_preparing(costserve, submit, run_dir, point)
        for point in ("run recorded", "shard written#1", "queued")
    }
    rows["embedded broker SIGKILL mid-run"] = broker_killed(submit, run_dir, wait)
    rows["external broker SIGKILL, then resume"] = external_broker_killed(costserve, submit, run_dir, wait)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        rows[f"driver {sig.name}, then resume"] = driver_signalled(costserve, submit, run_dir, wait, sig)
    return rows
