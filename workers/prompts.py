"""A job's prompt as the model sees it: token ids through the model's own tokenizer and chat template.

No torch here: validation counts prompt tokens with the same function the engine encodes with.
"""

from __future__ import annotations

from typing import Any

from solver.plan import Job


def encode_prompt(tokenizer: Any, job: Job) -> list[int]:
    """Prompt token ids: the chat template for `messages`, plain encoding for `prompt`."""
    if job.messages is not None:
        chat = [{"role": role, "content": text} for role, text in job.messages]
        return list(
            tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
    return list(tokenizer.encode(job.prompt or ""))
