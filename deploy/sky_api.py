"""SkyPilot's API server and its cloud check, as costserve uses them: which clouds this user can launch on.

This is the cloud boundary (tests replace the `sky` module; the submodules are reached as attributes of it, as
`import sky` leaves them). Since SkyPilot 0.10 every SDK call goes
through an API server; the first call starts a local one when none answers. costserve stops a local
server again when it was the one that started it, so that a `plan` leaves nothing running.
"""

from __future__ import annotations


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
