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

    @field_validator("jobs", "replica", "out", "errors_out", "resume_from")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser().resolve()

    @field_validator("clouds")
    @classmethod
    def _clouds(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(sorted({c.strip().lower() for c in value if c.strip()})) or None

    @property
    def results_path(self) -> Path:
        """Where the results file goes."""
        assert self.jobs is not None, "a request without a job file has no results"
        return self.out or self.jobs.with_suffix(".results.jsonl")

    @property
    def errors_path(self) -> Path:
        """Where failed requests go (OpenAI's error file): --errors-out, else beside the results file."""
        return self.errors_out or errors_path_for(self.results_path)

    def save(self, run_dir: Path) -> Path:
        """Write `request.json` in a run directory; returns its path."""
        path = Path(run_dir) / REQUEST_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> BatchRequest | None:
        """The request a run was submitted with, or None (a run from before requests were stored)."""
        path = Path(run_dir) / REQUEST_FILE
        return cls.model_validate_json(path.read_text()) if path.is_file() else None

    def submit_args(self) -> list[str]:
        """The `costserve submit` arguments that make this request again (how a schedule fires it)."""
        args = [
            str(self.jobs),
            "--deadline",
            format_duration(self.deadline_s, whole=False),
            "--quality",
            str(self.quality),
            "--backend",
            self.backend,
            "--shard-size",
            str(self.shard_size),
            "--workers",
            str(self.workers),
            "--stages",
            str(self.stages),
        ]
        optional = {
            "--budget": self.budget,
            "--model": self.model,
            "--replica": self.replica,
            "--out": self.out,
            "--errors-out": self.errors_out,
            "--resume-from": self.resume_from,
            "--model-source": self.model_source,
            "--clouds": ",".join(self.clouds) if self.clouds else None,
            "--available": self.available,
        }
        args += [a for flag, v in optional.items() if v is not None for a in (flag, str(v))]
        flags = {
            "--spot": self.spot,
            "--skip-invalid": self.skip_invalid,
            "--model-override": self.model_override,
            "--strict": self.strict,
            "--profile-first": self.profile_first,
        }
        return args + [flag for flag, on in flags.items() if on]
