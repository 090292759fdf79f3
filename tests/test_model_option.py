"""--model means one thing everywhere: a catalog model name, or a local model directory / GGUF file."""

from __future__ import annotations

import json
from pathlib import Path

from costserve.cli import app
from costserve.store.runs import runs_dir
from solver.plan import Plan


def _jobs(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": "hello there", "max_tokens": 4}) + "\n" for i in range(3)))
    return jobs


def test_a_catalog_model_without_local_weights_is_one_line_naming_where_they_go(cli, tmp_path: Path,
                                                                                costserve_home: Path) -> None:
    result = cli.invoke(app, ["submit", str(_jobs(tmp_path)), "--model", "Llama-3.1-8B", "--yes"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "a catalog model whose weights are not on this machine" in result.output
    assert str(costserve_home / "models" / "Llama-3.1-8B") in result.output and "hf download meta-llama" in result.output
    assert not runs_dir().exists() or not any(runs_dir().iterdir())  # nothing was created
    unknown = cli.invoke(app, ["submit", str(_jobs(tmp_path)), "--model", "no-such-model", "--yes"])
    assert unknown.exit_code == 2 and "not a catalog model" in unknown.output


def test_plan_takes_a_model_directory_as_the_catalog_model_it_holds(cli, tmp_path: Path, smollm2_dir: Path) -> None:
    by_dir = cli.invoke(app, ["plan", str(_jobs(tmp_path)), "--model", str(smollm2_dir), "--json"])
    by_name = cli.invoke(app, ["plan", str(_jobs(tmp_path)), "--model", "SmolLM2-135M", "--json"])
    assert by_dir.exit_code == by_name.exit_code == 0, by_dir.output
    assert Plan.model_validate_json(by_dir.stdout).model == "SmolLM2-135M"
    assert Plan.model_validate_json(by_dir.stdout).cost == Plan.model_validate_json(by_name.stdout).cost
