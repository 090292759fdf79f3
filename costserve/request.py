"""The BatchRequest: what the user asked for, typed, built once by the CLI and stored once per run.

`submit` writes it to the run directory as `request.json`; `resume`, re-planning and the
report read it from there; a schedule stores one and fires it. It holds no secrets: a
`--broker` URL (it may carry a password) is given again on resume and never stored.
Times in seconds, money in $.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from costserve.durations import format_duration

REQUEST_FILE = "request.json"


def errors_path_for(out: Path) -> Path:
    """The default error file beside a results file: `X.results.jsonl` -> `X.results.errors.jsonl`."""
    return out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")


class BatchRequest(BaseModel):
    """One batch: the job file, the model, and the deadline, budget and quality it must meet, and where it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: Path | None = Field(description="the job file (JSON Lines), absolute; None: a workload JSON is planned")
    model: str | None = Field(None, description="catalog model, HF model dir or .gguf; None: the configured default")
    deadline_s: float = Field(8 * 3600.0, gt=0, description="finish within (s)")
    budget: float | None = Field(None, gt=0, description="most to spend ($)")
    quality: float = Field(0.99, ge=0.0, le=1.0, description="least predicted quality vs the 16-bit model")
    confidence: float = Field(
        0.9, gt=0.0, lt=1.0, description="the fleet's makespan at this quantile must fit the deadline"
    )
    spot: bool = False
    clouds: tuple[str, ...] | None = Field(None, description="only these clouds' offerings")
    available: str | None = Field(None, description="GPU caps, e.g. H100=2,L4=16")
    backend: Literal["local", "sky"] = "local"
    workers: int = Field(1, ge=1, description="local worker processes")
    stages: int = Field(2, ge=1, description="pipeline stages per local replica")
    shard_size: int = Field(32, ge=1, description="jobs per queued shard")
    replica: Path | None = Field(None, description="run this replica JSON instead of the planned one (local)")
    out: Path | None = Field(None, description="results file; None: JOBS.results.jsonl")
    errors_out: Path | None = Field(None, description="failed requests' file; None: beside the results, X.errors.jsonl")
    resume_from: Path | None = Field(
        None,
        description="results of an earlier submit: custom_ids with a result there "
        "are skipped, and their lines carried into this run's results",
    )
    strict: bool = Field(False, description="request fields costserve does not honour are errors, not warnings")
    skip_invalid: bool = False
    model_override: bool = Field(False, description="serve jobs naming another model with this one (counted, warned)")
    model_source: str | None = Field(
        None,
        description="sky: where nodes get the weights instead of Hugging Face: "
        "s3://…, gs://… or a local directory (a SkyPilot file mount)",
    )
    plan_file: Path | None = Field(
        None, description="sky: run this plan (`costserve plan --out`) instead of planning, once checked"
    )
    profile_first: bool = Field(
        False,
        description="local: without a profile of the model on this machine, take a quick "
        "one (about 20 s) before planning",
    )

    @field_validator("model_source")
    @classmethod
    def _model_source(cls, value: str | None) -> str | None:
        if value is None or value.startswith(("s3://", "gs://")):
            return value
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"{value!r} is neither s3://…, gs://… nor a directory of model weights")
        return str(path)

    @field_validator("jobs", "replica", "out", "errors_out", "resume_from", "plan_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser().resolve()

    @field_validator("clouds")
    @classmethod
    def _clouds(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(sorted({c.strip().lower() for c in value if c.strip()})) or None

    @property
    def job_file(self) -> Path:
        """The job file (absolute); BadRequestError for a request that plans a workload JSON instead."""
        if self.jobs is None:
            from costserve.errors import BadRequestError

            raise BadRequestError("this request plans a workload and has no job file to run")
        return self.jobs

    @property
    def results_path(self) -> Path:
        """Where the results file goes."""
        return self.out or self.job_file.with_suffix(".results.jsonl")

    @property
    def errors_path(self) -> Path:
        """Where failed requests go (OpenAI's error file): --errors-out, else beside the results file."""
        return self.errors_out or errors_path_for(self.results_path)

    @classmethod
    def load(cls, run_dir: Path) -> BatchRequest | None:
        """The request a run was submitted with, or None (a run from before requests were stored)."""
        path = Path(run_dir) / REQUEST_FILE
        return cls.model_validate_json(path.read_text()) if path.is_file() else None

    def describe(self) -> str:
        """The request in one line for a listing: the deadline, then every field that differs from its default
        (`deadline 6h, budget 40.0, spot`), the job file and the model left out (listings show them apart)."""
        parts = [f"deadline {format_duration(self.deadline_s, whole=False)}"]
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if name in ("jobs", "model", "deadline_s") or value == info.default:
                continue
            shown = ",".join(value) if isinstance(value, tuple) else value
            parts.append(name.replace("_", " ") if value is True else f"{name.replace('_', ' ')} {shown}")
        return ", ".join(parts)
