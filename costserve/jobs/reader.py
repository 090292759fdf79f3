"""Streaming reader for job files (JSON Lines): one `Job` or one `LineError` per input line.

The reader never holds the file in memory: it reads line by line in binary, so invalid
UTF-8 on one line is that line's error and not the file's. Only the custom_ids seen so
far are kept, to report duplicates. `costserve validate` and `costserve submit` share it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from costserve.errors import RequestError

if TYPE_CHECKING:
    from costserve.jobs.rules import ModelRules
    from costserve.jobs.unhonoured import FieldAudit

from costserve.jobs.schema import (
    DEFAULT_MAX_TOKENS,
    BatchRequestLine,
    Job,
    PlainJobLine,
    body_schema,
    job_from_batch_line,
    job_from_plain_line,
)

# Keys that mark a line as the OpenAI Batch form rather than the plain form.
_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class LineError:
    """A rejected input line: prints as `FILE:LINE: field: problem`."""

    path: str
    line: int
    field: str
    problem: str
    raw: bytes = b""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.problem}"


class JobFileError(RequestError):
    """The job file as a whole cannot be read (missing, a directory, unreadable)."""


def _loc_to_field(prefix: str, loc: tuple[Any, ...]) -> str:
    """pydantic error location -> `body.messages[0].content`."""
    field = prefix
    for part in loc:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field = f"{field}.{part}" if field else str(part)
    return field or "line"


def _describe_validation_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    """The first error of a ValidationError as (field, problem); notes how many more there are."""
    errors = exc.errors(include_url=False)
    # A misspelt field also makes the intended one "missing": name the typo, the root cause.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        problem = "unknown field (check its spelling)"
    elif first["type"] == "missing":
        problem = "required field is missing"
    if (
        "input" in first
        and first["type"] not in ("missing", "extra_forbidden")
        and not isinstance(first["input"], (dict, list))
    ):
        shown = repr(first["input"])
        problem += f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
    if len(errors) > 1:
        problem += f" (+{len(errors) - 1} more)"
    return _loc_to_field(prefix, first["loc"]), problem


def parse_job_line(obj: Any, line: int, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Job | tuple[str, str]:
    """Validate one decoded JSON value; returns the Job, or (field, problem) when it is invalid."""
    if not isinstance(obj, dict):
        return "line", f"expected a JSON object, got {type(obj).__name__}"
    try:
        if _BATCH_KEYS & obj.keys():
            req = BatchRequestLine.model_validate(obj)
        else:
            plain = PlainJobLine.model_validate(obj)
            return job_from_plain_line(plain, line, default_max_tokens)
    except ValidationError as exc:
        return _describe_validation_error(exc, "")
    try:
        body = body_schema(req.url).model_validate(req.body)
    except ValidationError as exc:
        return _describe_validation_error(exc, "body")
    return job_from_batch_line(req, body, line, default_max_tokens)


def _decode_line(name: str, lineno: int, raw: bytes) -> Any:
    """The JSON value of one raw line, or the LineError saying why it is not one (never an exception)."""
    content = raw.rstrip(b"\r\n")
    if lineno == 1:
        content = content.removeprefix(UTF8_BOM)  # editors on Windows start files with one
    if not content.strip():
        return LineError(name, lineno, "line", "blank line (each line must be one JSON object)", raw)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(name, lineno, "line", f"invalid UTF-8 at byte {exc.start + 1}", raw)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return LineError(name, lineno, "json", f"malformed JSON: {exc.msg} at column {exc.colno}", raw)
    except RecursionError:  # json recurses per nesting level; a hostile line must not end the file
        return LineError(name, lineno, "json", "nested too deeply (arrays or objects inside each other)", raw)
    except ValueError as exc:  # an integer longer than Python's int_max_str_digits (4,300 digits)
        return LineError(name, lineno, "json", f"number too large: {str(exc).split(';')[0]}", raw)


def read_jobs(
    path: Path,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    on_bytes: Callable[[int], None] | None = None,
    digest: Any = None,
    rules: ModelRules | None = None,
    audit: FieldAudit | None = None,
) -> Iterator[Job | LineError]:
    """Yield a Job or a LineError for every line of a JSON Lines job file, in file order.

    `on_bytes(n)` is called with the byte count of each line read (for progress bars); `digest` (a hashlib
    object) is updated with every byte read, so one pass both reads and hashes the file. With `rules`, a job
    the run's model cannot serve (another model's name, a prompt that fills its context) is a LineError too.
    `audit` counts the request fields costserve does not honour (a LineError when it is strict).
    Raises JobFileError (one line, naming the file) when the file cannot be opened.
    """
    name = str(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise JobFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise JobFileError(f"{name}: is a directory, expected a .jsonl file") from None
    except OSError as exc:
        raise JobFileError(f"{name}: cannot open: {exc.strerror}") from None
    seen: dict[str, int] = {}  # custom_id -> first line, to report duplicates
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if on_bytes is not None:
                on_bytes(len(raw))
            if digest is not None:
                digest.update(raw)
            obj = _decode_line(name, lineno, raw)
            if isinstance(obj, LineError):
                yield obj
                continue
            parsed = parse_job_line(obj, lineno, default_max_tokens)
            if isinstance(parsed, tuple):
                yield LineError(name, lineno, parsed[0], parsed[1], raw)
                continue
            if audit is not None and (unhonoured := audit.problem(obj, lineno)) is not None:
                yield LineError(name, lineno, unhonoured[0], unhonoured[1], raw)
                continue
            if rules is not None and (problem := rules.problem(parsed, "body" in obj)) is not None:
                yield LineError(name, lineno, problem[0], problem[1], raw)
                continue
            first = seen.setdefault(parsed.custom_id, lineno)
            if first != lineno:
                field = "custom_id" if "custom_id" in obj else "id"
                yield LineError(name, lineno, field, f"duplicate {parsed.custom_id!r}, first used on line {first}", raw)
                continue
            yield parsed


def valid_jobs(
    path: Path,
    default_max_tokens: int,
    on_error: Callable[[LineError], None],
    on_bytes: Callable[[int], None] | None = None,
    digest: Any = None,
    rules: ModelRules | None = None,
    audit: FieldAudit | None = None,
) -> Iterator[Job]:
    """The valid jobs of a job file, streamed in file order; each bad line goes to `on_error` (`digest`, `rules`: see
    read_jobs)."""
    for item in read_jobs(path, default_max_tokens, on_bytes, digest, rules, audit):
        if isinstance(item, LineError):
            on_error(item)
        else:
            yield item
