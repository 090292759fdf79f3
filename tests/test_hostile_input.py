"""Hostile job lines are one-line errors, not tracebacks; the results file is written whole or not at all.

Issue 19, items 4 and 7: JSON nested 10,000 deep (RecursionError) and a 5,000-digit integer
(ValueError) used to kill the reader, so one line ended the whole file; a UTF-8 BOM made line
1 malformed; `--out` on a full filesystem truncated the previous results file mid-line. The
full filesystem here is real: the command runs with RLIMIT_FSIZE below the results' size, so
the kernel refuses the write (EFBIG), as it does at a quota or a full disk.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from costserve.jobs.reader import LineError, read_jobs

HOSTILE = [
    '{"id": "ok1", "prompt": "hello"}',
    '{"id": "deep", "prompt": ' + "[" * 10_000 + "]" * 10_000 + "}",
    '{"id": "big", "prompt": "x", "max_tokens": ' + "9" * 5_000 + "}",
    '{"id": "ok2", "prompt": "there"}',
]


def test_hostile_lines_are_errors_of_their_own_line_and_a_bom_is_accepted(tmp_path: Path) -> None:
    jobs = tmp_path / "hostile.jsonl"
    jobs.write_bytes(b"\xef\xbb\xbf" + "\n".join(HOSTILE).encode() + b"\n")
    items = list(read_jobs(jobs))
    assert [getattr(i, "custom_id", None) for i in items] == ["ok1", None, None, "ok2"]  # the rest of the file survives
    deep, big = items[1], items[2]
    assert isinstance(deep, LineError) and (deep.line, deep.field) == (2, "json") and "nested too deeply" in deep.problem
    assert isinstance(big, LineError) and (big.line, big.field) == (3, "json") and "number too large" in big.problem
    cli = subprocess.run([sys.executable, "-m", "costserve.cli", "validate", str(jobs)], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr + cli.stdout
    assert f"{jobs}:2: json: nested too deeply" in cli.stderr and f"{jobs}:3: json: number too large" in cli.stderr


def _run_with_results(home: Path, n: int) -> str:
    """A run in the store at `home` whose results.sqlite holds `n` results (as workers write them)."""
    from costserve.store.results import results_db
    from costserve.store.runs import RunStore
    from costserve.store.result_records import save_result

    jobs = home / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": "p"}) + "\n" for i in range(n)))
    store = RunStore.create(jobs, n)
    con = results_db(store.dir)
    for i in reversed(range(n)):  # finished out of order: the file is in input order
        save_result(con, f"j{i}", i + 1, "s0", {"id": f"r{i}", "custom_id": f"j{i}", "response": {"text": "x" * 4000},
                                                "error": None}, attempt=1)
    con.close()
    return store.id


def _limit_file_size(max_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def test_a_results_file_that_cannot_be_written_leaves_the_previous_one_whole(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("COSTSERVE_HOME", str(home))
    run_id = _run_with_results(home, 50)
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "COSTSERVE_HOME": str(home)}
    cmd = [sys.executable, "-m", "costserve.cli", "results", run_id, "--out", str(out)]

    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    lines = out.read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == [f"j{i}" for i in range(50)]
    assert out.stat().st_mode & 0o777 == 0o600  # results are the user's data: not world-readable
    before = out.read_bytes()

    # half the results file: above SQLite's 32 KiB shared-memory file, so only the results file cannot grow
    full = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                          preexec_fn=lambda: _limit_file_size(len(before) // 2))
    assert full.returncode == 2 and "Traceback" not in full.stderr
    assert full.stderr.strip().startswith(f"costserve: {out}: cannot write the results")
    assert len(full.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before  # the previous file is whole, not truncated mid-line
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []  # nothing left behind


def _model_lines(model: str, context: int) -> list[str]:
    long_prompt = "tell me about the sea " * (context // 2)  # each repeat is at least 5 tokens: well past the context
    return [
        json.dumps({"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}),
        json.dumps({"custom_id": "other", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-nonexistent", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}),
        json.dumps({"id": "long", "prompt": long_prompt, "max_tokens": 4}),
    ]


def test_another_models_name_and_a_prompt_beyond_the_context_are_line_errors(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                             tiny_llama_dir: Path) -> None:
    from costserve.cli import app
    from costserve.store.runs import runs_dir

    context = json.loads((tiny_llama_dir / "config.json").read_text())["max_position_embeddings"]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(_model_lines(tiny_llama_dir.name, context)) + "\n")
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--yes"])
    assert result.exit_code == 2, result.output
    assert "jobs.jsonl:2: body.model: 'gpt-4o-nonexistent' is not this run's model" in result.output
    assert "jobs.jsonl:1" not in result.output  # the run's own model, by its directory's name
    assert "jobs.jsonl:3: prompt: prompt is " in result.output and f"context is {context:,} tokens" in result.output
    assert "nothing was run" in result.output and (not runs_dir().exists() or not any(runs_dir().iterdir()))


@pytest.mark.slow
def test_model_override_serves_another_models_jobs_with_a_counted_warning(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                         tiny_llama_dir: Path) -> None:
    from costserve.cli import app

    context = json.loads((tiny_llama_dir / "config.json").read_text())["max_position_embeddings"]
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    jobs.write_text("\n".join(_model_lines(tiny_llama_dir.name, context)) + "\n")
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--yes", "--out", str(out),
                              "--model-override", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "1 job(s) name another model ('gpt-4o-nonexistent' (1))" in result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ["ok", "other"]  # "long" rejected


def test_a_cloud_models_context_is_checked_on_the_estimate_and_short_prompts_are_never_tokenized(tmp_path: Path) -> None:
    from costserve.jobs.rules import catalog_model_rules

    rules = catalog_model_rules("Llama-3.1-8B", allow_other_models=False)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "huge", "prompt": "x" * 600_000}) + "\n"
                    + json.dumps({"id": "hf", "prompt": "hi", "model": "meta-llama/Llama-3.1-8B-Instruct"}) + "\n")
    (huge, ok) = list(read_jobs(jobs, rules=rules))
    assert isinstance(huge, LineError) and huge.field == "prompt"
    assert "about 150,000 tokens; Llama-3.1-8B's context is 131,072 tokens" in huge.problem
    assert not isinstance(ok, LineError) and rules._tokenizer is None  # the catalog's HF id is the same model


def test_a_seed_past_64_bits_is_a_line_error(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "s", "prompt": "hi", "seed": 2**64}) + "\n" + json.dumps({"id": "t", "prompt": "hi", "seed": -1}) + "\n")
    bad, ok = list(read_jobs(jobs))
    assert isinstance(bad, LineError) and bad.field == "seed" and not isinstance(ok, LineError)
