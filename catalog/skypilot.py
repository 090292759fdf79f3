"""Exchange offerings with SkyPilot's catalog format (`<cloud>/vms.csv`, schema v8).

Import reads both layouts found in the wild: the 9-column one (`InstanceType,
AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB, Price, Region, GpuInfo, SpotPrice`,
as Lambda's fetcher writes it) and the 16-column one that adds `AvailabilityZone`, `Arch`
and local-disk/EFA columns (AWS). Columns are matched by name, so order does not matter.
Export writes costserve's offerings so that SkyPilot can plan and dry-run offline on our
prices (point `SKY_RUNTIME_DIR` or `HOME` at a directory holding `.sky/catalogs/v8/`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.load import CatalogError
from catalog.merge import merge_offerings

if TYPE_CHECKING:
    import pandas as pd

SKY_CLOUDS = ("aws", "gcp", "azure", "lambda")
SKY_SCHEMA_VERSION = "v8"
REQUIRED_COLUMNS = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "Region")


# GCP GPU -> host VM, as SkyPilot's gcp_catalog pairs them (A2/A3/G2 families have the GPUs
# built in; older GPUs attach to an N1 host, for which costserve uses n1-standard-8).
_GCP_HOST_FAMILY = {
    "A100-40GB": "a2-highgpu-{n}g",
    "A100-80GB": "a2-ultragpu-{n}g",
    "H100": "a3-highgpu-{n}g",
    "H200": "a3-ultragpu-{n}g",
}
_GCP_L4_HOSTS = {1: "g2-standard-4", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}
_GCP_N1_HOST = "n1-standard-8"


def gcp_host_type(gpu: str, count: int) -> str:
    """The GCP VM type that carries `count` GPUs of `gpu` in SkyPilot's GCP catalog layout."""
    if gpu in _GCP_HOST_FAMILY:
        return _GCP_HOST_FAMILY[gpu].format(n=count)
    if gpu == "L4":
        return _GCP_L4_HOSTS.get(count, _GCP_N1_HOST)
    return _GCP_N1_HOST


def sky_catalog_dir(root: Path) -> Path:
    """`<root>/.sky/catalogs/v8`: where SkyPilot looks when `SKY_RUNTIME_DIR=<root>`."""
    return root / ".sky" / "catalogs" / SKY_SCHEMA_VERSION


def _gpu_name_map(gpus: pd.DataFrame) -> dict[str, str]:
    """SkyPilot accelerator name -> costserve gpu name (first row wins: SXM before PCIe)."""
    mapping: dict[str, str] = {}
    for row in gpus.itertuples(index=False):
        if row.sky_name and row.sky_name not in mapping:
            mapping[row.sky_name] = row.gpu
    return mapping


def _with_gcp_hosts(gpu_rows: pd.DataFrame, hosts: pd.DataFrame) -> pd.DataFrame:
    """GCP's attached-accelerator rows (no InstanceType) joined to their host VM (`gcp_host_type`): prices ($/h) added.

    Accelerators without a listed host in their region are dropped; rows with an InstanceType pass unchanged.
    """
    import pandas as pd

    attached = gpu_rows["InstanceType"].isna()
    if not attached.any():
        return gpu_rows
    rows = []
    for _, row in gpu_rows[attached].iterrows():
        host_type = gcp_host_type(row["gpu"], int(row["AcceleratorCount"]))
        if (row["Region"], host_type) not in hosts.index:
            continue
        host = hosts.loc[(row["Region"], host_type)]
        host = host.iloc[0] if isinstance(host, pd.DataFrame) else host  # one row per zone
        row = row.copy()
        row["InstanceType"] = host_type
        row["vCPUs"], row["MemoryGiB"] = host["vCPUs"], host["MemoryGiB"]
        row["Price"] = row["Price"] + host["Price"]
        row["SpotPrice"] = row["SpotPrice"] + host["SpotPrice"]
        rows.append(row)
    return pd.concat([gpu_rows[~attached], pd.DataFrame(rows)]) if rows else gpu_rows[~attached]


