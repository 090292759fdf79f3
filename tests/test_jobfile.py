"""The job-file reader: both input forms, every kind of bad line, duplicates, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costserve.jobs.reader import JobFileError, LineError, read_jobs
from costserve.jobs.schema import MAX_TOKENS_LIMIT, Job
from tests.conftest import EXAMPLES


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            f.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


def chat(cid: str, content: str = "Hello", **body) -> dict:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": content}], **body},
    }


def errors_of(path: Path) -> list[LineError]:
    return [x for x in read_jobs(path) if isinstance(x, LineError)]


def test_examples_are_valid_and_varied() -> None:
    items = list(read_jobs(EXAMPLES / "jobs.jsonl"))
    assert all(isinstance(x, Job) for x in items)
    assert len(items) >= 200
    assert {j.endpoint for j in items} == {"chat", "completion"}
    lengths = sorted(j.estimated_input_tokens() for j in items)
    assert lengths[-1] > 5 * lengths[len(lengths) // 2]  # long and short prompts both present
    assert len({j.max_tokens for j in items}) >= 5
    plain = list(read_jobs(EXAMPLES / "plain.jsonl"))
    assert plain and all(isinstance(x, Job) and x.endpoint == "completion" for x in plain)


def test_batch_and_plain_forms_normalise(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "j.jsonl",
        [
            chat("a", "Hi", max_tokens=10, temperature=0.5, top_p=0.9, stop="END", seed=3),
            {"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Once", "max_completion_tokens": 7}},
            {"id": 17, "prompt": "plain one", "max_tokens": 5},
            {"prompt": "no id"},
            chat("c", [{"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}]),
        ],
    )
    a, b, p, q, c = list(read_jobs(path, default_max_tokens=99))
    assert (a.endpoint, a.messages, a.max_tokens, a.temperature, a.top_p, a.stop, a.seed) == (
        "chat", (("user", "Hi"),), 10, 0.5, 0.9, ("END",), 3)
    assert (b.endpoint, b.prompt, b.max_tokens, b.model) == ("completion", "Once", 7, None)
    assert (p.custom_id, p.prompt, p.max_tokens, p.line) == ("17", "plain one", 5, 3)
    assert (q.custom_id, q.max_tokens) == ("line-4", 99)
    assert c.messages == (("user", "part one part two"),)


@pytest.mark.parametrize(
    ("line", "field", "problem"),
    [
        (b'{"custom_id": "x", "method": "POST"', "json", "malformed JSON"),
        (chat("x", max_tokens="100"), "body.max_tokens", "valid integer"),
        ({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {"max_tokens": 5}}, "body.messages", "missing"),
        ({"custom_id": "x", "method": "POST", "url": "/v1/completions", "body": {"max_tokens": 5}}, "body.prompt", "missing"),
        ({"id": "x", "max_tokens": 5}, "prompt", "missing"),
        (chat("x", "   \n "), "body.messages", "empty prompt"),
        ({"id": "x", "prompt": "  "}, "prompt", "empty prompt"),
        ({"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}, "url", "/v1/chat/completions"),
        ({"custom_id": "x", "method": "GET", "url": "/v1/completions", "body": {"prompt": "p"}}, "method", "POST"),
        (chat("x", max_tokens=-5), "body.max_tokens", "greater than or equal to 1"),
        (chat("x", max_tokens=MAX_TOKENS_LIMIT + 1), "body.max_tokens", f"less than or equal to {MAX_TOKENS_LIMIT}"),
        (chat("x", temperature=7), "body.temperature", "less than or equal to 2"),
        (b'{"id": "x", "prompt": "caf\xe9"}', "line", "invalid UTF-8"),
        (b"", "line", "blank line"),
        (b"   \t ", "line", "blank line"),
        (b"[1, 2]", "line", "JSON object"),
        ({"id": "x", "promt": "typo"}, "promt", "unknown field"),
        ({"custom_id": "", "method": "POST", "url": "/v1/completions", "body": {"prompt": "p"}}, "custom_id", "at least 1"),
        ({"custom_id": "x", "method": "POST", "url": "/v1/completions", "body": {"prompt": ["a", "b"]}}, "body.prompt", "one prompt per line"),
        ({"id": "x", "prompt": ["a", "b"]}, "prompt", "one prompt per line"),
        (chat("x", [{"type": "image_url", "image_url": "u"}]), "body.messages[0].content", "only text"),
        (chat("x", stop=["a", "b", "c", "d", "e"]), "body.stop", "at most 4"),
    ],
)
def test_each_bad_line_names_file_line_and_field(tmp_path: Path, line, field: str, problem: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [chat("ok1"), line, chat("ok2")])
    items = list(read_jobs(path))
    assert [type(x).__name__ for x in items] == ["Job", "LineError", "Job"]  # neighbours survive
    err = items[1]
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert problem in err.problem
    assert str(err).startswith(f"{path}:2: {field}: ")
    assert "\n" not in str(err)


def test_duplicate_ids_point_at_first_use(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [chat("a"), chat("b"), chat("a"), {"id": "b", "prompt": "p"}])
    errs = errors_of(path)
    assert [(e.line, e.field) for e in errs] == [(3, "custom_id"), (4, "id")]
    assert "first used on line 1" in errs[0].problem and "line 2" in errs[1].problem


def test_reader_streams(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [chat(f"j{i}") for i in range(1000)])
    gen = read_jobs(path)
    first = next(gen)  # a generator: the first job comes before the file is read to the end
    assert isinstance(first, Job) and first.custom_id == "j0"
    assert sum(1 for _ in gen) == 999


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"nope\.jsonl: no such file"):
        list(read_jobs(tmp_path / "nope.jsonl"))
    with pytest.raises(JobFileError, match="is a directory"):
        list(read_jobs(tmp_path))
