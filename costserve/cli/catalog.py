"""`costserve catalog ...`: show, refresh and export the GPU, offering and model catalogs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

catalog_app = typer.Typer(help="Show, refresh and export the GPU / offering / model catalogs.", no_args_is_help=True)


class RefreshSource(str, Enum):
    skypilot = "skypilot"
    aws = "aws"


@catalog_app.command("gpus")
def show_gpus(gpu: Annotated[Optional[str], typer.Option(help="only this GPU")] = None) -> None:
    """GPU specs: memory (GiB), dense bf16 TFLOPS, int8 TOPS, bandwidth and links (GB/s)."""
    from costserve.planning.offerings import gpus_view

    gpus_view(gpu)


@catalog_app.command("offerings")
def show_offerings(
    cloud: Annotated[Optional[str], typer.Option(help="aws, gcp, azure or lambda")] = None,
    gpu: Annotated[Optional[str], typer.Option(help="only offerings of this GPU, e.g. L4")] = None,
    region: Annotated[Optional[str], typer.Option(help="only this region")] = None,
    available: Annotated[Optional[str], typer.Option(help="cap GPUs per type, e.g. H100=2,L4=16")] = None,
) -> None:
    """Cloud offerings with on-demand and spot $/h, cheapest per GPU first."""
    from costserve.planning.offerings import offerings_view

    offerings_view(cloud, gpu, region, available)


@catalog_app.command("models")
def show_models() -> None:
    """Model architectures: layers, widths, heads, vocab, parameters (billions), context (tokens)."""
    from costserve.planning.offerings import models_view

    models_view()


@catalog_app.command("refresh")
def refresh(
    source: Annotated[RefreshSource, typer.Option("--from", help="where to read prices from")],
    directory: Annotated[Optional[Path], typer.Argument(help="SkyPilot catalog dir holding <cloud>/vms.csv")] = None,
    region: Annotated[Optional[list[str]], typer.Option(help="AWS region(s) to refresh")] = None,
) -> None:
    """Update the user's offerings ($COSTSERVE_HOME/catalog/offerings.csv) from SkyPilot files or AWS.

    The previous catalog stays in place if anything fails.
    """
    from costserve.planning.offerings import refresh_from_aws, refresh_from_skypilot
    from costserve.cli.output import fail

    if source is RefreshSource.skypilot:
        if directory is None:
            fail("catalog refresh --from skypilot needs DIR (e.g. ~/.sky/catalogs/v8)")
        refresh_from_skypilot(directory)
    else:
        if not region:
            fail("catalog refresh --from aws needs --region (e.g. --region us-east-1)")
        refresh_from_aws(region)


@catalog_app.command("export")
def export(
    skypilot: Annotated[Path, typer.Option("--skypilot", help="directory to write <cloud>/vms.csv into")],
) -> None:
    """Write the offerings as SkyPilot catalog files, so SkyPilot plans offline on costserve's prices.

    Use DIR=~/.sky/catalogs/v8 (or SKY_RUNTIME_DIR=X with DIR=X/.sky/catalogs/v8).
    """
    from costserve.planning.offerings import export_to_skypilot

    export_to_skypilot(skypilot)
