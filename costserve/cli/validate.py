"""`costserve validate`: stream job files, print bad lines, then a summary."""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from costserve.cli.output import BadLinePrinter, console, err_console, fail, frame_table
from costserve.cli.terminal import warn
from costserve.config import ConfigError, load_settings
from costserve.jobs.reader import JobFileError, valid_jobs
from costserve.jobs.stats import JobFileSummary
from costserve.jobs.unhonoured import FieldAudit


def run_validate(
    files: list[Path], max_errors: int | None, default_max_tokens: int | None, strict: bool = False
) -> int:
    """Validate `files`; returns the exit code (0 all good, 1 some lines bad or a file without jobs). Request fields costserve does not honour
    are one warning line per field, or bad lines when `strict`."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    max_errors = settings.max_errors if max_errors is None else max_errors
    default_max_tokens = default_max_tokens or settings.default_max_tokens
    summary = JobFileSummary()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    bad_lines = BadLinePrinter(progress.console, max_errors)
    empty: list[Path] = []  # files without a single line to run
    with progress:
        for path in files:
            size = path.stat().st_size if path.is_file() else None
            task = progress.add_task(f"validating {path.name}", total=size)
            audit = FieldAudit(strict)
            jobs_before, bad_before = summary.jobs, bad_lines.count
            try:
                for job in valid_jobs(
                    path,
                    default_max_tokens,
                    bad_lines,
                    on_bytes=lambda n: progress.advance(task, n),  # noqa: B023 (used in this iteration)
                    audit=audit,
                ):
                    summary.add(job, settings.default_model)
            except JobFileError as exc:
                progress.stop()
                fail(str(exc))
            for line in audit.warnings(path):
                warn(line)
            if summary.jobs == jobs_before and bad_lines.count == bad_before:  # `submit` refuses it the same way
                empty.append(path)
    summary.bad_lines = bad_lines.count
    _print_summary(summary, max_errors)
    for path in empty:
        err_console.print(
            f"{path}: no jobs (an empty file is refused by `costserve submit` too)", markup=False, soft_wrap=True
        )
    return 1 if summary.bad_lines or empty else 0


def _print_summary(summary: JobFileSummary, max_errors: int) -> None:
    import pandas as pd

    if summary.bad_lines > max_errors:
        err_console.print(f"... {summary.bad_lines - max_errors} more bad lines not shown (--max-errors {max_errors})")
    console.print(f"[bold]{summary.jobs:,}[/] valid jobs, [bold]{summary.bad_lines:,}[/] bad lines")
    if not summary.jobs:
        return
    per_model = pd.DataFrame({"jobs": pd.Series(summary.models)}).sort_values("jobs", ascending=False)
    console.print(frame_table(per_model, "models", index_name="model"))
    per_endpoint = pd.DataFrame({"jobs": pd.Series(summary.endpoints)})
    console.print(frame_table(per_endpoint, "endpoints", index_name="endpoint"))
    console.print(frame_table(summary.token_table(), "tokens per job (input estimated as chars/4)", index_name=""))
