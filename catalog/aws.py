"""Refresh AWS offerings from AWS's own APIs with boto3.

Per region: `describe_instance_type_offerings` (what the region sells),
`describe_instance_types` (GPU model, count and memory, vCPUs, host memory),
`pricing.get_products` (on-demand Linux $/h; the Pricing API lives in us-east-1) and
`describe_spot_price_history` (current spot $/h, cheapest zone); then the account's limits
(catalog/aws_limits.py: EC2 service quotas, spot placement scores). Needs the read-only
permissions ec2:DescribeInstanceTypes, ec2:DescribeInstanceTypeOfferings,
ec2:DescribeSpotPriceHistory, pricing:GetProducts, and for the limits
servicequotas:GetServiceQuota and ec2:GetSpotPlacementScores.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from catalog.merge import match_gpu, merge_offerings
from costserve.errors import CatalogError

if TYPE_CHECKING:
    import pandas as pd

PRICING_REGION = "us-east-1"
SOURCE = "AWS APIs: DescribeInstanceTypes, Pricing GetProducts, DescribeSpotPriceHistory"
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "UnrecognizedClientException",
}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}


class AwsRefreshError(CatalogError):
    """AWS refused or could not answer; the message says which call, in which region, and what to do."""


def _explain(exc: Exception, operation: str, region: str) -> AwsRefreshError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return AwsRefreshError("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, EndpointConnectionError):
        return AwsRefreshError(f"cannot reach AWS for {operation} in {region}: {exc}")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        message = exc.response.get("Error", {}).get("Message", "")
        hint = ""
        if code in _DENIED:
            hint = f" — the credentials need permission for {operation} (see `costserve catalog refresh --help`)"
        elif code in _THROTTLED:
            hint = " — AWS is throttling these requests and retries ran out; try again in a few minutes"
        return AwsRefreshError(f"AWS {operation} in {region} failed: {code}: {message}{hint}")
    return AwsRefreshError(f"AWS {operation} in {region} failed: {exc}")


def _call(operation: str, region: str, fn: Any, **kwargs: Any) -> list[dict]:
    """All pages of a boto3 call (a paginator when there is one), errors turned into AwsRefreshError."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = fn.__self__
    try:
        if client.can_paginate(fn.__name__):
            return list(client.get_paginator(fn.__name__).paginate(**kwargs))
        return [fn(**kwargs)]
    except (ClientError, BotoCoreError) as exc:
        raise _explain(exc, operation, region) from None


def _on_demand_price(pricing: Any, instance_type: str, region: str) -> float | None:
    """Linux, shared-tenancy, no-licence on-demand price of one instance type ($/h), or None."""
    filters = [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in (
            ("instanceType", instance_type),
            ("regionCode", region),
            ("operatingSystem", "Linux"),
            ("tenancy", "Shared"),
            ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"),
        )
    ]
    pages = _call("pricing:GetProducts", region, pricing.get_products, ServiceCode="AmazonEC2", Filters=filters)
    prices = []
    for page in pages:
        for item in page.get("PriceList", []):
            product = json.loads(item) if isinstance(item, str) else item
            for term in product.get("terms", {}).get("OnDemand", {}).values():
                for dim in term.get("priceDimensions", {}).values():
                    usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                    if dim.get("unit") == "Hrs" and usd > 0:
                        prices.append(usd)
    return min(prices) if prices else None


def fetch_aws_region(region: str, gpus: pd.DataFrame, ec2: Any, pricing: Any) -> tuple[pd.DataFrame, dict[str, int]]:
    """GPU offerings of one AWS region (offering columns without `availability`), and skipped GPU counts."""
    import pandas as pd

    offered = {
        o["InstanceType"]
        for page in _call(
            "ec2:DescribeInstanceTypeOfferings",
            region,
            ec2.describe_instance_type_offerings,
            LocationType="region",
            Filters=[{"Name": "location", "Values": [region]}],
        )
        for o in page["InstanceTypeOfferings"]
    }
    rows = []
    skipped: dict[str, int] = {}
    for page in _call("ec2:DescribeInstanceTypes", region, ec2.describe_instance_types):
        for it in page["InstanceTypes"]:
            gpu_info = (it.get("GpuInfo") or {}).get("Gpus") or []
            if it["InstanceType"] not in offered or not gpu_info or gpu_info[0].get("Count", 0) < 1:
                continue  # not sold here, no GPU, or a fractional GPU (g6f)
            name = gpu_info[0]["Name"]
            gpu = match_gpu(name, gpu_info[0]["MemoryInfo"]["SizeInMiB"] / 1024, gpus)
            if gpu is None:
                skipped[name] = skipped.get(name, 0) + 1
                continue
            rows.append(
                {
                    "instance_type": it["InstanceType"],
                    "gpu": gpu,
                    "gpu_count": int(gpu_info[0]["Count"]),
                    "vcpus": int(it["VCpuInfo"]["DefaultVCpus"]),
                    "host_memory_gib": it["MemoryInfo"]["SizeInMiB"] / 1024,
                }
            )
    frame = pd.DataFrame(rows, columns=["instance_type", "gpu", "gpu_count", "vcpus", "host_memory_gib"])
    if frame.empty:
        return frame, skipped
    frame["price_per_hour"] = [_on_demand_price(pricing, t, region) for t in frame["instance_type"]]
    spot: dict[str, float] = {}
    now = dt.datetime.now(dt.UTC)
    for page in _call(
        "ec2:DescribeSpotPriceHistory",
        region,
        ec2.describe_spot_price_history,
        InstanceTypes=sorted(frame["instance_type"]),
        ProductDescriptions=["Linux/UNIX"],
        StartTime=now,
    ):
        for entry in page["SpotPriceHistory"]:
            price = float(entry["SpotPrice"])
            spot[entry["InstanceType"]] = min(price, spot.get(entry["InstanceType"], price))
    frame["spot_price_per_hour"] = frame["instance_type"].map(spot)
    frame = frame[frame["price_per_hour"].notna()]
    return frame.assign(cloud="aws", region=region, source=SOURCE, as_of=now.date()), skipped


def refresh_aws_offerings(
    regions: list[str], current: pd.DataFrame, gpus: pd.DataFrame, session: Any = None, account_limits: bool = True
) -> tuple[pd.DataFrame, dict[str, int]]:
    """`current` with the AWS rows of `regions` replaced by what AWS reports now; with `account_limits`, capped by the
    account's EC2 quotas and with spot risk from placement scores (catalog/aws_limits.py).

    Every region is fetched before anything is replaced, so a failure (AwsRefreshError)
    changes nothing. Returns (offerings, GPU offerings found per region).
    """
    import boto3
    import pandas as pd
    from botocore.config import Config

    from catalog.aws_limits import apply_account_limits
    from catalog.merge import known_availability

    session = session or boto3.session.Session()
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    pricing = session.client("pricing", region_name=PRICING_REGION, config=config)
    frames, counts = [], {}
    for region in regions:
        ec2 = session.client("ec2", region_name=region, config=config)
        frame, _ = fetch_aws_region(region, gpus, ec2, pricing)
        frame = frame.assign(
            availability=known_availability(current, frame), availability_source=None, spot_interruption=None
        )
        if account_limits and not frame.empty:
            quotas = session.client("service-quotas", region_name=region, config=config)
            frame = apply_account_limits(frame, region, quotas, ec2, _call)
        frames.append(frame)
        counts[region] = len(frame)
    fresh = pd.concat(frames, ignore_index=True)
    replaced = (current["cloud"] == "aws") & current["region"].isin(regions)
    return merge_offerings(current, fresh, replaced), counts
