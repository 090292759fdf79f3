"""Request fields costserve accepts but does not honour, said out loud (`--strict`: refused).

OpenAI's request bodies carry many parameters; costserve's engines honour `model`,
`max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `stop` and `seed`. A line that
asks for more (three completions with `n: 3`, `logprobs`, `tools`, a JSON `response_format`)
would silently get less. Each such field is counted over the file and reported in one warning
line per field; with `--strict` the line is a bad line instead. A field set to its neutral value
(`n: 1`, `logprobs: false`, `presence_penalty: 0`, `tools: []`, null) asks for nothing and
passes quietly, as do fields that change no output (`user`, `metadata`, `store`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# Each field costserve does not honour, with the values that ask for nothing.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "best_of": (1,),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "echo": (False,),
    "tools": ([],),
    "tool_choice": ("none", "auto"),
    "functions": ([],),
    "function_call": ("none", "auto"),
    "parallel_tool_calls": (True, False),
    "response_format": ({"type": "text"},),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logit_bias": ({},),
    "suffix": ("",),
    "modalities": (["text"],),
    "audio": (),
    "prediction": (),
    "reasoning_effort": (),
    "stream": (False,),
    "stream_options": (),
    "web_search_options": (),
    "service_tier": ("auto", "default"),
}


def unhonoured_fields(body: dict[str, Any]) -> list[str]:
    """The fields of a request body that ask for something costserve does not do, in the body's order."""
    return [key for key, value in body.items() if key in NEUTRAL and value is not None and value not in NEUTRAL[key]]


class FieldAudit:
    """Counts, over a job file, the lines that set each unhonoured field; `strict` makes them bad lines."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.first_line: dict[str, int] = {}

    def problem(self, obj: dict[str, Any], line: int) -> tuple[str, str] | None:
        """(field, message) when `strict` and the line sets an unhonoured field; otherwise counts it and returns None."""
        raw = obj.get("body")
        body: dict[str, Any] = raw if isinstance(raw, dict) else obj
        fields = unhonoured_fields(body)
        if not fields:
            return None
        if self.strict:
            where = "body." if body is not obj else ""
            return f"{where}{fields[0]}", f"{fields[0]}={body[fields[0]]!r} is not supported by costserve (--strict)"
        for name in fields:
            self.counts[name] += 1
            self.first_line.setdefault(name, line)
        return None

    def warnings(self, path: object) -> list[str]:
        """One line per unhonoured field: how many jobs set it, the first line, and what happens instead."""
        return [
            f"{path}: {n:,} job(s) set {name} (first on line {self.first_line[name]}), which costserve does not "
            f"honour: they run without it (--strict refuses such lines)"
            for name, n in self.counts.most_common()
        ]
