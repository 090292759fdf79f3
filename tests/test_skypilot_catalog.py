"""SkyPilot catalog import (9- and 16-column vms.csv) and export read back by SkyPilot itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from catalog.load import load_gpus, load_offerings, user_catalog_dir
from catalog.skypilot import export_sky_catalog, import_sky_catalog, read_sky_vms, sky_catalog_dir
from costserve.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "skypilot"


def _rows(df: pd.DataFrame) -> dict:
    return {
        (r.region, r.instance_type, r.gpu, r.gpu_count): (
            round(r.price_per_hour, 6), None if pd.isna(r.spot_price_per_hour) else round(r.spot_price_per_hour, 6))
        for r in df.itertuples()
    }


def test_nine_column_layout_keeps_known_gpus_at_file_prices() -> None:
    df, skipped = read_sky_vms(FIXTURES / "lambda" / "vms.csv", "lambda", load_gpus())
    assert _rows(df) == {
        ("us-east-1", "gpu_1x_a10", "A10", 1): (0.75, None),
        ("us-west-1", "gpu_1x_a10", "A10", 1): (0.75, None),
        ("us-east-1", "gpu_1x_h100_pcie", "H100-PCIe", 1): (2.49, None),
        ("us-east-1", "gpu_8x_h100_sxm5", "H100", 8): (23.92, None),
        ("us-west-1", "gpu_4x_a6000", "A6000", 4): (3.2, None),
    }
    assert skipped == {"GH200": 1}


def test_sixteen_column_layout_takes_cheapest_zone_for_spot() -> None:
    df, skipped = read_sky_vms(FIXTURES / "aws" / "vms.csv", "aws", load_gpus())
    assert _rows(df) == {
        ("us-east-1", "g5.xlarge", "A10G", 1): (1.006, 0.3981),
        ("us-west-2", "g6.12xlarge", "L4", 4): (4.6016, 1.8812),
        ("us-east-1", "p4de.24xlarge", "A100-80GB", 8): (27.447, None),
        ("us-east-1", "p3.2xlarge", "V100-16GB", 1): (3.06, 0.918),
    }  # g6f (1/8 of an L4) and CPU rows are dropped
    assert skipped == {"Inferentia2": 1}


def test_gcp_gpus_are_priced_with_the_host_skypilot_pairs_them_with() -> None:
    df, skipped = read_sky_vms(FIXTURES / "gcp" / "vms.csv", "gcp", load_gpus())
    got = _rows(df)
    assert set(got) == {
        ("us-central1", "n1-standard-8", "T4", 1),
        ("us-central1", "n1-standard-8", "T4", 2),
        ("us-central1", "g2-standard-4", "L4", 1),
    }
    assert got[("us-central1", "n1-standard-8", "T4", 1)] == pytest.approx((0.729998, 0.19))
    assert got[("us-central1", "n1-standard-8", "T4", 2)] == pytest.approx((1.079998, 0.30))
    assert got[("us-central1", "g2-standard-4", "L4", 1)] == pytest.approx((0.706832, 0.2510))  # cheaper zone b
    assert skipped == {"K80": 1}


def test_refresh_command_replaces_only_imported_clouds(cli, costserve_home: Path) -> None:
    result = cli.invoke(app, ["catalog", "refresh", "--from", "skypilot", str(FIXTURES)])
    assert result.exit_code == 0, result.output
    assert "lambda: 5 GPU offerings imported" in result.output
    written = load_offerings(user_catalog_dir(costserve_home) / "offerings.csv")
    shipped = load_offerings()
    assert _rows(written[written["cloud"] == "aws"]) == _rows(read_sky_vms(FIXTURES / "aws" / "vms.csv", "aws", load_gpus())[0])
    assert _rows(written[written["cloud"] == "azure"]) == _rows(shipped[shipped["cloud"] == "azure"])  # untouched
    # an offering the shipped catalog knew keeps its availability
    avail = written.set_index(["cloud", "region", "instance_type"])["availability"]
    shipped_avail = shipped.set_index(["cloud", "region", "instance_type"])["availability"]
    assert avail[("aws", "us-east-1", "g5.xlarge")] == shipped_avail[("aws", "us-east-1", "g5.xlarge")]
    # and the commands now read the refreshed file
    shown = cli.invoke(app, ["catalog", "offerings", "--cloud", "lambda"]).output
    assert str(user_catalog_dir(costserve_home)) in shown.replace("\n", "")


def test_refresh_from_bad_dir_is_one_line_and_changes_nothing(cli, tmp_path: Path, costserve_home: Path) -> None:
    (tmp_path / "aws").mkdir()
    (tmp_path / "aws" / "vms.csv").write_text("InstanceType,Price\nx,1\n")
    result = cli.invoke(app, ["catalog", "refresh", "--from", "skypilot", str(tmp_path)])
    assert result.exit_code == 2
    assert "catalog unchanged" in result.output and "AcceleratorName: required column is missing" in result.output
    assert not (user_catalog_dir(costserve_home) / "offerings.csv").exists()


def test_export_is_read_by_skypilots_own_catalog(cli, tmp_path: Path) -> None:
    result = cli.invoke(app, ["catalog", "export", "--skypilot", str(sky_catalog_dir(tmp_path))])
    assert result.exit_code == 0, result.output
    # SkyPilot reads ~/.sky/catalogs/v8 at import time: ask it in a fresh process whose
    # SkyPilot home is the temp dir (never the network: the files exist and are fresh).
    code = (
        "import json, sky.catalog as c\n"
        "out = {}\n"
        "for cloud in ('aws', 'gcp', 'azure', 'lambda'):\n"
        "    acc = c.list_accelerators(clouds=cloud, gpus_only=True, all_regions=True)\n"
        "    out[cloud] = [[i.instance_type, i.accelerator_name, i.accelerator_count, i.price, i.spot_price, i.region]\n"
        "                  for infos in acc.values() for i in infos]\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ, SKY_RUNTIME_DIR=str(tmp_path), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = load_offerings()
    gpus = load_gpus().set_index("gpu")
    for cloud in ("aws", "azure", "lambda"):
        expected = {
            (r.instance_type, gpus.at[r.gpu, "sky_name"], float(r.gpu_count), r.region): r.price_per_hour
            for r in ours[(ours["cloud"] == cloud) & (ours["gpu"] != "cpu")].itertuples()
        }
        got = {(t, name, n, region): price for t, name, n, price, _, region in seen[cloud]}
        assert got == pytest.approx(expected), cloud
    # GCP joins host VM + accelerator rows; the sum must be our price
    gcp = {(t, region): price for t, _, _, price, _, region in seen["gcp"]}
    a2 = ours[(ours["cloud"] == "gcp") & (ours["instance_type"] == "a2-highgpu-1g")]
    for r in a2.itertuples():
        assert gcp[("a2-highgpu-1g", r.region)] == pytest.approx(r.price_per_hour)


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    gpus, ours = load_gpus(), load_offerings()
    export_sky_catalog(ours, gpus, tmp_path)
    merged, counts, _ = import_sky_catalog(tmp_path, ours.iloc[0:0], gpus)
    gpu_rows = ours[ours["gpu"] != "cpu"]
    assert sum(counts.values()) == len(gpu_rows)
    assert _rows(merged) == _rows(gpu_rows)
