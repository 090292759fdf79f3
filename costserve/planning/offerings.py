"""The work behind `costserve catalog ...`: load, filter, render, refresh, export."""

from __future__ import annotations

from pathlib import Path

from catalog.availability import apply_availability, parse_gpu_limits
from catalog.load import CatalogError, load_gpus, load_models, load_offerings, offerings_path
from costserve.config import costserve_home
from costserve.cli.output import console, fail, frame_table


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
}


def _load_or_fail(loader, *args):  # type: ignore[no-untyped-def]
    try:
        return loader(*args)
    except CatalogError as exc:
        fail(str(exc))


def gpus_view(gpu: str | None) -> None:
    """Print the GPU table (optionally one GPU)."""
    gpus = _load_or_fail(load_gpus)
    if gpu is not None:
        gpus = gpus[gpus["gpu"] == gpu]
        if gpus.empty:
            fail(f"unknown GPU {gpu!r}; `costserve catalog gpus` lists them")
    shown = gpus.set_index("gpu")[list(GPU_COLUMNS)].rename(columns=GPU_COLUMNS)
    console.print(frame_table(shown, "GPUs (cpu: per vCPU)", index_name="gpu"))


def current_offerings():  # type: ignore[no-untyped-def]
    """(offerings in force with the user's availability applied, gpus, the offerings file)."""
    home = costserve_home()
    gpus = _load_or_fail(load_gpus)
    path = offerings_path(home)
    offerings = _load_or_fail(load_offerings, path, gpus)
    return _load_or_fail(apply_availability, offerings, home), gpus, path


def offerings_view(cloud: str | None, gpu: str | None, region: str | None, available: str | None) -> None:
    """Print the offerings table, filtered, cheapest $/GPU-hour first."""
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
    per_gpu = offerings["price_per_hour"] / offerings["gpu_count"].clip(lower=1)
    shown = offerings.assign(per_gpu_hour=per_gpu).sort_values(["gpu", "per_gpu_hour"])
    shown = shown[list(OFFERING_COLUMNS)].rename(columns=OFFERING_COLUMNS)
    console.print(frame_table(shown.reset_index(drop=True), f"offerings ({len(shown)} rows, from {path})"))


def models_view() -> None:
    """Print the model architecture table."""
    models = _load_or_fail(load_models).drop(columns=["source", "as_of", "hf_id"])
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


def refresh_from_aws(regions: list[str]) -> None:
    """Fetch GPU instance types, on-demand and spot prices from AWS into the user's offerings."""
    from catalog.aws import AwsRefreshError, refresh_aws_offerings
    from catalog.store import save_offerings

    offerings, gpus, _ = current_offerings()
    try:
        merged, counts = refresh_aws_offerings(regions, offerings, gpus)
        target = save_offerings(merged, costserve_home(), gpus)
    except (AwsRefreshError, CatalogError) as exc:
        fail(f"catalog refresh failed, catalog unchanged: {exc}")
    for region, n in counts.items():
        console.print(f"aws {region}: {n} GPU offerings")
    console.print(f"wrote {target}", markup=False)


def export_to_skypilot(directory: Path) -> None:
    """Write the offerings in force as SkyPilot catalog files under `directory`."""
    from catalog.skypilot import export_sky_catalog

    offerings, gpus, _ = current_offerings()
    for cloud, path in export_sky_catalog(offerings, gpus, directory).items():
        console.print(f"{cloud}: {path}", markup=False)
