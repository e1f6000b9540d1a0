"""Spaces for free text.

Gymnasium's :class:`~gymnasium.spaces.Text` checks every character against a fixed
charset, so ordinary sentences, emoji or Chinese posts fall outside it. Observations and
actions of this package are natural language, so :class:`FreeText` accepts *any* Python
string up to ``max_length`` characters; only *sampling* uses a charset (printable ASCII
by default), which is what random-action tests exercise.
"""

from __future__ import annotations

import string
from typing import Any

from gymnasium.spaces import Text

PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


class FreeText(Text):
    """Any string of ``min_length``..``max_length`` characters; samples from ``charset``."""

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        charset: str = PRINTABLE,
        seed: int | None = None,
    ) -> None:
        super().__init__(max_length, min_length=min_length, charset=charset, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"FreeText({self.min_length}, {self.max_length})"


class AnnotatedText(str):
    """A text action that carries metadata about how it was made.

    It *is* the string (the environment labels it like any other); its ``info`` mapping
    (token counts, a likelihood, a backend error, ...) is copied into the acting agent's
    ``infos[agent]["policy"]``. This is how an LLM policy reports per-agent figures
    through the standard PettingZoo step without the environment knowing about models.
    """

    info: dict[str, Any]

    def __new__(cls, text: str, info: dict[str, Any] | None = None) -> AnnotatedText:
        action = super().__new__(cls, text)
        action.info = dict(info or {})
        return action
