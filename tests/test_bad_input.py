"""Bad input, property-based: whatever mix of good and bad lines a job file holds, each bad line is named by
file, line and field, and every valid line is read, once, in order. Then `submit --skip-invalid` for real."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costserve.jobs.reader import LineError, read_jobs

# kind -> (line bytes for job number i, field the error must name or None when valid)
KINDS = {
    "plain": (lambda i: json.dumps({"id": f"j{i}", "prompt": f"p {i}", "max_tokens": 1 + i % 50}).encode(), None),
    "batch": (lambda i: json.dumps({"custom_id": f"j{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"messages": [{"role": "user", "content": f"m {i}"}], "max_tokens": 8}}).encode(), None),
    "unicode": (lambda i: json.dumps({"id": f"j{i}", "prompt": f"ünïcødé {i} 🚀"}, ensure_ascii=False).encode(), None),
    "malformed": (lambda i: b'{"id": "j%d", "prompt": "unterminated' % i, "json"),
    "wrong type": (lambda i: json.dumps({"id": f"j{i}", "prompt": "x", "max_tokens": str(i)}).encode(), "max_tokens"),
    "missing prompt": (lambda i: json.dumps({"id": f"j{i}"}).encode(), "prompt"),
    "empty prompt": (lambda i: json.dumps({"id": f"j{i}", "prompt": ""}).encode(), "prompt"),
    "whitespace prompt": (lambda i: json.dumps({"id": f"j{i}", "prompt": " \t "}).encode(), "prompt"),
    "invalid utf-8": (lambda i: b'{"id": "j%d", "prompt": "\xff\xfe"}' % i, "line"),
    "not an object": (lambda i: b"[%d]" % i, "line"),
    "blank": (lambda i: b"   ", "line"),
    "negative max_tokens": (lambda i: json.dumps({"id": f"j{i}", "prompt": "x", "max_tokens": -i - 1}).encode(), "max_tokens"),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=40),
       duplicates=st.lists(st.integers(min_value=0, max_value=39), max_size=5))
def test_every_bad_line_is_named_and_every_valid_line_read_once(kinds: list[str], duplicates: list[int]) -> None:
    lines: list[bytes] = []
    expected: list[tuple[str, str | None]] = []  # per line: ("ok", custom_id) or ("bad", field)
    for i, kind in enumerate(kinds):
        make, field = KINDS[kind]
        lines.append(make(i))
        expected.append(("ok", f"j{i}") if field is None else ("bad", field))
    for d in duplicates:  # repeat an earlier valid line: a duplicate custom_id
        if d < len(kinds) and expected[d][0] == "ok":
            lines.append(lines[d])
            expected.append(("bad", "custom_id" if b'"custom_id"' in lines[d] else "id"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        got = list(read_jobs(path))
    assert len(got) == len(expected)
    for n, (item, (state, what)) in enumerate(zip(got, expected), start=1):
        if state == "ok":
            assert not isinstance(item, LineError), str(item)
            assert item.custom_id == what and item.line == n
        else:
            assert isinstance(item, LineError) and item.line == n and item.field == what, (item, what)
            assert str(item).startswith(f"{path}:{n}: {what}: ") and "\n" not in str(item)


def test_a_hundred_thousand_line_file_streams(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        for i in range(100_000):
            f.write(KINDS["plain"][0](i) + b"\n" if i % 1000 else b"{broken\n")
    bad = good = 0
    for item in read_jobs(path):
        if isinstance(item, LineError):
            bad += 1
            assert item.line % 1000 == 1 and item.field == "json"
        else:
            good += 1
    assert (good, bad) == (99_900, 100)


@pytest.mark.slow
def test_submit_skip_invalid_runs_the_valid_lines_and_keeps_the_rejected(cli, tmp_path: Path, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app
    from costserve.store.runs import runs_dir

    jobs = tmp_path / "jobs.jsonl"
    too_long = "word " * 10_000  # more tokens than the model's context: rejected at validation, with its token count
    lines = [json.dumps({"id": "a", "prompt": "hello", "max_tokens": 3}).encode(), b'{"id": "b", "prompt": 7}',
             json.dumps({"id": "c", "prompt": too_long, "max_tokens": 3}).encode(), b"\xff",
             json.dumps({"id": "d", "prompt": "bye", "max_tokens": 3}).encode()]
    jobs.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    refused = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--yes"])
    assert refused.exit_code == 2 and "--skip-invalid" in refused.output
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--yes", "--skip-invalid",
                              "--shard-size", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "d"] and all(r["error"] is None for r in rows)
    (run_dir,) = runs_dir().iterdir()
    assert (run_dir / "rejected.jsonl").read_bytes() == lines[1] + b"\n" + lines[2] + b"\n" + lines[3] + b"\n"
    errors = (run_dir / "rejected.errors.txt").read_text().splitlines()
    assert [e.split(": ")[0:2] for e in errors] == [[f"{jobs}:2", "prompt"], [f"{jobs}:3", "prompt"], [f"{jobs}:4", "line"]]
    assert "prompt is 10,001 tokens; tiny's context is 2,048 tokens" in errors[1]
    assert errors[2].endswith("invalid UTF-8 at byte 1")


def test_a_bad_resume_from_file_is_one_line_naming_file_line_and_field(cli, tmp_path: Path) -> None:
    from costserve.cli import app
    from costserve.store.runs import runs_dir

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": "hi", "max_tokens": 4}) + "\n" for i in range(3)))
    ok = json.dumps({"id": "batch_req_1", "custom_id": "j0", "error": None,
                     "response": {"status_code": 200, "request_id": "r", "body": {}}})
    args = ["submit", str(jobs), "--backend", "sky", "--dry-run", "--model", "SmolLM2-135M", "--resume-from"]
    for bad, expected in ((ok + "\n{not json\n", ":2: not a JSON object"),
                          (ok + "\n" + json.dumps({"id": "x", "response": None}) + "\n", ":2: custom_id: missing")):
        earlier = tmp_path / "earlier.jsonl"
        earlier.write_text(bad)
        result = cli.invoke(app, args + [str(earlier)])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert f"{earlier}{expected}" in result.output
    assert not runs_dir().exists() or not any(runs_dir().iterdir())  # refused before anything was created


def test_a_driver_given_an_order_it_cannot_read_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "order.json"
    bad.write_text("{not an order")
    for order in (bad, tmp_path / "missing.json"):
        done = subprocess.run([sys.executable, "-m", "costserve.cli.driver", str(order)], capture_output=True, text=True,
                              timeout=120)
        (line,) = done.stderr.strip().splitlines()
        assert done.returncode == 2 and line.startswith(f"costserve: {order}: not a submit order (") and not done.stdout
