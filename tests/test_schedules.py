"""Schedules: stored by `schedule add`, listed with their next fire time, and fired by Celery beat's own schedule API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from costserve.schedule.beat import FIRE_TASK, SCHEDULER_QUEUE, StoredScheduler, make_scheduler_app
from costserve.schedule.store import load_schedules, next_fire, schedules_path

UTC = timezone.utc


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def embedded_model(costserve_home: Path, smollm2_dir: Path) -> None:
    """The embedded model as a home has it once converted (the session's conversion, linked in): `schedule add` plans
    a local run of it."""
    (costserve_home / "models").mkdir(parents=True, exist_ok=True)
    (costserve_home / "models" / "SmolLM2-135M").symlink_to(smollm2_dir)


def test_add_list_remove_and_next_fire_time(cli, tmp_path: Path, embedded_model: None) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "nightly.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    added = cli.invoke(app, ["schedule", "add", "nightly", str(jobs), "--cron", "0 2 * * *", "--budget", "40", "--deadline", "6h"])
    assert added.exit_code == 0, added.output
    (entry,) = load_schedules()  # persisted in $COSTSERVE_HOME/schedules.json
    assert schedules_path().is_file() and entry.name == "nightly" and entry.cron == "0 2 * * *" and entry.jobs == str(jobs)
    assert entry.request.budget == 40.0 and entry.request.deadline_s == 6 * 3600
    # next fire: 02:00 the next day when it is 10:00; 02:00 the same day when it is 01:30
    assert next_fire(entry, datetime(2026, 11, 21, 10, 0, tzinfo=UTC)) == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    assert next_fire(entry, datetime(2026, 11, 21, 1, 30, tzinfo=UTC)) == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    listed = cli.invoke(app, ["schedule", "list"])
    assert listed.exit_code == 0 and "nightly" in listed.output and "0 2 * * *" in listed.output
    now = datetime.now(UTC)
    assert f"{next_fire(entry, now):%Y-%m-%d %H:%M}" in listed.output
    duplicate = cli.invoke(app, ["schedule", "add", "nightly", str(jobs), "--cron", "0 3 * * *"])
    assert duplicate.exit_code == 2 and "exists" in duplicate.output
    removed = cli.invoke(app, ["schedule", "remove", "nightly"])
    assert removed.exit_code == 0 and load_schedules() == []
    assert cli.invoke(app, ["schedule", "remove", "nightly"]).exit_code == 2


@pytest.mark.parametrize("cron, problem", [("0 2 * *", "needs 5 fields"), ("61 2 * * *", "61"), ("0 25 * * *", "25")])
def test_bad_cron_is_one_line_and_nothing_is_stored(cli, tmp_path: Path, cron: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "j.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    result = cli.invoke(app, ["schedule", "add", "x", str(jobs), "--cron", cron])
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    assert load_schedules() == []


def test_beat_scheduler_fires_the_stored_entry_at_its_cron_time(cli, tmp_path: Path, embedded_model: None) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "nightly.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    assert cli.invoke(app, ["schedule", "add", "nightly", str(jobs), "--cron", "30 2 * * 1-5"]).exit_code == 0
    celery = make_scheduler_app("memory://")
    clock = {"now": datetime(2026, 11, 20, 2, 29, tzinfo=UTC)}  # Friday 02:29
    celery.now = lambda: clock["now"]  # beat's clock, read by every crontab entry
    beat = StoredScheduler(app=celery, lazy=False)
    entry = beat.schedule["nightly"]
    assert entry.task == FIRE_TASK and entry.args == ("nightly",) and entry.options["queue"] == SCHEDULER_QUEUE
    entry.last_run_at = datetime(2026, 11, 19, 2, 30, tzinfo=UTC)  # fired Thursday
    due, wait = entry.is_due()
    assert not due and wait == pytest.approx(60, abs=1)
    clock["now"] += timedelta(minutes=1, seconds=5)  # Friday 02:30:05
    assert entry.is_due()[0]
    # after Friday's fire, the next is Monday 02:30 (weekdays only)
    entry.last_run_at = clock["now"]
    assert entry.is_due()[1] == pytest.approx(timedelta(days=2, hours=23, minutes=59, seconds=55).total_seconds(), abs=1)
    # removing the schedule reaches a running beat on its next tick
    assert cli.invoke(app, ["schedule", "remove", "nightly"]).exit_code == 0
    beat._mtime = -1.0  # as if the file changed since it was read
    beat.tick()
    assert "nightly" not in beat.schedule


@pytest.mark.slow
def test_a_fire_runs_the_stored_submit_to_results(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app
    from costserve.store.runs import list_runs
    from costserve.schedule.beat import fire_schedule, scheduler_dir

    jobs = tmp_path / "nightly.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"n{i}", "prompt": f"hi {i}", "max_tokens": 3}) + "\n" for i in range(3)))
    added = cli.invoke(app, ["schedule", "add", "n", str(jobs), "--cron", "0 2 * * *", "--budget", "5", "--model", str(tiny_llama_dir),
                             "--clouds", "aws", "--available", "H100=2"])
    assert added.exit_code == 0, added.output
    (entry,) = load_schedules()
    assert fire_schedule("n") == 0, (scheduler_dir() / "n" / "scheduler.log").read_text()
    (results,) = (scheduler_dir() / "n").glob("*.results.jsonl")
    assert [json.loads(line)["custom_id"] for line in results.read_text().splitlines()] == ["n0", "n1", "n2"]
    (run,) = list_runs()
    assert run.last_event()[1] == "finished" and (run.dir / "report.html").is_file()
    fired = json.loads((run.dir / "request.json").read_text())  # the fire submitted with the clouds it was given
    assert fired["clouds"] == ["aws"] and fired["available"] == "H100=2"
    assert fire_schedule("removed-meanwhile") == 0 and len(list_runs()) == 1


def _llama_lines(path: Path) -> Path:
    path.write_text("".join(json.dumps({"custom_id": f"n{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": "Llama-3.1-8B", "messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 20}}) + "\n" for i in range(4)))
    return path


def test_schedule_add_runs_the_submits_checks_and_plan_before_storing(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from costserve.cli import app

    jobs = _llama_lines(tmp_path / "nightly.jsonl")
    sky = ["schedule", "add", "n", str(jobs), "--cron", "30 1 * * *", "--backend", "sky"]
    gated = cli.invoke(app, [*sky, "--quality", "1"])  # 16-bit: the nodes download the gated repository
    assert gated.exit_code == 2 and "is gated on Hugging Face and no token was found" in gated.output
    assert "schedule n:" in gated.output and "nothing was stored" in gated.output and load_schedules() == []
    monkeypatch.setenv("HF_TOKEN", "hf_for_the_gated_model")
    poor = cli.invoke(app, [*sky, "--budget", "0.0001"])
    assert poor.exit_code == 2 and "budget" in poor.output and load_schedules() == []
    other = cli.invoke(app, [*sky, "--model", "Qwen2.5-7B"])
    assert other.exit_code == 2 and "--model-override" in other.output and load_schedules() == []
    added = cli.invoke(app, [*sky, "--budget", "40", "--clouds", "aws"])
    assert added.exit_code == 0, added.output
    assert "fleet for 4 jobs of Llama-3.1-8B" in added.output and "each fire would launch" in added.output
    assert "predicted $" in added.output and "no scheduler is running" in added.output
    (entry,) = load_schedules()
    assert entry.request.model == "Llama-3.1-8B" and entry.request.clouds == ("aws",)


def test_list_and_the_scheduler_say_whether_one_runs_and_what_it_loaded(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import subprocess
    import sys
    import time

    from costserve.cli import app
    from costserve.schedule.store import ScheduleEntry, add_schedule
    from costserve.request import BatchRequest

    jobs = tmp_path / "j.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    add_schedule(ScheduleEntry(name="nightly", cron="0 2 * * *", request=BatchRequest(jobs=jobs), created="now"))
    idle = cli.invoke(app, ["schedule", "list", "--json"])
    assert idle.exit_code == 0 and json.loads(idle.stdout)["scheduler_pid"] is None
    assert "scheduler: not running" in cli.invoke(app, ["schedule", "list"]).output
    log = tmp_path / "scheduler.log"
    with log.open("w") as out:
        scheduler = subprocess.Popen([sys.executable, "-m", "costserve.cli", "scheduler"], stdout=out,
                                     stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while "nightly: `0 2 * * *`, next" not in log.read_text():
            assert scheduler.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "1 schedule(s) loaded" in log.read_text()
        listed = json.loads(cli.invoke(app, ["schedule", "list", "--json"]).stdout)
        assert listed["scheduler_pid"] == scheduler.pid and listed["schedules"][0]["next_fire"]
        assert f"scheduler: running (pid {scheduler.pid})" in cli.invoke(app, ["schedule", "list"]).output
        second = subprocess.run([sys.executable, "-m", "costserve.cli", "scheduler"], capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2 and f"a scheduler is already running (pid {scheduler.pid})" in second.stderr
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(60)
    assert json.loads(cli.invoke(app, ["schedule", "list", "--json"]).stdout)["scheduler_pid"] is None
