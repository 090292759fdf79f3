"""Generations as OpenAI Batch output lines: one per job, keyed by custom_id."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from workers.engine import Generation


def batch_output_line(g: Generation, model: str, created: int | None = None) -> dict[str, Any]:
    """The OpenAI Batch output object for one Generation (`error` set when the job failed)."""
    rid = "req_" + hashlib.sha1(g.custom_id.encode()).hexdigest()[:24]
    line: dict[str, Any] = {"id": "batch_" + rid, "custom_id": g.custom_id}
    if g.error is not None:
        line.update(response=None, error={"code": "job_failed", "message": g.error})
        return line
    usage = {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens, "total_tokens": g.prompt_tokens + g.completion_tokens}
    created = int(time.time()) if created is None else created
    if g.chat:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason}
        body = {"id": "chatcmpl-" + rid[4:], "object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": usage}
    else:
        choice = {"index": 0, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
        body = {"id": "cmpl-" + rid[4:], "object": "text_completion", "created": created, "model": model, "choices": [choice], "usage": usage}
    line.update(response={"status_code": 200, "request_id": rid, "body": body}, error=None)
    return line
