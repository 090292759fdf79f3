"""`costserve catalog ...`: show, refresh and export the GPU, offering and model catalogs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from catalog.availability import apply_availability, parse_gpu_limits
from catalog.load import CatalogError, load_gpus, load_models
from costserve.cli.help import CATALOG, HelpGroup, command
from costserve.cli.output import console, emit_json, fail, frame_table, one_line_errors
from costserve.config import costserve_home
from costserve.planning.offerings import current_offerings
from costserve.units import json_records

catalog_app = typer.Typer(
    help="Show, refresh and export the GPU / offering / model catalogs.",
    no_args_is_help=True,
    cls=HelpGroup,
    epilog="Example: costserve catalog offerings --gpu H100",
)


JSON_FLAG = typer.Option("--json", help="print the rows as JSON on stdout instead of a table")


class RefreshSource(StrEnum):
    skypilot = "skypilot"
    aws = "aws"


@command(catalog_app, CATALOG, "costserve catalog gpus --gpu H100", name="gpus")
def show_gpus(
    gpu: Annotated[Optional[str], typer.Option(help="only this GPU")] = None,
    json_out: Annotated[bool, JSON_FLAG] = False,
) -> None:
    """GPU specs: memory (GiB), dense bf16 TFLOPS, int8 TOPS, bandwidth and links (GB/s)."""
    with one_line_errors():
        gpus_view(gpu, json_out)


@command(catalog_app, CATALOG, "costserve catalog offerings --gpu L4 --cloud aws", name="offerings")
def show_offerings(
    cloud: Annotated[Optional[str], typer.Option(help="aws, gcp, azure or lambda")] = None,
    gpu: Annotated[Optional[str], typer.Option(help="only offerings of this GPU, e.g. L4")] = None,
    region: Annotated[Optional[str], typer.Option(help="only this region")] = None,
    available: Annotated[Optional[str], typer.Option(help="cap GPUs per type, e.g. H100=2,L4=16")] = None,
    json_out: Annotated[bool, JSON_FLAG] = False,
) -> None:
    """Cloud offerings with on-demand and spot $/h, cheapest per GPU first."""
    with one_line_errors():
        offerings_view(cloud, gpu, region, available, json_out)


@command(catalog_app, CATALOG, "costserve catalog models", name="models")
def show_models(json_out: Annotated[bool, JSON_FLAG] = False) -> None:
    """Model architectures: layers, widths, heads, vocab, parameters (billions), context (tokens), Hugging Face id."""
    with one_line_errors():
        models_view(json_out)


@command(catalog_app, CATALOG, "costserve catalog refresh --from aws --region us-east-1", name="refresh")
def refresh(
    source: Annotated[RefreshSource, typer.Option("--from", help="where to read prices from")],
    directory: Annotated[Optional[Path], typer.Argument(help="SkyPilot catalog dir holding <cloud>/vms.csv")] = None,
    region: Annotated[Optional[list[str]], typer.Option(help="AWS region(s) to refresh")] = None,
    account_limits: Annotated[
        bool,
        typer.Option(
            help="aws: cap availability by the account's EC2 vCPU quotas and rate spot risk by placement scores"
        ),
    ] = True,
) -> None:
    """Update the user's offerings ($COSTSERVE_HOME/catalog/offerings.csv) from SkyPilot files or AWS.

    The previous catalog stays in place if anything fails.
    """
    if source is RefreshSource.skypilot:
        if directory is None:
            fail("catalog refresh --from skypilot needs DIR (e.g. ~/.sky/catalogs/v8)")
        with one_line_errors():
            refresh_from_skypilot(directory)
    else:
        if not region:
            fail("catalog refresh --from aws needs --region (e.g. --region us-east-1)")
        with one_line_errors():
            refresh_from_aws(region, account_limits)


@command(catalog_app, CATALOG, "costserve catalog export --skypilot ~/.sky/catalogs/v8", name="export")
def export(
    skypilot: Annotated[Path, typer.Option("--skypilot", help="directory to write <cloud>/vms.csv into")],
) -> None:
    """Write the offerings as SkyPilot catalog files, so SkyPilot plans offline on costserve's prices.

    Use DIR=~/.sky/catalogs/v8 (or SKY_RUNTIME_DIR=X with DIR=X/.sky/catalogs/v8).
    """
    with one_line_errors():
        export_to_skypilot(skypilot)


GPU_COLUMNS = {
    "memory_gib": "GiB",
    "bf16_tflops": "bf16 TFLOPS",
    "int8_tops": "int8 TOPS",
    "mem_bandwidth_gbps": "mem GB/s",
    "nvlink_gbps": "NVLink GB/s",
    "pcie_gbps": "PCIe GB/s",
}
OFFERING_COLUMNS = {
    "cloud": "cloud",
    "region": "region",
    "instance_type": "instance",
    "gpu": "gpu",
    "gpu_count": "GPUs",
    "vcpus": "vCPUs",
    "host_memory_gib": "host GiB",
    "price_per_hour": "$/h",
    "spot_price_per_hour": "spot $/h",
    "per_gpu_hour": "$/GPU-h",
    "availability": "avail",
    "avail_from": "avail from",
    "spot_loss": "spot loss",
}


def gpus_view(gpu: str | None, json_out: bool = False) -> None:
    """Print the GPU table (optionally one GPU); its rows as JSON with `json_out`."""
    gpus = load_gpus()
    if gpu is not None:
        gpus = gpus[gpus["gpu"] == gpu]
        if gpus.empty:
            fail(f"unknown GPU {gpu!r}; `costserve catalog gpus` lists them")
    if json_out:
        emit_json(json_records(gpus[["gpu", *GPU_COLUMNS]]))
        return
    shown = gpus.set_index("gpu")[list(GPU_COLUMNS)].rename(columns=GPU_COLUMNS)
    console.print(frame_table(shown, "GPUs (cpu: per vCPU)", index_name="gpu"))


def offerings_view(
    cloud: str | None, gpu: str | None, region: str | None, available: str | None, json_out: bool = False
) -> None:
    """Print the offerings table, filtered, cheapest $/GPU-hour first; its rows as JSON with `json_out`."""
    offerings, gpus, path = current_offerings()
    try:
        limits = parse_gpu_limits(available, set(gpus["gpu"]))
    except ValueError as exc:
        fail(str(exc))
    offerings = apply_availability(offerings, None, limits)
    for column, value in (("cloud", cloud), ("gpu", gpu), ("region", region)):
        if value is not None:
            if value not in set(offerings[column]):
                fail(f"no offerings with {column} {value!r} (known: {', '.join(sorted(set(offerings[column])))})")
            offerings = offerings[offerings[column] == value]
    from catalog.aws_limits import quota_capped
    from solver.candidates import spot_loss

    per_gpu = offerings["price_per_hour"] / offerings["gpu_count"].clip(lower=1)
    shown = offerings.assign(
        per_gpu_hour=per_gpu,
        avail_from=quota_capped(offerings).map({True: "account quota", False: "catalog"}),
        spot_loss=[
            f"{spot_loss(row):.0%}" if row["spot_price_per_hour"] == row["spot_price_per_hour"] else ""
            for _, row in offerings.iterrows()
        ],
    )
    shown = shown.sort_values(["gpu", "per_gpu_hour"])[list(OFFERING_COLUMNS)]
    if json_out:
        emit_json(json_records(shown))
        return
    shown = shown.rename(columns=OFFERING_COLUMNS)
    console.print(frame_table(shown.reset_index(drop=True), f"offerings ({len(shown)} rows, from {path})"))


def models_view(json_out: bool = False) -> None:
    """Print the model architecture table (the names a job file may use: the catalog name or the Hugging Face id)."""
    if json_out:
        emit_json(json_records(load_models()))
        return
    models = load_models().drop(columns=["source", "as_of"]).rename(columns={"hf_id": "Hugging Face id"})
    console.print(frame_table(models.set_index("model"), "models", index_name="model"))


def refresh_from_skypilot(directory: Path) -> None:
    """Import SkyPilot vms.csv files into the user's offerings and report what changed."""
    from catalog.skypilot import import_sky_catalog
    from catalog.store import save_offerings

    offerings, gpus, _ = current_offerings()
    try:
        merged, counts, skipped = import_sky_catalog(directory, offerings, gpus)
        target = save_offerings(merged, costserve_home(), gpus)
    except CatalogError as exc:
        fail(f"catalog refresh failed, catalog unchanged: {exc}")
    for cloud, n in counts.items():
        console.print(f"{cloud}: {n} GPU offerings imported")
    if skipped:
        names = ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
        console.print(f"skipped accelerators not in gpus.csv: {names}", markup=False)
    console.print(f"wrote {target}", markup=False)


