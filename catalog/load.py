"""Load and validate catalog CSV files into pandas DataFrames.

A bad file raises CatalogError with one line: `FILE:LINE: column: problem` (LINE counts
the header as line 1). The shipped files live in `catalog/data/`; the user's refreshed
offerings (`$COSTSERVE_HOME/catalog/offerings.csv`) replace the shipped ones when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from catalog.schema import GpuRow, MeasuredThroughputRow, ModelRow, OfferingRow, QuantizedCheckpointRow
from costserve.errors import CatalogError

if TYPE_CHECKING:
    import pandas as pd


def shipped_path(name: str) -> Path:
    """Path of a catalog file shipped in the package (`gpus.csv`, `offerings.csv`, `models.csv`)."""
    return Path(__file__).resolve().parent / "data" / name


def user_catalog_dir(home: Path) -> Path:
    """Where `costserve catalog refresh` writes the user's catalog files."""
    return home / "catalog"


def read_rows(path: Path, schema: type[BaseModel]) -> pd.DataFrame:
    """Read a CSV, validate each row against `schema`, return a typed DataFrame (columns = fields)."""
    import pandas as pd

    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CatalogError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None
    fields = set(schema.model_fields)
    required = {name for name, f in schema.model_fields.items() if f.is_required()}
    for column in sorted(required - set(raw.columns)):
        raise CatalogError(f"{path}:1: {column}: required column is missing")
    for column in raw.columns:
        if column not in fields:
            raise CatalogError(f"{path}:1: {column}: unknown column (expected {', '.join(schema.model_fields)})")
    records = []
    for offset, row in enumerate(raw.to_dict("records")):
        cleaned = {k: (v.strip() if v.strip() != "" else None) for k, v in row.items()}
        cleaned = {k: v for k, v in cleaned.items() if v is not None or k not in required}
        try:
            records.append(schema.model_validate(cleaned).model_dump())
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            column = ".".join(str(p) for p in err["loc"]) or "row"
            message = err["msg"].removeprefix("Value error, ")
            if ": " in message and not err["loc"]:
                column, message = message.split(": ", 1)
            got = row.get(column)
            suffix = f" (got {got!r})" if got not in (None, "") else ""
            raise CatalogError(f"{path}:{offset + 2}: {column}: {message}{suffix}") from None
    provenance = ["source", "as_of"]
    columns = [f for f in schema.model_fields if f not in provenance] + provenance
    return pd.DataFrame.from_records(records, columns=columns)


def _unique(df: pd.DataFrame, keys: list[str], path: Path) -> None:
    dupes = df.duplicated(subset=keys, keep="first")
    if dupes.any():
        line = int(dupes.to_numpy().argmax()) + 2
        raise CatalogError(f"{path}:{line}: {','.join(keys)}: duplicate row")


def load_gpus(path: Path | None = None) -> pd.DataFrame:
    """GPU specs (one row per device kind, indexed by nothing; `gpu` is unique)."""
    path = path or shipped_path("gpus.csv")
    df = read_rows(path, GpuRow)
    _unique(df, ["gpu"], path)
    return df


def load_models(path: Path | None = None) -> pd.DataFrame:
    """Model architectures (`model` is unique)."""
    path = path or shipped_path("models.csv")
    df = read_rows(path, ModelRow)
    _unique(df, ["model"], path)
    return df


def offerings_path(home: Path | None) -> Path:
    """The offerings file in force: the user's refreshed copy if it exists, else the shipped one."""
    if home is not None:
        user = user_catalog_dir(home) / "offerings.csv"
        if user.exists():
            return user
    return shipped_path("offerings.csv")


def load_offerings(path: Path | None = None, gpus: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cloud offerings; every `gpu` must name a row of gpus.csv. Prices in $/h."""
    path = path or shipped_path("offerings.csv")
    df = read_rows(path, OfferingRow)
    _unique(df, ["cloud", "region", "instance_type", "gpu", "gpu_count"], path)
    _known(df, "gpu", set((gpus if gpus is not None else load_gpus())["gpu"]), path)
    return df


def load_measured_throughput(path: Path | None = None) -> pd.DataFrame:
    """Published offline throughput (output tokens/s) the cost model is held to; every gpu and model is in the catalog."""
    path = path or shipped_path("measured_throughput.csv")
    df = read_rows(path, MeasuredThroughputRow)
    _unique(df, ["gpu", "model", "precision", "kv_cache_dtype", "tp", "input_tokens", "output_tokens", "engine"], path)
    _known(df, "gpu", set(load_gpus()["gpu"]), path)
    _known(df, "model", set(load_models()["model"]), path)
    return df


def _known(df: pd.DataFrame, column: str, known: set[str], path: Path) -> None:
    """CatalogError naming the first line whose `column` is not in `<column>s.csv` (`known`)."""
    unknown = ~df[column].isin(known)
    if unknown.any():
        line = int(unknown.to_numpy().argmax()) + 2
        raise CatalogError(f"{path}:{line}: {column}: {df[column][line - 2]!r} is not in {column}s.csv")


def load_quantized_checkpoints(path: Path | None = None) -> pd.DataFrame:
    """Pre-quantized checkpoints vLLM serves (int8/int4 weights), one per model and bit-width; every model is in the
    catalog."""
    path = path or shipped_path("quantized_checkpoints.csv")
    df = read_rows(path, QuantizedCheckpointRow)
    _unique(df, ["model", "bits"], path)
    _known(df, "model", set(load_models()["model"]), path)
    return df
