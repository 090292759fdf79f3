"""The account's real limits on AWS offerings: EC2 service quotas and spot placement scores.

`catalog refresh --from aws` calls these after the prices, per region:

- **Service Quotas** (`servicequotas:GetServiceQuota`): the account's running On-Demand and
  Spot vCPU limits per instance family (G and VT, P, standard). An offering's availability
  becomes min(the catalog's assumption, ⌊quota vCPUs / instance vCPUs⌋), and its
  `availability_source` says which quota set it. A family's quota is shared by all its
  instance types; each offering is capped at what the quota allows it alone (the MILP's
  availability is per offering), so a fleet mixing two types of one family can still exceed
  it — `availability.csv` tightens that by hand. A Spot quota of 0 vCPUs removes the spot
  price (no spot for that family in this account).
- **Spot placement scores** (`ec2:GetSpotPlacementScores`): AWS's 1–10 estimate that a spot
  request of the planned capacity (the offering's availability) succeeds in a region. It
  becomes the share of spot throughput the planner expects to lose to interruptions:

      spot_interruption = LOST_AT_BEST + (LOST_AT_WORST − LOST_AT_BEST) · (10 − score) / 9

  5% at score 10 (about the 10% allowance costserve assumes for AWS without data, halved for
  the best placement) to 50% at score 1 (half the work redone). A heuristic with a physical
  reading, to be replaced by measured preemption rates; AWS documents the score's meaning at
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-placement-score.html.

Extra permissions: servicequotas:GetServiceQuota and ec2:GetSpotPlacementScores.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Service Quotas codes for EC2 vCPU limits: (family, spot) -> quota code
QUOTA_CODES = {
    ("G and VT", False): "L-DB2E81BA",
    ("P", False): "L-417A185B",
    ("Standard", False): "L-1216C47A",
    ("G and VT", True): "L-3819A6DF",
    ("P", True): "L-7212CCBC",
    ("Standard", True): "L-34B43A08",
}
LOST_AT_BEST, LOST_AT_WORST = 0.05, 0.50  # share of spot throughput lost at placement score 10 and 1
QUOTA_SOURCE = "AWS Service Quotas"  # how an availability_source set by a quota begins


def quota_capped(offerings: pd.DataFrame) -> pd.Series:
    """Per offering: whether the account's quota set its availability (not the catalog's assumption)."""
    return offerings["availability_source"].fillna("").str.startswith(QUOTA_SOURCE)


def instance_family(instance_type: str) -> str:
    """The Service Quotas family of an EC2 instance type: `G and VT` (g*, vt*), `P` (p*), else `Standard`."""
    name = instance_type.lower()
    if name.startswith(("g", "vt")):
        return "G and VT"
    return "P" if name.startswith("p") else "Standard"


def spot_interruption(score: int) -> float:
    """Share of spot throughput expected lost (0–1) for a spot placement score of 1–10 (formula above)."""
    score = min(10, max(1, int(score)))
    return LOST_AT_BEST + (LOST_AT_WORST - LOST_AT_BEST) * (10 - score) / 9


def _quota_vcpus(call: Any, quotas: Any, region: str, code: str) -> float:
    pages = call("servicequotas:GetServiceQuota", region, quotas.get_service_quota, ServiceCode="ec2", QuotaCode=code)
    return float(pages[0]["Quota"]["Value"])


def apply_account_limits(frame: pd.DataFrame, region: str, quotas: Any, ec2: Any, call: Any) -> pd.DataFrame:
    """`frame` (one region's fresh AWS offerings, with `availability`) capped by the account's quotas, with
    `availability_source` and `spot_interruption` from the spot placement scores. `call(operation, region, fn,
    **kwargs)` makes each AWS call (catalog/aws.py: pages, errors as AwsRefreshError)."""
    frame = frame.copy()
    families = {instance_family(t) for t in frame["instance_type"]}
    limits = {
        (f, spot): _quota_vcpus(call, quotas, region, QUOTA_CODES[(f, spot)])
        for f in sorted(families)
        for spot in (False, True)
    }
    sources, caps, spot_prices = [], [], []
    for _, row in frame.iterrows():
        family = instance_family(row["instance_type"])
        on_demand = int(math.floor(limits[(family, False)] / row["vcpus"]))
        caps.append(min(int(row["availability"]), on_demand))
        code = QUOTA_CODES[(family, False)]
        sources.append(
            f"{QUOTA_SOURCE} {code} ({family} on-demand): {limits[(family, False)]:g} vCPUs"
            if on_demand < int(row["availability"])
            else "catalog assumption (within the account's quota)"
        )
        spot_prices.append(row["spot_price_per_hour"] if limits[(family, True)] >= row["vcpus"] else float("nan"))
    frame["availability"], frame["availability_source"], frame["spot_price_per_hour"] = caps, sources, spot_prices
    frame["spot_interruption"] = [
        _placement(call, ec2, region, t, max(1, a)) if p == p else None
        for t, a, p in zip(frame["instance_type"], frame["availability"], spot_prices)
    ]
    return frame


def _placement(call: Any, ec2: Any, region: str, instance_type: str, capacity: int) -> float | None:
    """spot_interruption of one instance type at `capacity` instances in `region`, or None when AWS gives no score."""
    pages = call(
        "ec2:GetSpotPlacementScores",
        region,
        ec2.get_spot_placement_scores,
        InstanceTypes=[instance_type],
        TargetCapacity=capacity,
        TargetCapacityUnitType="units",
        SingleAvailabilityZone=False,
        RegionNames=[region],
    )
    scores = [s["Score"] for page in pages for s in page.get("SpotPlacementScores", []) if s.get("Region") == region]
    return round(spot_interruption(max(scores)), 4) if scores else None
