"""What a run's model accepts of a job: its name in `model`, and a prompt that fits its context.

Checked while the job file is read (both passes), so a job the model cannot serve is a bad
line of its own — file, line, field — before anything is planned or run. Prompt tokens are
counted with the model's tokenizer and chat template (the engine's own `encode_prompt`) when
the model is on this machine; a prompt is only tokenized when its UTF-8 length could reach
the context (a byte-level tokenizer never makes more tokens than bytes, plus the template).
Without a tokenizer (a cloud model) the count is the planner's estimate, 4 characters a token.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solver.plan import Job

if TYPE_CHECKING:
    import pandas as pd

TEMPLATE_TOKENS = 64  # chat-template tokens a prompt may gain (role headers, generation prompt), generously


@dataclass
class ModelRules:
    """The run's model as a job file must respect it: `name` (what results call it), the names a job's `model` may
    give (`accepted`, lower case), its `context` (tokens), and its tokenizer directory when it is on this machine."""

    name: str
    accepted: frozenset[str]
    context: int
    tokenizer_dir: Path | None = None
    allow_other_models: bool = False
    overridden: Counter[str] = field(default_factory=Counter)  # other model names served anyway, with counts
    _tokenizer: Any = None

    def problem(self, job: Job, batch_form: bool) -> tuple[str, str] | None:
        """(field, message) when the run's model cannot serve `job`, else None (counting an allowed other model)."""
        body = "body." if batch_form else ""
        if job.model is not None and job.model.lower() not in self.accepted:
            if not self.allow_other_models:
                return (
                    f"{body}model",
                    f"{job.model!r} is not this run's model {self.name!r}; "
                    "fix the line, or pass --model-override to serve it with the run's model",
                )
            self.overridden[job.model] += 1
        if (size := self._overlong(job)) is not None:
            what = "messages" if job.messages is not None else "prompt"
            return (
                f"{body}{what}",
                f"{what} is {size}; {self.name}'s context is {self.context:,} tokens (no room left to generate)",
            )
        return None

    def _overlong(self, job: Job) -> str | None:
        """ "N tokens" ("about N tokens" when estimated) when the prompt fills the context, else None."""
        if self.tokenizer_dir is None:
            estimate = job.estimated_input_tokens()
            return f"about {estimate:,} tokens" if estimate >= self.context else None
        parts = len(job.messages) if job.messages is not None else 1
        if len(job.prompt_text().encode("utf-8", "surrogatepass")) + TEMPLATE_TOKENS * parts < self.context:
            return None  # cannot reach the context: not worth tokenizing
        from workers.prompts import encode_prompt

        tokens = len(encode_prompt(self.tokenizer(), job))
        return f"{tokens:,} tokens" if tokens >= self.context else None

    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded on first use."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_dir))
        return self._tokenizer


def local_model_rules(model: str | None, allow_other_models: bool) -> ModelRules:
    """Rules for a model run on this machine: names from the catalog and the model source, context from config.json."""
    from catalog.load import load_models
    from workers.model_source import MODEL_ALIASES, model_name, resolve_model_dir

    model_dir = resolve_model_dir(model)
    name = model_name(model)
    config = json.loads((model_dir / "config.json").read_text())
    names = {name, model_dir.name, *(alias for alias, target in MODEL_ALIASES.items() if target == name)}
    if model:
        names |= {model, Path(model).name}
    return ModelRules(
        name,
        _with_catalog_names(name, names, load_models()),
        int(config.get("max_position_embeddings", 2048)),
        model_dir,
        allow_other_models,
    )


def catalog_model_rules(name: str, allow_other_models: bool) -> ModelRules:
    """Rules for a catalog model (planned for the cloud; its tokenizer is not on this machine): context from models.csv."""
    from catalog.load import load_models

    models = load_models()
    row = models[models["model"] == name]
    context = int(row.iloc[0]["context"]) if not row.empty else 1 << 62
    return ModelRules(name, _with_catalog_names(name, {name}, models), context, None, allow_other_models)


def _with_catalog_names(name: str, names: set[str], models: pd.DataFrame) -> frozenset[str]:
    """`names` plus the Hugging Face id of `name` in the `models` catalog (and its last part), lower case."""
    for hf_id in models.loc[models["model"] == name, "hf_id"]:
        names |= {str(hf_id), str(hf_id).rsplit("/", 1)[-1]}
    return frozenset(n.lower() for n in names)
