"""Shipped catalog contents and loader validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.availability import apply_availability, parse_gpu_limits
from catalog.load import CatalogError, load_gpus, load_models, load_offerings, shipped_path
from costserve.cli import app

REQUIRED_GPUS = {"H200", "H100", "H100-PCIe", "A100-80GB", "A100-40GB", "L40S", "L4", "A10G", "A10", "T4",
                 "V100-16GB", "V100-32GB", "A6000", "cpu"}
REQUIRED_MODELS = {"SmolLM2-135M", "Llama-3.1-8B", "Llama-3.1-70B", "Llama-2-7B", "Llama-2-13B", "Llama-2-70B",
                   "Qwen2.5-7B", "Qwen2.5-14B", "Qwen2.5-32B", "Qwen2.5-72B", "Mixtral-8x7B", "Mistral-7B"}


def test_shipped_catalog_is_complete() -> None:
    gpus, offerings, models = load_gpus(), load_offerings(), load_models()
    assert REQUIRED_GPUS <= set(gpus["gpu"])
    assert REQUIRED_MODELS <= set(models["model"])
    assert len(offerings) >= 60
    regions = offerings.groupby("cloud")["region"].nunique()
    assert set(regions.index) >= {"aws", "gcp", "azure", "lambda"} and (regions >= 2).all()
    assert offerings["source"].str.len().gt(0).all() and offerings["as_of"].notna().all()
    assert offerings.loc[offerings["cloud"] == "lambda", "spot_price_per_hour"].isna().all()
    smol = models.set_index("model").loc["SmolLM2-135M"]
    assert (smol["layers"], smol["hidden"]) == (30, 576)  # what the embedded GGUF really has
    mixtral = models.set_index("model").loc["Mixtral-8x7B"]
    assert (mixtral["experts"], mixtral["experts_per_token"]) == (8, 2)


def _copy_with(tmp_path: Path, name: str, marker: str, old: str, new: str) -> tuple[Path, int]:
    """Copy a shipped file with `old` replaced on the first line containing `marker`; returns (path, line)."""
    lines = shipped_path(name).read_text().splitlines()
    index = next(i for i, text in enumerate(lines) if marker in text and old in text)
    lines[index] = lines[index].replace(old, new, 1)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path, index + 1


@pytest.mark.parametrize(
    ("name", "marker", "old", "new", "expected"),
    [
        ("offerings.csv", "g6.xlarge", ",0.8048,", ",cheap,", "price_per_hour: "),
        ("offerings.csv", "g5.xlarge", "aws,", "ibm,", "cloud: "),
        ("offerings.csv", "p5.48xlarge", ",H100,", ",H900,", "gpu: 'H900' is not in gpus.csv"),
        ("offerings.csv", "cloud,region", "availability", "availabilty", "availability: required column is missing"),
        ("gpus.csv", "A100-80GB", ",80.0,", ",-1,", "memory_gib: "),
        ("models.csv", "Llama-3.1-8B", ",32,4096,14336,32,8,", ",32,4096,14336,32,7,", "kv_heads: must divide heads"),
    ],
)
def test_bad_catalog_rows_name_file_line_and_column(tmp_path: Path, name, marker, old, new, expected) -> None:
    path, line = _copy_with(tmp_path, name, marker, old, new)
    loader = {"offerings.csv": load_offerings, "gpus.csv": load_gpus, "models.csv": load_models}[name]
    with pytest.raises(CatalogError) as info:
        loader(path)
    assert str(info.value).startswith(f"{path}:{line}: {expected}")
    assert "\n" not in str(info.value)


def test_gpu_limits_and_user_availability(costserve_home: Path) -> None:
    offerings = load_offerings()
    gpus = set(load_gpus()["gpu"])
    limits = parse_gpu_limits("H100=2,L4=16", gpus)
    capped = apply_availability(offerings, None, limits)
    h100 = capped[capped["gpu"] == "H100"]
    assert (h100.loc[h100["gpu_count"] == 8, "availability"] == 0).all()  # an 8-GPU box exceeds 2 GPUs
    assert (h100.loc[h100["gpu_count"] == 1, "availability"] <= 2).all()
    for bad, message in (("H100", "GPU=COUNT"), ("X1=2", "unknown GPU"), ("L4=two", "whole number")):
        with pytest.raises(ValueError, match=message):
            parse_gpu_limits(bad, gpus)

    costserve_home.mkdir(parents=True)
    (costserve_home / "availability.csv").write_text(
        "cloud,region,instance_type,availability\naws,us-east-1,g6.xlarge,3\nazure,,Standard_NC4as_T4_v3,0\n"
    )
    user = apply_availability(offerings, costserve_home).set_index(["cloud", "region", "instance_type", "gpu"])
    assert user.loc[("aws", "us-east-1", "g6.xlarge", "L4"), "availability"] == 3
    assert user.loc[("aws", "us-west-2", "g6.xlarge", "L4"), "availability"] == 16  # other region untouched
    assert (user.xs("Standard_NC4as_T4_v3", level="instance_type")["availability"] == 0).all()
    (costserve_home / "availability.csv").write_text("cloud,region,instance_type,availability\naws,,g9.huge,1\n")
    with pytest.raises(CatalogError, match=r"availability\.csv:2: instance_type: no offering aws/\*/g9\.huge"):
        apply_availability(offerings, costserve_home)


def test_catalog_commands_render_and_filter(cli) -> None:
    out = cli.invoke(app, ["catalog", "offerings", "--gpu", "T4", "--cloud", "azure"])
    assert out.exit_code == 0, out.output
    assert "Standard_NC4as_T4_v3" in out.output and "g4dn" not in out.output
    assert cli.invoke(app, ["catalog", "gpus"]).exit_code == 0
    assert "Mixtral-8x7B" in cli.invoke(app, ["catalog", "models"]).output
    bad = cli.invoke(app, ["catalog", "offerings", "--available", "L4"])
    assert bad.exit_code == 2 and "GPU=COUNT" in bad.output
