"""Which clouds a plan considers, and why: the ones asked for, the ones SkyPilot reports enabled, or all.

A plan over clouds the user has no account for is a promise no launch keeps. So, unless `--clouds`
names them, `plan` and `submit --backend sky` plan over the clouds SkyPilot's check enabled for this
user. The answer is cached in `$COSTSERVE_HOME/enabled-clouds.json` for ENABLED_CLOUDS_TTL_S, because
asking starts SkyPilot's API server (about 30 s). Without SkyPilot, with no cloud enabled (a laptop,
CI, the vLLM environment) or with the `check_clouds` setting off, the whole catalog is planned and the
plan says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from costserve.config import costserve_home
from costserve.durations import format_duration
from costserve.errors import BadRequestError

ENABLED_CLOUDS_TTL_S = 3600.0  # s a cached `sky check` answer is used; `sky check` after adding an account, then wait
CACHE_FILE = "enabled-clouds.json"


@dataclass(frozen=True)
class CloudScope:
    """The clouds to plan over (None: every cloud in the catalog) and why, in words for the plan."""

    clouds: tuple[str, ...] | None
    why: str

    def describe(self, catalog: set[str]) -> str:
        """`aws (enabled in SkyPilot)`, or `every cloud in the catalog (aws, gcp, ...): SkyPilot is not installed`."""
        if self.clouds is None:
            return f"every cloud in the catalog ({', '.join(sorted(catalog))}): {self.why}"
        return f"{', '.join(self.clouds)} ({self.why})"


def cached_enabled_clouds() -> tuple[list[str] | None, str]:
    """(the clouds SkyPilot enabled, or None when it cannot say; where the answer came from).

    SkyPilot is asked (deploy/sky_api.py: enabled_clouds) when the cache is missing or older than
    ENABLED_CLOUDS_TTL_S."""
    cache = costserve_home() / CACHE_FILE
    try:
        saved = json.loads(cache.read_text())
        age_s = time.time() - float(saved["at"])
        if 0 <= age_s < ENABLED_CLOUDS_TTL_S:
            return list(saved["clouds"]), f"SkyPilot's check, {format_duration(age_s)} ago"
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache, or an unreadable one: ask again
    import importlib.util

    from deploy.sky_api import SkyCheckError, enabled_clouds_in_child

    if importlib.util.find_spec("sky") is None:
        return None, "SkyPilot is not installed"
    try:
        found = enabled_clouds_in_child()
    except SkyCheckError as exc:  # the whole catalog is planned, and the plan says why
        return None, f"SkyPilot's check failed ({exc})"
    if found is None:
        return None, "SkyPilot is not installed"
    clouds = found
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"at": time.time(), "clouds": clouds}))
    return clouds, "SkyPilot's check"


def cloud_scope(asked: tuple[str, ...] | None, catalog: set[str], check: bool) -> CloudScope:
    """The clouds to plan over: `asked` (`--clouds`), else those SkyPilot enabled (when `check`), else all of `catalog`.

    BadRequestError, one line, for an asked cloud the catalog lacks or SkyPilot reports not enabled."""
    if asked:
        unknown = set(asked) - catalog
        if unknown:
            raise BadRequestError(
                f"--clouds: unknown cloud(s) {', '.join(sorted(unknown))} (catalog has {', '.join(sorted(catalog))})"
            )
    if not check:
        return (
            CloudScope(asked, "asked for with --clouds")
            if asked
            else CloudScope(None, "the check_clouds setting is off")
        )
    enabled, source = cached_enabled_clouds()
    if asked:
        missing = sorted(set(asked) - set(enabled)) if enabled else []
        if missing:
            raise BadRequestError(
                f"--clouds: {', '.join(missing)} not enabled for this account ({source}: "
                f"{', '.join(enabled or []) or 'none'}); `sky check {' '.join(missing)}` says why"
            )
        return CloudScope(asked, "asked for with --clouds")
    usable = tuple(sorted(set(enabled or []) & catalog))
    if not usable:
        why = source if enabled is None else f"no cloud of the catalog is enabled ({source})"
        return CloudScope(None, why)
    return CloudScope(usable, f"enabled: {source}")
