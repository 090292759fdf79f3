"""Generations as OpenAI Batch output lines: one per job, keyed by custom_id.

The lines follow what OpenAI's Batch API writes, field for field (checked against the `openai`
package's own types in tests/test_openai_fidelity.py): every id is new per result, as OpenAI's
are, the nullable fields are present as null, and `system_fingerprint` names the backend
configuration (costserve version, model, replica) so two results from the same configuration
carry the same fingerprint. A failed job's line has `response: null` and an `error`; the run
writes those to the error file, as OpenAI does.
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from typing import Any

from workers.engine import Generation


@functools.lru_cache(maxsize=8)
def backend_fingerprint(model: str, replica_json: str) -> str:
    """`fp_` and 10 hex digits identifying the costserve version, the model and the replica (stages, bits, batch).

    Cached: a worker asks for every result it writes, and the installed version is read from package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("costserve")  # workers/ never imports costserve/ (tests/test_layout.py): ask the installer
    except PackageNotFoundError:
        release = "source"
    return "fp_" + hashlib.sha256(f"{release}\n{model}\n{replica_json}".encode()).hexdigest()[:10]


def _usage(g: Generation) -> dict[str, Any]:
    return {
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def batch_output_line(
    g: Generation, model: str, created: int | None = None, fingerprint: str | None = None
) -> dict[str, Any]:
    """The OpenAI Batch output object for one Generation (`error` set when the job failed).

    `model` is the catalog model name; `created` unix s (default now)."""
    key = uuid.uuid4().hex
    line: dict[str, Any] = {"id": f"batch_req_{key}", "custom_id": g.custom_id}
    if g.error is not None:
        line.update(response=None, error={"code": "job_failed", "message": g.error})
        return line
    created = int(time.time()) if created is None else created
    common = {"created": created, "model": model, "system_fingerprint": fingerprint, "usage": _usage(g)}
    if g.chat:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": g.text,
            "refusal": None,
            "annotations": [],
            "audio": None,
            "function_call": None,
            "tool_calls": None,
        }
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": g.finish_reason}
        body = {
            "id": f"chatcmpl-{key}",
            "object": "chat.completion",
            "choices": [choice],
            "service_tier": None,
            **common,
        }
    else:
        choice = {"index": 0, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
        body = {"id": f"cmpl-{key}", "object": "text_completion", "choices": [choice], **common}
    line.update(response={"status_code": 200, "request_id": uuid.uuid4().hex, "body": body}, error=None)
    return line
