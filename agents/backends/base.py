"""The protocol every language-model backend implements, and the types it speaks.

A prompt is a list of chat messages (``{"role": ..., "content": ...}``); the backend
applies the model's chat template. Two batched operations:

- :meth:`Backend.generate`: sample one completion per prompt;
- :meth:`Backend.score`: teacher-forced log-probabilities of given continuations
  (the likelihood of a real reaction, a summary's probability under a model, ...).

Failures that concern one prompt (a server error after all retries, a timeout) never
raise out of ``generate``: the completion comes back with ``error`` set and empty text,
so one bad request never ends an episode. Errors in the caller's input (a wrong argument,
an unreachable model) raise at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

Message = dict[str, str]
Prompt = Sequence[Message]


class BackendError(RuntimeError):
    """A backend could not do what was asked (unreachable server, missing capability)."""


def _finite_number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """How to sample. ``temperature=0`` is greedy decoding.

    ``seed`` makes sampling reproducible: the same prompts, parameters and seed give the
    same completions. The local backend draws each prompt from its own generator (seeded
    by the call's seed and the prompt), so a prompt gets the same completion alone or in
    any batch, up to float rounding.
    Generation stops at ``max_new_tokens``, at the end-of-turn token, or at the first of
    ``stop`` (the stop string is cut from the text).
    """

    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def integer(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not (integer(self.max_new_tokens) and self.max_new_tokens >= 1):
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not (integer(self.seed) and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _finite_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not _finite_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated text with its token counts; ``error`` is set when generation failed
    (then ``text`` is empty)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """Teacher-forced log-probabilities (natural log) of a continuation's tokens."""

    token_logprobs: tuple[float, ...] = field(default_factory=tuple)

    @property
    def logprob(self) -> float:
        """Sum over tokens: log p(continuation | prompt)."""
        return float(sum(self.token_logprobs))

    @property
    def tokens(self) -> int:
        return len(self.token_logprobs)


@runtime_checkable
class Backend(Protocol):
    """A language model behind two batched calls. ``name`` says which model it runs."""

    name: str

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt, in order."""
        ...

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        """Log-probabilities of ``continuations[i]`` as the assistant's answer to
        ``prompts[i]`` (the continuation's tokens only, no end-of-turn token)."""
        ...
