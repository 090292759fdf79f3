"""SkyPilot's API server and its cloud check, as costserve uses them: which clouds this user can launch on.

This is the cloud boundary (tests replace the `sky` module; the submodules are reached as attributes of it, as
`import sky` leaves them). Since SkyPilot 0.10 every SDK call goes
through an API server; the first call starts a local one when none answers. costserve stops a local
server again when it was the one that started it, so that a `plan` leaves nothing running.
"""

from __future__ import annotations

from costserve.durations import format_duration
from costserve.errors import DeployError


def local_api_server_up() -> bool:
    """Whether SkyPilot's API server answers now (a local one or a remote endpoint the user configured)."""
    import sky

    return str(getattr(sky.server.common.get_api_server_status().status, "value", "")) == "healthy"


def stop_api_server_if_started(was_up: bool) -> bool:
    """Stop the local API server when it was not up before (`was_up`) costserve's calls started it; True if stopped."""
    if was_up:
        return False
    import sky

    try:
        sky.api_stop()
    except Exception:  # noqa: BLE001 — a server that cannot be stopped is left as SkyPilot left it; nothing depends on it
        return False
    return True


def enabled_clouds() -> list[str]:
    """The clouds SkyPilot's check found credentials for (`sky check`), lower case: `aws`, `gcp`, ...

    Starts SkyPilot's local API server if none answers (about 30 s) and stops it again afterwards."""
    import contextlib
    import sys

    import sky

    was_up = local_api_server_up()
    try:
        with contextlib.redirect_stdout(
            sys.stderr
        ):  # SkyPilot's "Starting a local server" must not reach --json output
            return sorted({str(cloud).lower() for cloud in sky.get(sky.client.sdk.enabled_clouds())})
    finally:
        stop_api_server_if_started(was_up)


CHECK_TIMEOUT_S = 180.0  # s for the child below: starting SkyPilot's API server and its check take about 30 s


class SkyCheckError(DeployError):
    """SkyPilot's check could not answer (the message says why, in one line)."""


def enabled_clouds_in_child(timeout_s: float = CHECK_TIMEOUT_S) -> list[str] | None:
    """`enabled_clouds()` run in a child process (`python -m deploy.sky_api`), None when SkyPilot cannot be imported.

    A child because importing `sky` configures the root logger (every library's INFO lines would reach the user's
    terminal) and the API server's start prints to stdout, which `--json` output must not carry. SkyCheckError when
    the check fails or times out."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    try:
        proc = subprocess.run(
            [sys.executable, "-m", "deploy.sky_api"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=Path(__file__).resolve().parents[1],
        )
    except subprocess.TimeoutExpired:
        raise SkyCheckError(f"no answer in {format_duration(timeout_s)}") from None
    answers = [line for line in proc.stdout.splitlines() if line.startswith('{"')]
    if not answers:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise SkyCheckError(last[:200])
    answer = json.loads(answers[-1])
    if answer.get("missing"):
        return None
    if "error" in answer:
        raise SkyCheckError(answer["error"])
    return list(answer["clouds"])


def main() -> None:
    """The child of enabled_clouds_in_child: one JSON line, {"clouds": [...]}, {"missing": true} or {"error": "..."}."""
    import json

    try:
        import sky  # noqa: F401
    except ImportError:
        print(json.dumps({"missing": True}))
        return
    try:
        clouds = enabled_clouds()
    except Exception as exc:  # noqa: BLE001 — reported to the parent in one line
        print(json.dumps({"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"}))
        return
    print(json.dumps({"clouds": clouds}))


if __name__ == "__main__":
    main()
