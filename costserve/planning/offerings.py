"""The catalog in force for this user: shipped prices and GPUs, the user's refreshed offerings and availability.

Also the request's filters: only the clouds it allows, GPU caps (`--available`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from catalog.availability import apply_availability, parse_gpu_limits
from catalog.load import load_gpus, load_models, load_offerings, offerings_path
from costserve.config import costserve_home
from costserve.errors import BadRequestError

if TYPE_CHECKING:
    import pandas as pd


def current_offerings() -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(offerings in force with the user's availability applied, gpus, the offerings file); CatalogError if unreadable."""
    home = costserve_home()
    gpus = load_gpus()
    path = offerings_path(home)
    return apply_availability(load_offerings(path, gpus), home), gpus, path


def requested_offerings(
    clouds: tuple[str, ...] | None, available: str | None, check_clouds: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int] | None, str]:
    """(offerings of the clouds in scope within the GPU caps, gpus, the caps, which clouds and why in words).

    The scope is `clouds`, else the clouds SkyPilot enabled when `check_clouds` (planning/cloud_scope.py), else the
    whole catalog. BadRequestError names the option at fault."""
    from costserve.planning.cloud_scope import cloud_scope

    offerings, gpus, _ = current_offerings()
    catalog = set(offerings["cloud"])
    scope = cloud_scope(clouds, catalog, check_clouds)
    if scope.clouds is not None:
        offerings = offerings[offerings["cloud"].isin(scope.clouds)]
    try:
        caps = parse_gpu_limits(available, set(gpus["gpu"]))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    return apply_availability(offerings, None, caps), gpus, caps, scope.describe(catalog)


def model_row(name: str) -> pd.Series:
    """The models.csv row of catalog model `name` (any case), or of the catalog model a local HF directory holds
    (matched by its config.json's architecture); BadRequestError lists the known ones."""
    from workers.model_source import catalog_model_name

    models = load_models()
    known = catalog_model_name(name)  # a directory of a catalog model's weights plans as that model
    match = models[models["model"].str.lower() == known.lower()]
    if match.empty:
        what = "a model directory the catalog has no architecture for" if known != name else "unknown model"
        raise BadRequestError(
            f"--model: {what} {name!r} (known: {', '.join(models['model'])}; `costserve catalog models` lists them)"
        )
    return match.iloc[0]