def refresh_from_aws(regions: list[str], account_limits: bool = True) -> None:
    """Fetch GPU instance types, on-demand and spot prices (and the account's quotas and spot placement scores) from
    AWS into the user's offerings."""
    from catalog.aws import AwsRefreshError, refresh_aws_offerings
    from catalog.aws_limits import quota_capped
    from catalog.store import save_offerings

    offerings, gpus, _ = current_offerings()
    try:
        merged, counts = refresh_aws_offerings(regions, offerings, gpus, account_limits=account_limits)
        target = save_offerings(merged, costserve_home(), gpus)
    except (AwsRefreshError, CatalogError) as exc:
        fail(f"catalog refresh failed, catalog unchanged: {exc}")
    for region, n in counts.items():
        capped = merged[(merged["cloud"] == "aws") & (merged["region"] == region) & quota_capped(merged)]
        console.print(
            f"aws {region}: {n} GPU offerings"
            + (f", {len(capped)} capped by the account's quotas" if len(capped) else "")
        )
    console.print(f"wrote {target}", markup=False)


def export_to_skypilot(directory: Path) -> None:
    """Write the offerings in force as SkyPilot catalog files under `directory`."""
    from catalog.skypilot import export_sky_catalog

    offerings, gpus, _ = current_offerings()
    for cloud, path in export_sky_catalog(offerings, gpus, directory).items():
        console.print(f"{cloud}: {path}", markup=False)
