"""Job schemas: the OpenAI Batch request line and costserve's plain form, and the normalised Job.

Both input forms are validated with pydantic in strict mode (a string "100" is not a
number) and become one `Job` (`solver/plan.py`, the contract), the only job type costserve,
the planner and the workers know.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from solver.plan import Job, estimate_tokens

__all__ = ["Job", "estimate_tokens"]  # the one job record is the contract's (solver/plan.py)

# Largest context among the shipped models (Llama-3.1: 131,072 tokens); a larger request
# cannot be served by any of them and is almost always a typo.
MAX_TOKENS_LIMIT = 131_072
DEFAULT_MAX_TOKENS = 256
CHAT_URL = "/v1/chat/completions"
COMPLETIONS_URL = "/v1/completions"


def _text_of_content(value: Any) -> str:
    """Content of a chat message: a string, or a list of `{"type": "text", "text": ...}` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise ValueError('content parts must be {"type": "text", "text": "..."} (only text is supported)')
            texts.append(part["text"])
        return "".join(texts)
    raise ValueError(f"content must be a string or a list of text parts, not {type(value).__name__}")


def _check_stop(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = (value,) if isinstance(value, str) else tuple(value)
    if len(stops) > 4:
        raise ValueError(f"at most 4 stop sequences (got {len(stops)})")
    if any(s == "" for s in stops):
        raise ValueError("stop sequences must not be empty")
    return stops


def _single_prompt(value: Any) -> Any:
    if isinstance(value, list):
        raise ValueError("one prompt per line: a list of prompts is not supported, split it into lines")
    return value


def _non_blank(prompt: str) -> str:
    if not prompt.strip():
        raise ValueError("empty prompt")
    return prompt


# A completion prompt in either form: one non-blank string.
Prompt = Annotated[str, BeforeValidator(_single_prompt), AfterValidator(_non_blank)]


class _Sampling(BaseModel):
    """Generation parameters shared by every form. Unknown OpenAI parameters are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = Field(None, min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT, description="OpenAI's newer name")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="a 64-bit integer, as OpenAI's")

    @field_validator("stop")
    @classmethod
    def _stop_ok(cls, value: str | list[str] | None) -> str | list[str] | None:
        _check_stop(value)
        return value


class ChatMessage(BaseModel):
    """One chat message; `content` is normalised to plain text."""

    model_config = ConfigDict(strict=True, extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _content_text(cls, value: Any) -> str:
        return _text_of_content(value)


class ChatBody(_Sampling):
    """Body of a `/v1/chat/completions` request."""

    messages: list[ChatMessage] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if all(not m.content.strip() for m in messages):
            raise ValueError("empty prompt: every message's content is blank")
        return messages


class CompletionBody(_Sampling):
    """Body of a `/v1/completions` request (one prompt string per line)."""

    prompt: Prompt


class BatchRequestLine(BaseModel):
    """One line of an OpenAI Batch input file."""

    model_config = ConfigDict(strict=True, extra="forbid")

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: Literal["/v1/chat/completions", "/v1/completions"]
    body: dict[str, Any]


class PlainJobLine(_Sampling):
    """costserve's plain form: `{"id": ..., "prompt": ..., "max_tokens": ...}`."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=512)
    prompt: Prompt

    @field_validator("id", mode="before")
    @classmethod
    def _int_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def body_schema(url: str) -> type[ChatBody] | type[CompletionBody]:
    """The pydantic schema of a Batch line's body for its `url`."""
    return ChatBody if url == CHAT_URL else CompletionBody


def job_from_batch_line(
    req: BatchRequestLine, body: ChatBody | CompletionBody, line: int, default_max_tokens: int
) -> Job:
    """Normalise a validated OpenAI Batch line and its validated body into a Job."""
    max_tokens = body.max_completion_tokens or body.max_tokens or default_max_tokens
    common: dict[str, Any] = dict(
        custom_id=req.custom_id,
        line=line,
        model=body.model,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=_check_stop(body.stop),
        seed=body.seed,
    )
    if isinstance(body, ChatBody):
        messages = tuple((m.role, m.content) for m in body.messages)
        return Job(endpoint="chat", messages=messages, **common)
    return Job(endpoint="completion", prompt=body.prompt, **common)


def job_from_plain_line(req: PlainJobLine, line: int, default_max_tokens: int) -> Job:
    """Normalise a validated plain-form line into a Job (id defaults to `line-<N>`)."""
    return Job(
        custom_id=req.id or f"line-{line}",
        line=line,
        endpoint="completion",
        model=req.model,
        max_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=_check_stop(req.stop),
        seed=req.seed,
        prompt=req.prompt,
    )
