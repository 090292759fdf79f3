"""The account's EC2 quotas and spot placement scores become availability caps and spot risk (Stubber, no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from test_aws_refresh import Session, fake_aws_credentials, fake_pricing_client  # noqa: F401  (fixture)

from catalog.aws import AwsRefreshError, refresh_aws_offerings
from catalog.aws_limits import instance_family, spot_interruption
from catalog.load import load_gpus, load_offerings
from catalog.store import save_offerings
from costserve.cli import app
from solver.candidates import SPOT_OVERHEAD, purchase_options

TYPES = {"g5.xlarge": (4, "A10G", 1, 22888), "p5.48xlarge": (192, "H100", 8, 81559)}


def _ec2(placement: list[tuple[str, int]] | None) -> tuple[object, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": t, "LocationType": "region", "Location": "us-east-1"} for t in TYPES]})
    stub.add_response("describe_instance_types", {"InstanceTypes": [{
        "InstanceType": t, "VCpuInfo": {"DefaultVCpus": v}, "MemoryInfo": {"SizeInMiB": 16384},
        "GpuInfo": {"Gpus": [{"Name": g, "Manufacturer": "NVIDIA", "Count": n, "MemoryInfo": {"SizeInMiB": m}}]}}
        for t, (v, g, n, m) in TYPES.items()]})
    stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [
        {"InstanceType": "g5.xlarge", "SpotPrice": "0.40", "AvailabilityZone": "us-east-1a",
         "Timestamp": dt.datetime(2026, 12, 1)},
        {"InstanceType": "p5.48xlarge", "SpotPrice": "24.50", "AvailabilityZone": "us-east-1b",
         "Timestamp": dt.datetime(2026, 12, 1)}]}, {"InstanceTypes": ANY, "ProductDescriptions": ANY, "StartTime": ANY})
    for instance_type, score in placement or []:
        stub.add_response("get_spot_placement_scores", {"SpotPlacementScores": [{"Region": "us-east-1", "Score": score}]},
                          {"InstanceTypes": [instance_type], "TargetCapacity": ANY, "TargetCapacityUnitType": "units",
                           "SingleAvailabilityZone": False, "RegionNames": ["us-east-1"]})
    return ec2, stub


def _quotas(values: dict[str, float], error: str | None = None) -> tuple[object, Stubber]:
    quotas = boto3.client("service-quotas", region_name="us-east-1")
    stub = Stubber(quotas)
    for code, value in values.items():  # in the order apply_account_limits asks: families sorted, on-demand first
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": value}},
                          {"ServiceCode": "ec2", "QuotaCode": code})
    if error:
        stub.add_client_error("get_service_quota", service_error_code=error, service_message="no", http_status_code=400)
    return quotas, stub


def test_quotas_cap_availability_and_placement_scores_rate_spot_risk(cli, costserve_home: Path) -> None:
    prices = {"g5.xlarge": 1.006, "p5.48xlarge": 55.04}
    ec2, ec2_stub = _ec2([("p5.48xlarge", 3)])
    # G and VT: 8 on-demand vCPUs, no spot; P: no on-demand, 384 spot vCPUs
    quotas, quota_stub = _quotas({"L-DB2E81BA": 8, "L-3819A6DF": 0, "L-417A185B": 0, "L-7212CCBC": 384})
    session = Session(ec2=ec2, pricing=fake_pricing_client(prices, []), **{"service-quotas": quotas})
    with ec2_stub, quota_stub:
        merged, _ = refresh_aws_offerings(["us-east-1"], load_offerings(), load_gpus(), session=session)
        quota_stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()
    fresh = merged[(merged["cloud"] == "aws") & (merged["region"] == "us-east-1")].set_index("instance_type")
    g5, p5 = fresh.loc["g5.xlarge"], fresh.loc["p5.48xlarge"]
    assert g5["availability"] == 2 and "L-DB2E81BA" in g5["availability_source"]  # 8 vCPUs / 4 per instance
    assert g5["spot_price_per_hour"] != g5["spot_price_per_hour"]  # no spot quota: no spot offer (NaN)
    assert p5["availability"] == 0 and "L-417A185B" in p5["availability_source"]  # 0 vCPUs: none on demand
    assert p5["spot_price_per_hour"] == 24.5 and p5["spot_interruption"] == pytest.approx(0.05 + 0.45 * 7 / 9, abs=1e-4)
    untouched = merged[merged["cloud"] != "aws"]
    assert untouched["availability_source"].isna().all()  # other clouds keep the file's values, unlabelled
    save_offerings(merged, costserve_home, load_gpus())  # the refreshed catalog shows where each number comes from
    shown = cli.invoke(app, ["catalog", "offerings", "--cloud", "aws", "--region", "us-east-1", "--gpu", "H100"],
                       terminal_width=250).output
    p5_row = next(line for line in shown.splitlines() if "p5.48xlarge" in line)
    assert "account quota" in p5_row and "40%" in p5_row


def test_the_spot_risk_formula_and_its_use_by_the_planner() -> None:
    assert spot_interruption(10) == pytest.approx(0.05) and spot_interruption(1) == pytest.approx(0.50)
    assert spot_interruption(0) == spot_interruption(1) and spot_interruption(11) == spot_interruption(10)
    assert [instance_family(t) for t in ("g6.xlarge", "vt1.3xlarge", "p4d.24xlarge", "m7i.large")] == \
        ["G and VT", "G and VT", "P", "Standard"]
    row = load_offerings().iloc[0].copy()
    row["spot_price_per_hour"] = 10.0
    default = purchase_options(row, spot=True)[1]
    assert default[2] == pytest.approx(1 - SPOT_OVERHEAD[row["cloud"]])
    row["spot_interruption"] = 0.4
    assert purchase_options(row, spot=True)[1][2] == pytest.approx(0.6)  # the measured risk replaces the default


@pytest.mark.parametrize(("error", "hint"), [("ThrottlingException", "try again"), ("AccessDeniedException", "permission")])
def test_a_refused_quota_call_leaves_the_catalog_untouched(cli, costserve_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                          error: str, hint: str) -> None:
    gpus = load_gpus()
    target = save_offerings(load_offerings().head(40), costserve_home, gpus)
    before = target.read_bytes()
    ec2, ec2_stub = _ec2(None)
    quotas, quota_stub = _quotas({}, error)
    session = Session(ec2=ec2, pricing=fake_pricing_client({"g5.xlarge": 1.0, "p5.48xlarge": 55.0}, []),
                      **{"service-quotas": quotas})
    monkeypatch.setattr(boto3.session, "Session", lambda: session)
    with ec2_stub, quota_stub:
        result = cli.invoke(app, ["catalog", "refresh", "--from", "aws", "--region", "us-east-1"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "catalog unchanged" in line and f"servicequotas:GetServiceQuota in us-east-1 failed: {error}" in line
    assert hint in line and target.read_bytes() == before


def test_refused_placement_scores_name_the_permission() -> None:
    ec2, ec2_stub = _ec2(None)
    ec2_stub.add_client_error("get_spot_placement_scores", service_error_code="UnauthorizedOperation",
                              service_message="not authorized", http_status_code=403)
    quotas, quota_stub = _quotas({"L-DB2E81BA": 64, "L-3819A6DF": 64, "L-417A185B": 384, "L-7212CCBC": 384})
    session = Session(ec2=ec2, pricing=fake_pricing_client({"g5.xlarge": 1.0, "p5.48xlarge": 55.0}, []),
                      **{"service-quotas": quotas})
    with ec2_stub, quota_stub, pytest.raises(AwsRefreshError, match=r"ec2:GetSpotPlacementScores in us-east-1 failed: "
                                                                   r"UnauthorizedOperation.*permission"):
        refresh_aws_offerings(["us-east-1"], load_offerings(), load_gpus(), session=session)
