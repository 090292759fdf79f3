"""Models for engine tests: the real SmolLM2 (converted once per session) and a tiny random Llama."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from solver.plan import Job


def JobStub(**fields: Any) -> Job:  # noqa: N802 - reads like the constructor it wraps
    """A contract Job for engine tests: greedy (temperature 0) unless given, line 0."""
    return Job(**{"line": 0, "temperature": 0.0, **fields})


PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at",
    "My favourite food is",
    "In 1492, Columbus",
    "The best way to learn a language is",
    "Photosynthesis is the process by which",
    "Here is a list of fruits: apple, banana,",
    "The meeting is scheduled for",
    "To make a cup of tea, first",
    "import numpy as np\n",
    "The largest planet in the solar system is",
    "Dear Sir or Madam,",
    "Q: What is 12 times 12?\nA:",
]


def convert_smollm2(dest: Path) -> Path:
    from workers.model_source import convert_gguf, embedded_gguf

    return convert_gguf(embedded_gguf(), dest)


def make_tiny_llama(dest: Path, tokenizer_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A random-weight Llama (hidden 64) saved as safetensors, with SmolLM2's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=2, bos_token_id=1,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(dest)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / f).exists():
            shutil.copy(tokenizer_dir / f, dest / f)
    return dest
