"""Chat prompts rendered to the text a model sees; shared by the local and HTTP backends
so that both feed a model exactly the same prompt text."""

from __future__ import annotations

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
