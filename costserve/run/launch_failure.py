"""A group's launch that the cloud refused: why (no capacity, a quota, a cloud error), and what it rules out.

GPU launches fail for capacity or quota far more often than instances are preempted. SkyPilot's own
failover already tries every zone of the group's region (the task pins the region, not the zone);
what it raises after that (`ResourcesUnavailableError`, with the per-zone errors in its
`failover_history`, or a `CloudError`) is classified here, and what failed is made unavailable for
the rest of the run so that the re-plan (run/replan.py, the preemption path) picks something else:

- no capacity: that offering (cloud, region, instance type);
- a quota: everything counted against the same quota. On AWS that is the region's instance family
  (catalog/aws_limits.py: G and VT, P, Standard), on-demand and spot apart: a spot quota removes the
  family's spot prices, an on-demand one the family. Elsewhere, the offering;
- any other cloud error: the offering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

QUOTA_WORDS = re.compile(r"quota|limitexceeded|limit exceeded|vcpulimit|insufficient.*limit", re.IGNORECASE)
NO_CAPACITY, QUOTA, CLOUD_ERROR = "no capacity", "quota", "cloud error"
# refused launches per driver before the run stops (resumable): each costs minutes of SkyPilot's own zone failover,
# and clouds that refuse this often are short of GPUs broadly; `costserve resume` tries again later
MAX_LAUNCH_FAILURES = 4


@dataclass(frozen=True)
class LaunchFailure:
    """Why a group's launch failed: `kind` (no capacity, quota, cloud error) and the cloud's own words (one line)."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _words(exc: BaseException) -> str:
    history = getattr(exc, "failover_history", None) or []
    return " ".join([str(exc), *(str(e) for e in history)])


def classify(exc: BaseException) -> LaunchFailure | None:
    """The LaunchFailure of an exception `sky.launch` raised, or None for one that is not the cloud refusing (a bug,
    a bad task: re-raised by the caller)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if not names & {"ResourcesUnavailableError", "CloudError", "ProvisionPrechecksError"}:
        return None
    words = _words(exc)
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    if QUOTA_WORDS.search(words):
        return LaunchFailure(QUOTA, first)
    return LaunchFailure(NO_CAPACITY if "ResourcesUnavailableError" in names else CLOUD_ERROR, first)


def rule_out(offerings: pd.DataFrame, group: Any, failure: LaunchFailure) -> str:
    """Make what `failure` of plan group `group` rules out unavailable in `offerings` (in place); returns it in words."""
    from catalog.aws_limits import instance_family

    same_region = (offerings["cloud"] == group.cloud) & (offerings["region"] == group.region)
    if failure.kind == QUOTA and group.cloud == "aws":
        family = instance_family(group.instance_type)
        rows = same_region & offerings["instance_type"].map(lambda t: instance_family(str(t)) == family)
        what = f"aws/{group.region} {family} family ({'spot' if group.spot else 'on-demand'} quota)"
    else:
        rows = same_region & (offerings["instance_type"] == group.instance_type)
        what = f"{group.cloud}/{group.region}/{group.instance_type}"
    if group.spot and failure.kind == QUOTA:
        offerings.loc[rows, "spot_price_per_hour"] = float("nan")
        return f"{what}: spot"
    offerings.loc[rows, "availability"] = 0
    return what
