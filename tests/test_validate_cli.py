"""`costserve validate` end to end through the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from costserve.cli import app
from costserve.jobs.stats import JobFileSummary, _histogram_quantile
from tests.conftest import EXAMPLES, REPO
from tests.test_jobfile import chat, write_lines


def test_validate_examples_prints_summary(cli) -> None:
    result = cli.invoke(app, ["validate", str(EXAMPLES / "jobs.jsonl")])
    assert result.exit_code == 0, result.output
    assert "200 valid jobs, 0 bad lines" in result.output
    for word in ("SmolLM2-135M", "input tokens", "max output tokens", "p50", "p90"):
        assert word in result.output


def test_five_kinds_of_bad_lines_give_five_precise_errors(cli, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            chat("ok"),
            b'{"custom_id": "broken"',  # 2 malformed JSON
            chat("t", max_tokens="lots"),  # 3 wrong type
            {"id": "e", "prompt": ""},  # 4 empty prompt
            chat("ok"),  # 5 duplicate custom_id
            b'{"id": "u", "prompt": "\xff\xfe"}',  # 6 invalid UTF-8
            chat("fine"),
        ],
    )
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = [l for l in result.output.splitlines() if l.startswith(str(path))]
    assert [l.split(": ")[0:2] for l in lines] == [
        [f"{path}:2", "json"],
        [f"{path}:3", "body.max_tokens"],
        [f"{path}:4", "prompt"],
        [f"{path}:5", "custom_id"],
        [f"{path}:6", "line"],
    ]
    assert "2 valid jobs, 5 bad lines" in result.output
    assert "Traceback" not in result.output


def test_max_errors_limits_printing_not_counting(cli, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "many.jsonl", [b"not json"] * 30)
    result = cli.invoke(app, ["validate", "--max-errors", "3", str(path)])
    assert result.exit_code == 1
    assert sum(1 for l in result.output.splitlines() if l.startswith(str(path))) == 3
    assert "27 more bad lines not shown" in result.output
    assert "30 bad lines" in result.output


def test_missing_file_exits_2_with_one_line(cli, tmp_path: Path) -> None:
    result = cli.invoke(app, ["validate", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert result.output.strip() == f"costserve: {tmp_path / 'none.jsonl'}: no such file"


def test_config_file_and_env_set_defaults(cli, tmp_path: Path, costserve_home: Path, monkeypatch) -> None:
    costserve_home.mkdir(parents=True)
    (costserve_home / "config.toml").write_text("default_max_tokens = 321\nmax_errors = 1\n")
    path = write_lines(tmp_path / "j.jsonl", [{"id": "a", "prompt": "p"}, b"x", b"y"])
    result = cli.invoke(app, ["validate", str(path)])
    assert "321" in result.output  # the job without max_tokens got the configured default
    assert sum(1 for l in result.output.splitlines() if l.startswith(str(path))) == 1
    monkeypatch.setenv("COSTSERVE_DEFAULT_MAX_TOKENS", "77")  # environment beats the file
    assert "77" in cli.invoke(app, ["validate", str(path)]).output
    (costserve_home / "config.toml").write_text("max_errors = -1\n")
    bad = cli.invoke(app, ["validate", str(path)])
    assert bad.exit_code == 2 and "config.toml" in bad.output and "max_errors" in bad.output


def test_histogram_quantiles_match_sorted_data() -> None:
    import pandas as pd

    rng = random.Random(7)
    values = [rng.randint(1, 400) for _ in range(5001)]
    summary = JobFileSummary()
    for v in values:
        summary.input_tokens[v] += 1
    hist = pd.Series(summary.input_tokens).sort_index()
    ordered = sorted(values)
    for q in (0.5, 0.9):
        # nearest-rank: the smallest value with at least q*n values at or below it
        assert _histogram_quantile(hist, q) == ordered[int(-(-q * len(values) // 1)) - 1]


def test_help_is_fast_because_heavy_modules_stay_unloaded() -> None:
    code = "import sys; from costserve.cli import app; print(sorted(m for m in ('sky','torch','transformers','pandas','pyomo') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_integer_columns_print_as_integers(cli) -> None:
    out = cli.invoke(app, ["validate", str(EXAMPLES / "plain.jsonl")]).output
    row = next(l for l in out.splitlines() if "max output tokens" in l)
    assert ".0" not in row  # counts and totals are whole tokens


def test_fields_costserve_does_not_honour_are_warned_per_field_and_refused_with_strict(cli, tmp_path: Path) -> None:
    def line(cid: str, **extra: object) -> str:
        body = {"messages": [{"role": "user", "content": "hi"}], **extra}
        return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"

    path = tmp_path / "jobs.jsonl"
    path.write_text(line("a", n=3, logprobs=True) + line("b", n=2) + line("c", n=1, logprobs=False, tools=[])
                    + line("d", response_format={"type": "json_object"}))
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0  # warned, not refused: they run without those fields
    warnings = [x for x in result.output.splitlines() if x.startswith("costserve: ")]
    assert warnings == [
        f"costserve: {path}: 2 job(s) set n (first on line 1), which costserve does not honour: they run without it (--strict refuses such lines)",
        f"costserve: {path}: 1 job(s) set logprobs (first on line 1), which costserve does not honour: they run without it (--strict refuses such lines)",
        f"costserve: {path}: 1 job(s) set response_format (first on line 4), which costserve does not honour: they run without it (--strict refuses such lines)",
    ]  # line c sets each field to its neutral value: nothing to warn about
    strict = cli.invoke(app, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1
    assert f"{path}:1: body.n: n=3 is not supported by costserve (--strict)" in strict.output
    assert f"{path}:4: body.response_format:" in strict.output and "1 valid jobs, 3 bad lines" in strict.output
