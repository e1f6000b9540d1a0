"""Chat prompts rendered to the text a model sees; shared by the local and HTTP backends
so that both feed a model exactly the same prompt text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.backends.base import Prompt

FALLBACK_TEMPLATE = "{role}: {content}\n"
"""Rendering for tokenizers without a chat template (tiny test models): one line per
message, then ``assistant:``."""


def render_chat(tokenizer: Any, messages: Prompt) -> str:
    """The prompt text the model sees: the chat template with the assistant's turn opened."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
    text = "".join(FALLBACK_TEMPLATE.format(**message) for message in messages)
    return text + "assistant:"


def encode_chat(tokenizer: Any, prompts: Sequence[Prompt], max_tokens: int) -> list[list[int]]:
    """Each prompt rendered (:func:`render_chat`) and tokenized, keeping its last
    ``max_tokens`` tokens (the start of a longer prompt is cut)."""
    texts = [render_chat(tokenizer, prompt) for prompt in prompts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [ids[-max_tokens:] for ids in encoded]


def end_token_ids(eos_token_id: int | None, configured: int | Sequence[int] | None) -> set[int]:
    """The tokens that end a completion: the tokenizer's end token and the generation
    config's ``eos_token_id`` (an int or a list), without ``None``."""
    ids = {eos_token_id}
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {i for i in ids if i is not None}
