"""Faults of a run's own infrastructure, injected for real: the driver killed at named points of its preparation, the
broker SIGKILLed mid-run (embedded and external), the driver signalled (TERM, INT, HUP).

Each run must end by itself, in one line where it stops, and `costserve resume` must bring every custom_id back
exactly once. A random-weight 4-layer Llama serves (the model does not matter here).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from run_helpers import JOBS, check_results, job_file, running, start_submit, submit, the_run, wait_for

from conftest import redis_server_binary
from costserve.store.run_state import Event, RunState
from costserve.store.runs import results_rows

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["run recorded", "shard written#3", "queued"])
def test_a_driver_killed_while_preparing_is_finished_by_resume(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    from costserve.cli import app

    jobs, ids = job_file(tmp_path)
    out = tmp_path / "results.jsonl"
    monkeypatch.setenv("COSTSERVE_KILL_AT", point)  # the driver SIGKILLs itself there (costserve/run/kill_points.py)
    driver = submit(jobs, tiny_llama_dir, out)
    driver.communicate(timeout=300)
    assert driver.returncode == -signal.SIGKILL
    monkeypatch.delenv("COSTSERVE_KILL_AT")
    store = the_run()
    assert len(store.shards()) == {"run recorded": 0, "shard written#3": 3, "queued": JOBS // 4}[point]
    assert store.state() is RunState.INTERRUPTED
    status = cli.invoke(app, ["status", store.id])
    assert status.exit_code == 0 and "interrupted" in status.output and f"costserve resume {store.id}" in status.output
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 0, result.output
    check_results(out, ids)
    assert len(store.shards()) == JOBS // 4 and store.state() is RunState.FINISHED
    assert ("preparation was cut short" in result.output) == (point != "queued")


def test_the_embedded_broker_killed_mid_run_is_restarted_and_the_run_finishes(tmp_path: Path, tiny_llama_dir: Path) -> None:
    run = start_submit(tmp_path, tiny_llama_dir, 4)
    (broker,) = [int(pid) for pid in run.store.events(Event.BROKER_PID)]
    os.kill(broker, signal.SIGKILL)
    output = run.finish(600)
    assert run.driver.returncode == 0, output
    check_results(run.out, run.ids)
    lost, back = run.store.events(Event.BROKER_LOST), run.store.events(Event.BROKER_BACK)
    assert len(lost) == 1 and f"pid {broker}" in lost[0] and "killed by SIGKILL" in lost[0]
    assert len(back) == 1 and "restarted" in back[0]
    assert "restarting it with the workers" in output and "Traceback" not in output
    assert not running(broker) and len(run.store.events(Event.BROKER_PID)) == 2


def _external_redis(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    import redis

    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _answers(redis.Redis(host="127.0.0.1", port=port)), 20, "redis-server")
    return proc


def _answers(client) -> bool:  # type: ignore[no-untyped-def]
    import redis

    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def test_an_external_broker_that_dies_stops_the_run_in_one_resumable_line(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from costserve.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    server = _external_redis(port, tmp_path)
    monkeypatch.setenv("COSTSERVE_BROKER_GIVE_UP_S", "8")
    try:
        run = start_submit(tmp_path, tiny_llama_dir, 4, "--broker", url)
        server.kill()  # SIGKILL
        server.wait()
        output = run.finish(300)
        assert run.driver.returncode == 2, output
        last = [line for line in output.splitlines() if line.strip()][-1]
        assert "has not answered for" in last and f"costserve resume {run.store.id}" in last, output
        assert "Traceback" not in output
        assert run.store.state() is RunState.STOPPED and run.store.stop_reason() == "broker gone"
        server = _external_redis(port, tmp_path)  # back, empty: the run store is the record of what is done
        result = cli.invoke(app, ["resume", run.store.id, "--broker", url])
        assert result.exit_code == 0, result.output
        check_results(run.out, run.ids)
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signalled_driver_stops_in_one_line_and_resume_finishes(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                                  sig: signal.Signals) -> None:
    from costserve.cli import app

    run = start_submit(tmp_path, tiny_llama_dir, 4)
    run.driver.send_signal(sig)
    output = run.finish(120)
    assert run.driver.returncode == 128 + sig, output
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert f"stopped by {sig.name}" in last and f"`costserve resume {run.store.id}` continues it" in last, output
    assert "Traceback" not in output
    store = run.store
    assert store.state() is RunState.STOPPED and store.stop_reason() == "signal"
    assert all(row.down is not None for row in store.fleet())  # nothing is left billed as up
    (worker,) = [int(pid) for pid in store.events(Event.WORKER_STARTED)]
    assert not running(worker)
    status = cli.invoke(app, ["status", store.id])
    assert "stopped (signal)" in status.output and "0 instance(s) running" in status.output
    assert f"`costserve resume {store.id}` continues it" in status.output
    assert results_rows(store.dir, "results") < JOBS
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 0, result.output
    check_results(run.out, run.ids)


def test_resume_refuses_to_prepare_again_from_a_job_file_that_changed(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from costserve.cli import app

    jobs, _ = job_file(tmp_path)
    monkeypatch.setenv("COSTSERVE_KILL_AT", "run recorded")
    submit(jobs, tiny_llama_dir, tmp_path / "results.jsonl").communicate(timeout=300)
    monkeypatch.delenv("COSTSERVE_KILL_AT")
    jobs.write_text(jobs.read_text().replace("tell me", "TELL ME"))  # same count, other jobs
    store = the_run()
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 2 and "changed since the run was created" in result.output and "submit it again" in result.output
    assert store.shards() == []  # nothing was written from the changed file
