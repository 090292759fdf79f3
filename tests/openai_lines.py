"""Checks that result lines are what OpenAI's Batch API writes, with the `openai` package's own types."""

from __future__ import annotations

from typing import Any

NULLABLE_BODY = ("system_fingerprint",)
NULLABLE_MESSAGE = ("refusal", "tool_calls", "function_call", "audio")
USAGE_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def check_output_line(line: dict[str, Any], model: str) -> None:
    """One successful output line: the Batch envelope, and a body the SDK's ChatCompletion/Completion types accept,
    with the nullable fields present (as OpenAI writes them) and the catalog model name."""
    from openai.types import Completion
    from openai.types.chat import ChatCompletion

    assert set(line) == {"id", "custom_id", "response", "error"} and line["error"] is None
    assert line["id"].startswith("batch_req_") and line["response"]["status_code"] == 200
    assert isinstance(line["response"]["request_id"], str) and line["response"]["request_id"]
    body = line["response"]["body"]
    kind = ChatCompletion if body["object"] == "chat.completion" else Completion
    parsed = kind.model_validate(body)
    assert set(body) <= set(kind.model_fields), set(body) - set(kind.model_fields)  # nothing the SDK does not know
    assert parsed.model == model and parsed.usage is not None
    assert all(key in body for key in NULLABLE_BODY) and all(key in body["usage"] for key in USAGE_DETAILS)
    if kind is ChatCompletion:
        message = body["choices"][0]["message"]
        assert all(key in message for key in NULLABLE_MESSAGE) and "logprobs" in body["choices"][0]
        assert parsed.choices[0].message.content == message["content"]


def check_error_line(line: dict[str, Any]) -> None:
    """One line of the error file: no response, an error the SDK's BatchError type accepts."""
    from openai.types import BatchError

    assert line["response"] is None and line["id"].startswith("batch_req_")
    error = BatchError.model_validate(line["error"])
    assert error.code and error.message