def read_sky_vms(path: Path, cloud: str, gpus: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Offerings (costserve columns, without `availability`) from one SkyPilot `vms.csv`.

    Keeps GPU rows whose accelerator is in gpus.csv and that have an on-demand price; spot
    is the cheapest zone's. GCP lists a GPU VM as an accelerator row without InstanceType
    plus a host-VM row; the host is found as SkyPilot finds it (`gcp_host_type`) and the
    two prices are added. Returns the offerings and a count of skipped accelerators by name.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(
            f"{path}:1: {missing[0]}: required column is missing (a SkyPilot vms.csv has {', '.join(REQUIRED_COLUMNS)})"
        )
    if "SpotPrice" not in df.columns:
        df["SpotPrice"] = float("nan")
    hosts = df[df["AcceleratorName"].isna() & df["InstanceType"].notna()].set_index(["Region", "InstanceType"])
    gpu_rows = df[df["AcceleratorName"].notna()].copy()
    names = _gpu_name_map(gpus)
    is_pcie = gpu_rows["InstanceType"].fillna("").str.contains("pcie", case=False)
    mapped = gpu_rows["AcceleratorName"].map(names)
    mapped = mapped.mask(is_pcie & (mapped == "H100"), "H100-PCIe")
    skipped = gpu_rows.loc[mapped.isna(), "AcceleratorName"].value_counts().to_dict()
    gpu_rows["gpu"] = mapped
    gpu_rows = gpu_rows[mapped.notna()]
    whole = gpu_rows["AcceleratorCount"] == gpu_rows["AcceleratorCount"].round()
    gpu_rows = gpu_rows[whole & (gpu_rows["AcceleratorCount"] >= 1)]

    gpu_rows = _with_gcp_hosts(gpu_rows, hosts)
    gpu_rows = gpu_rows[gpu_rows["Price"].notna() & (gpu_rows["Price"] > 0)]
    keys = ["Region", "InstanceType", "gpu", "AcceleratorCount"]
    grouped = gpu_rows.groupby(keys, as_index=False).agg(
        vCPUs=("vCPUs", "max"), MemoryGiB=("MemoryGiB", "max"), Price=("Price", "min"), SpotPrice=("SpotPrice", "min")
    )
    as_of = dt.date.fromtimestamp(path.stat().st_mtime)
    out = pd.DataFrame(
        {
            "cloud": cloud,
            "region": grouped["Region"],
            "instance_type": grouped["InstanceType"],
            "gpu": grouped["gpu"],
            "gpu_count": grouped["AcceleratorCount"].astype(int),
            "vcpus": grouped["vCPUs"].round().astype(int),
            "host_memory_gib": grouped["MemoryGiB"].astype(float),
            "price_per_hour": grouped["Price"].astype(float),
            "spot_price_per_hour": grouped["SpotPrice"].where(grouped["SpotPrice"] > 0),
            "source": f"SkyPilot catalog {path.name} ({cloud})",
            "as_of": as_of,
        }
    )
    return out, {str(k): int(v) for k, v in skipped.items()}


def find_sky_vms(source: Path) -> dict[str, Path]:
    """The `vms.csv` files under a SkyPilot catalog dir (`<dir>/<cloud>/vms.csv`), by cloud.

    `source` may also be a `<cloud>` directory itself. Raises CatalogError when none is found.
    """
    if not source.is_dir():
        raise CatalogError(f"{source}: not a directory (expected a SkyPilot catalog dir with <cloud>/vms.csv)")
    found = {c: source / c / "vms.csv" for c in SKY_CLOUDS if (source / c / "vms.csv").is_file()}
    if not found and source.name in SKY_CLOUDS and (source / "vms.csv").is_file():
        found = {source.name: source / "vms.csv"}
    if not found:
        raise CatalogError(f"{source}: no <cloud>/vms.csv found for any of {', '.join(SKY_CLOUDS)}")
    return found


def import_sky_catalog(
    source: Path, current: pd.DataFrame, gpus: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """New offerings: `current` with the rows of every cloud found under `source` replaced.

    Availability is kept for offerings already known (see `merge_offerings`). Returns (offerings, rows imported per cloud,
    skipped accelerator counts).
    """
    import pandas as pd

    imported, counts = [], {}
    skipped: dict[str, int] = {}
    for cloud, path in find_sky_vms(source).items():
        frame, skip = read_sky_vms(path, cloud, gpus)
        imported.append(frame)
        counts[cloud] = len(frame)
        for name, n in skip.items():
            skipped[name] = skipped.get(name, 0) + n
    new = pd.concat(imported, ignore_index=True)
    merged = merge_offerings(current, new, current["cloud"].isin(list(counts)))
    return merged, counts, skipped


def _gpu_info(gpu: str, count: int, memory_gib: float) -> str:
    """SkyPilot's GpuInfo cell: a Python-literal dict read with ast.literal_eval."""
    mib = int(round(memory_gib * 1024))
    info = {
        "Gpus": [{"Name": gpu, "Manufacturer": "NVIDIA", "Count": float(count), "MemoryInfo": {"SizeInMiB": mib}}],
        "TotalGpuMemoryInMiB": mib * count,
    }
    return repr(info)


def export_sky_catalog(offerings: pd.DataFrame, gpus: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Write offerings as SkyPilot `<out_dir>/<cloud>/vms.csv` files (16-column layout).

    CPU-only offerings are written without accelerator columns. AWS rows get one zone,
    `<region>a`; GCP rows zone `<region>-a` in GCP's split layout (see `_gcp_layout`).
    Returns the written file per cloud.
    """
    import pandas as pd

    specs = gpus.set_index("gpu")
    written: dict[str, Path] = {}
    for cloud, rows in offerings.groupby("cloud", sort=True):
        is_gpu = rows["gpu"] != "cpu"
        sky_names = rows["gpu"].map(specs["sky_name"]).where(is_gpu)
        frame = pd.DataFrame(
            {
                "InstanceType": rows["instance_type"],
                "AcceleratorName": sky_names,
                "AcceleratorCount": rows["gpu_count"].astype(float).where(is_gpu),
                "vCPUs": rows["vcpus"].astype(float),
                "MemoryGiB": rows["host_memory_gib"].astype(float),
                "GpuInfo": [
                    _gpu_info(name, n, specs.at[g, "memory_gib"]) if g != "cpu" else None
                    for name, n, g in zip(sky_names, rows["gpu_count"], rows["gpu"])
                ],
                "Price": rows["price_per_hour"],
                "SpotPrice": rows["spot_price_per_hour"],
                "Region": rows["region"],
                "AvailabilityZone": rows["region"] + "a" if cloud == "aws" else None,
                "Arch": "x86_64",
            }
        )
        if cloud == "gcp":
            frame = _gcp_layout(frame)
        path = out_dir / str(cloud) / "vms.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        written[str(cloud)] = path
    written.update(_export_common(offerings, specs, out_dir))
    return written


def _export_common(offerings: pd.DataFrame, specs: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """SkyPilot's cross-cloud files (`common/accelerators.csv`, `common/metadata.csv`), which it
    would otherwise download before any launch or dryrun: accelerator names and their clouds,
    and GPU memory."""
    import pandas as pd

    gpu_rows = offerings[offerings["gpu"] != "cpu"]
    names = gpu_rows.assign(name=gpu_rows["gpu"].map(specs["sky_name"])).groupby("name")["cloud"]
    accelerators = pd.DataFrame(
        {"AcceleratorName": list(names.groups), "Clouds": [",".join(sorted(set(c))) for _, c in names]}
    )
    memory = specs[specs["per_vcpu"].astype(str).str.lower() != "true"]
    metadata = pd.DataFrame(
        {"GPU": memory["sky_name"], "MemoryGB": memory["memory_gib"].astype(float), "Manufacturer": memory["vendor"]}
    ).drop_duplicates("GPU")
    common = out_dir / "common"
    common.mkdir(parents=True, exist_ok=True)
    accelerators.to_csv(common / "accelerators.csv", index=False)
    metadata.to_csv(common / "metadata.csv", index=False)
    return {"common/accelerators": common / "accelerators.csv", "common/metadata": common / "metadata.csv"}


def _gcp_layout(frame: pd.DataFrame) -> pd.DataFrame:
    """SkyPilot's GCP layout: a GPU VM is a host-VM row plus an accelerator row without InstanceType.

    SkyPilot adds the two prices. costserve's price is for the whole VM, so the accelerator
    row carries it all and the host row (only used as a GPU host) carries $0.
    """
    import pandas as pd

    frame = frame.assign(AvailabilityZone=frame["Region"] + "-a")
    has_gpu = frame["AcceleratorName"].notna()
    hosts = (
        frame[has_gpu][["InstanceType", "vCPUs", "MemoryGiB", "Region", "AvailabilityZone", "Arch"]]
        .drop_duplicates(subset=["InstanceType", "Region"])
        .assign(Price=0.0, SpotPrice=0.0)
    )
    accelerators = frame[has_gpu].assign(InstanceType=None)
    return pd.concat([frame[~has_gpu], hosts, accelerators], ignore_index=True)[frame.columns]
