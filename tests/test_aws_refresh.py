"""`catalog refresh --from aws`: EC2 from moto, Pricing and failures through botocore's Stubber/events.

Nothing here reaches the network: moto serves EC2, and the Pricing API (which moto does
not implement) is answered at botocore's `before-call` hook, the same place Stubber uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

from catalog.aws import AwsRefreshError, refresh_aws_offerings
from catalog.load import load_gpus, load_offerings, user_catalog_dir
from catalog.store import save_offerings
from costserve.cli import app

# On-demand $/h the fake Pricing API knows; other instance types get no price (skipped).
PRICES = {"g5.xlarge": 1.006, "g6.xlarge": 0.8048, "p4d.24xlarge": 21.96, "p4de.24xlarge": 27.45,
          "p5.48xlarge": 55.04, "g4dn.12xlarge": 3.912, "p3dn.24xlarge": 31.212}


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)


def pricing_product(instance_type: str, region: str, usd: float) -> str:
    return json.dumps({
        "product": {"attributes": {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux"}},
        "terms": {"OnDemand": {"T1": {"priceDimensions": {"D1": {"unit": "Hrs", "pricePerUnit": {"USD": f"{usd:.10f}"}}}}}},
    })


def fake_pricing_client(prices: dict[str, float], asked: list[dict]):
    client = boto3.client("pricing", region_name="us-east-1")

    # Like botocore's Stubber: read the API parameters before they are serialised, answer
    # before the request would be sent.
    def record(params: dict, **_: object) -> None:
        asked.append({f["Field"]: f["Value"] for f in params["Filters"]})

    def answer(**_: object):
        filters = asked[-1]
        itype = filters["instanceType"]
        items = [pricing_product(itype, filters["regionCode"], prices[itype])] if itype in prices else []
        return AWSResponse(None, 200, {}, None), {"PriceList": items, "FormatVersion": "aws_v1"}

    client.meta.events.register("before-parameter-build.pricing.GetProducts", record)
    client.meta.events.register("before-call.pricing.GetProducts", answer)
    return client


class Session:
    """A boto3 session whose clients are the given ones (the cloud boundary), else moto-backed."""

    def __init__(self, **clients: object) -> None:
        self.clients = clients

    def client(self, name: str, **kwargs: object):
        return self.clients.get(name) or boto3.client(name, **kwargs)


def test_refresh_from_moto_ec2_and_pricing() -> None:
    asked: list[dict] = []
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        spot: dict[str, float] = {}
        for entry in ec2.describe_spot_price_history(InstanceTypes=list(PRICES), ProductDescriptions=["Linux/UNIX"])["SpotPriceHistory"]:
            spot[entry["InstanceType"]] = min(float(entry["SpotPrice"]), spot.get(entry["InstanceType"], 1e9))
        current = load_offerings()
        merged, counts = refresh_aws_offerings(["us-east-1"], current, load_gpus(),
                                               session=Session(pricing=fake_pricing_client(PRICES, asked)),
                                               account_limits=False)  # quotas and scores: below, with Stubber
    assert all(f["operatingSystem"] == "Linux" and f["tenancy"] == "Shared" and f["regionCode"] == "us-east-1" for f in asked)
    fresh = merged[(merged["cloud"] == "aws") & (merged["region"] == "us-east-1")].set_index("instance_type")
    assert counts == {"us-east-1": len(PRICES)}
    assert set(fresh.index) == set(PRICES)
    assert fresh["price_per_hour"].to_dict() == PRICES
    assert fresh["spot_price_per_hour"].to_dict() == {t: spot[t] for t in PRICES}
    assert fresh.loc["p4d.24xlarge", "gpu"] == "A100-40GB" and fresh.loc["p4de.24xlarge", "gpu"] == "A100-80GB"
    assert fresh.loc["p3dn.24xlarge", "gpu"] == "V100-32GB"
    assert (fresh.loc["p5.48xlarge", "gpu"], fresh.loc["p5.48xlarge", "gpu_count"], fresh.loc["p5.48xlarge", "vcpus"]) == ("H100", 8, 192)
    assert fresh.loc["g4dn.12xlarge", "host_memory_gib"] == 192
    # other regions and clouds are as they were
    untouched = merged[~((merged["cloud"] == "aws") & (merged["region"] == "us-east-1"))]
    before = current[~((current["cloud"] == "aws") & (current["region"] == "us-east-1"))]
    assert len(untouched) == len(before)
    assert untouched["price_per_hour"].sum() == pytest.approx(before["price_per_hour"].sum())


def _stubbed_ec2_with_one_gpu_type() -> tuple[object, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_response("describe_instance_type_offerings",
                      {"InstanceTypeOfferings": [{"InstanceType": "g5.xlarge", "LocationType": "region", "Location": "us-east-1"}]})
    stub.add_response("describe_instance_types", {"InstanceTypes": [{
        "InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 4}, "MemoryInfo": {"SizeInMiB": 16384},
        "GpuInfo": {"Gpus": [{"Name": "A10G", "Manufacturer": "NVIDIA", "Count": 1, "MemoryInfo": {"SizeInMiB": 22888}}]}}]})
    return ec2, stub


def test_access_denied_names_the_call_and_permission() -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_instance_type_offerings", service_error_code="UnauthorizedOperation",
                              service_message="You are not authorized to perform this operation.", http_status_code=403)
        with pytest.raises(AwsRefreshError) as info:
            refresh_aws_offerings(["us-east-1"], load_offerings(), load_gpus(), session=Session(ec2=ec2, pricing=object()))
    message = str(info.value)
    assert "ec2:DescribeInstanceTypeOfferings in us-east-1 failed: UnauthorizedOperation" in message
    assert "need permission" in message and "\n" not in message


def test_throttled_pricing_says_to_retry_later() -> None:
    ec2, ec2_stub = _stubbed_ec2_with_one_gpu_type()
    pricing = boto3.client("pricing", region_name="us-east-1")
    with ec2_stub, Stubber(pricing) as pricing_stub:
        pricing_stub.add_client_error("get_products", service_error_code="ThrottlingException",
                                      service_message="Rate exceeded", http_status_code=400)
        with pytest.raises(AwsRefreshError, match=r"pricing:GetProducts in us-east-1 failed: ThrottlingException.*try again"):
            refresh_aws_offerings(["us-east-1"], load_offerings(), load_gpus(), session=Session(ec2=ec2, pricing=pricing))


def test_failed_cli_refresh_leaves_catalog_untouched(cli, costserve_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = load_gpus()
    target = save_offerings(load_offerings().head(40), costserve_home, gpus)
    before = target.read_bytes()
    ec2, stub = _stubbed_ec2_with_one_gpu_type()
    pricing = boto3.client("pricing", region_name="us-east-1")
    pricing_stub = Stubber(pricing)
    pricing_stub.add_client_error("get_products", service_error_code="AccessDeniedException",
                                  service_message="User is not authorized to perform: pricing:GetProducts", http_status_code=400)
    monkeypatch.setattr(boto3.session, "Session", lambda: Session(ec2=ec2, pricing=pricing))
    with stub, pricing_stub:
        result = cli.invoke(app, ["catalog", "refresh", "--from", "aws", "--region", "us-east-1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "catalog unchanged" in lines[0] and "AccessDeniedException" in lines[0]
    assert target.read_bytes() == before
    assert [p.name for p in user_catalog_dir(costserve_home).iterdir()] == ["offerings.csv"]  # no temp files left


def test_refresh_needs_a_region(cli) -> None:
    result = cli.invoke(app, ["catalog", "refresh", "--from", "aws"])
    assert result.exit_code == 2 and "--region" in result.output
