"""`costserve cancel RUN` on a real running submit: the driver stops workers and broker, keeps every finished result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from costserve.store.runs import RunStore, runs_dir
from run_helpers import running, wait_for

pytestmark = pytest.mark.slow


def test_cancel_stops_a_running_submit_and_keeps_finished_results(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"c{i}", "prompt": f"story {i}", "max_tokens": 200, "temperature": 0}) + "\n"
                            for i in range(400)))
    out = tmp_path / "results.jsonl"
    driver = subprocess.Popen([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--model", str(tiny_llama_dir),
                               "--out", str(out), "--shard-size", "4", "--yes"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        wait_for(lambda: runs_dir().is_dir() and any(runs_dir().iterdir()), 120, "the run directory")
        (run_dir,) = runs_dir().iterdir()
        store = RunStore(run_dir)
        wait_for(lambda: store.results_done() >= 4, 240, "first results")
        result = cli.invoke(app, ["cancel", run_dir.name])
        assert result.exit_code == 0, result.output
        output = driver.communicate(timeout=120)[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 2 and "cancelled" in output, output
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    done = store.results_done()
    assert 4 <= len(kept) == done < 400  # every finished result kept, in input order, and the run really stopped early
    assert [r["custom_id"] for r in kept] == sorted((r["custom_id"] for r in kept), key=lambda c: int(c[1:]))
    ((_, _, _, _, up, down),) = store.fleet()
    assert down is not None and down >= up
    workers = [int(p) for (p,) in store.db.execute("SELECT detail FROM events WHERE kind = 'worker started'")]
    assert workers and not any(running(pid) for pid in workers)
    assert (run_dir / "report.html").is_file()
    again = cli.invoke(app, ["cancel", run_dir.name])
    assert again.exit_code == 0 and "already stopped" in again.output


def test_a_resumed_run_is_running_again_until_its_new_stretch_ends(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run stopped at its budget and resumed can be cancelled: only events since the last resume count."""
    from costserve.cli import app

    jobs = tmp_path / "j.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    store = RunStore.create(jobs, 1)
    assert store.ended() is None and not store.cancel_requested()
    store.event("cancel requested")
    store.event("stopped", "stopped at its budget: ...")
    assert store.ended() == "stopped" and store.cancel_requested()
    already = cli.invoke(app, ["cancel", store.id])
    assert already.exit_code == 0 and "already stopped" in already.output
    store.event("resumed", "0/1 jobs had results")
    assert store.ended() is None and not store.cancel_requested()  # the new stretch has neither
    cancelled = cli.invoke(app, ["cancel", store.id])  # no driver alive: cancel stops it itself
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output and "already" not in cancelled.output
    assert store.ended() == "stopped" and store.cancel_requested()
    store.event("resumed", "0/1 jobs had results")
    store.event("finished", "out.jsonl")
    assert store.ended() == "finished"
    again = cli.invoke(app, ["resume", store.id])
    assert again.exit_code == 0 and "already finished" in again.output


def test_a_run_has_one_driver_at_a_time(tmp_path: Path) -> None:
    """Two `resume`s at once cannot both drive a run: the driver's lock is taken atomically, and freed when it exits."""
    from costserve.errors import RunStateError

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    store = RunStore.create(jobs, 1)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom costserve.store.runs import RunStore\n"
                               "RunStore(sys.argv[1]).claim_driver()\nprint('held', flush=True)\ntime.sleep(60)", str(store.dir)],
                              stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    with pytest.raises(RunStateError, match=f"is being driven by another process \\(pid {holder.pid}\\)"):
        RunStore(store.dir).claim_driver()
    holder.kill()
    holder.wait()
    RunStore(store.dir).claim_driver()  # the kernel freed the lock of the killed driver
