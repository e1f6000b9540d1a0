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
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from mfllm_env.checks import is_integer, is_text

Message = dict[str, str]
Prompt = Sequence[Message]


class BackendError(RuntimeError):
    """A backend could not do what was asked (unreachable server, missing capability)."""


def finite_number(value: object) -> bool:
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

    ``until_first_line`` says the caller reads only the completion's first non-empty line
    (:func:`first_line_complete`; the policies' :func:`agents.prompts.clean_action`): a
    backend may then end a completion as soon as that line is complete. What the caller
    reads is the same either way; only the tokens after it (and their cost) go. The local
    backend does; servers generate on to ``max_new_tokens`` (the OpenAI API has no such
    stop).
    """

    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    stop: tuple[str, ...] = ()
    until_first_line: bool = False

    def __post_init__(self) -> None:
        stop = self.stop
        if isinstance(stop, str | bytes) or not isinstance(stop, Sequence):
            # a str would stop at each of its characters
            raise TypeError(f"stop must be a tuple of stop strings, got {stop!r}")
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop strings must be non-empty str, got {stop!r}")
        object.__setattr__(self, "stop", tuple(stop))
        def integer(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not (integer(self.max_new_tokens) and self.max_new_tokens >= 1):
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not (integer(self.seed) and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not finite_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not finite_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.until_first_line, bool):
            raise TypeError(
                f"until_first_line must be True or False, got {self.until_first_line!r}"
            )


def cpu_has_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (the ``avx512_bf16`` or
    ``amx_bf16`` flag in ``cpuinfo``; ``False`` where that file does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    lines = (line for line in text.splitlines() if line.startswith("flags"))
    flags = {word for line in lines for word in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


GENERATION_DTYPES = ("auto", "float32", "bfloat16")
"""Precisions a local backend generates in (``TransformersBackend(generation_dtype=...)``)."""

LINE_BREAKS = "\n\u2028\u2029"
"""The characters that end a line once control characters are dropped (what
``str.splitlines`` splits a printable text at)."""


def first_line_complete(text: str) -> bool:
    """Whether ``text`` holds a complete first non-empty line: a line with a printable,
    non-space character, followed by a line break. Control and format characters (Unicode
    category C) do not count, as :func:`agents.prompts.clean_action` drops them before it
    takes the first non-empty line; so once this is true, more text cannot change what
    ``clean_action`` returns."""
    content = False
    for ch in text:
        if ch in LINE_BREAKS:
            if content:
                return True
        elif not ch.isspace() and not unicodedata.category(ch).startswith("C"):
            content = True
    return False


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated text with its token counts; ``error`` is set when generation failed
    (then ``text`` is empty)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None

    def __post_init__(self) -> None:
        counts = (self.prompt_tokens, self.completion_tokens)
        if not (
            isinstance(self.text, str)
            and all(_is_count(count) for count in counts)
            and (self.error is None or isinstance(self.error, str))
        ):
            raise TypeError(
                "a Completion needs a str text, token counts that are integers >= 0 and an "
                f"error that is None or a str; got {self.text!r:.60}, {self.prompt_tokens!r}, "
                f"{self.completion_tokens!r}, {self.error!r:.60}"
            )


def _is_count(value: object) -> bool:
    return is_integer(value) and value >= 0  # type: ignore[operator]


def check_prompts(prompts: object, continuations: object = None) -> None:
    """What a backend's ``generate``/``score`` take, checked before any work: ``prompts``
    a list of prompts, each a non-empty list of ``{"role": str, "content": str}`` messages,
    and ``continuations`` (when given) one str per prompt. Texts must be writable as UTF-8
    (a lone surrogate is not). ``TypeError``/``ValueError`` naming the prompt and message
    otherwise (a tokenizer or chat template would fail deep inside, or render ``None``)."""
    if isinstance(prompts, str | bytes) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of prompts, got {type(prompts).__name__}")
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str | bytes) or not isinstance(prompt, Sequence) or not prompt:
            raise TypeError(
                f"prompt {i} must be a non-empty list of chat messages, got {prompt!r:.60}"
            )
        for j, message in enumerate(prompt):
            if not (
                isinstance(message, Mapping)
                and isinstance(message.get("role"), str)
                and is_text(message.get("content"))
            ):
                raise ValueError(
                    f"prompt {i} message {j} must be a {{'role': str, 'content': str}} mapping "
                    f"with text writable as UTF-8, got {message!r:.80}"
                )
    if continuations is None:
        return
    if isinstance(continuations, str | bytes) or not isinstance(continuations, Sequence):
        raise TypeError(f"continuations must be a list of str, got {type(continuations).__name__}")
    if len(continuations) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations to score")
    bad = next((i for i, text in enumerate(continuations) if not is_text(text)), None)
    if bad is not None:
        raise ValueError(
            f"continuation {bad} must be a str writable as UTF-8, got {continuations[bad]!r:.60}"
        )


def check_backend_and_params(backend: object, params: object) -> None:
    """``TypeError`` unless ``backend`` is a :class:`Backend` (``name``, ``generate``,
    ``score``) and ``params`` is ``None`` or :class:`GenerationParams`."""
    if not isinstance(backend, Backend):
        raise TypeError(
            f"backend must be a Backend (name, generate(), score()), got {type(backend).__name__}"
        )
    if params is not None:
        check_params(params)


def check_params(params: object) -> None:
    """``TypeError`` unless ``params`` is :class:`GenerationParams`."""
    if not isinstance(params, GenerationParams):
        raise TypeError(f"params must be GenerationParams, got {type(params).__name__}")


def check_completions(backend: Backend, completions: object, count: int) -> list[Completion]:
    """``completions`` as ``backend.generate`` returned them for ``count`` prompts, if
    they are ``count`` :class:`Completion` objects; :class:`BackendError` naming the
    backend and what came back otherwise (a custom backend's bug must not surface as an
    ``AttributeError`` deep in a policy)."""
    if isinstance(completions, list | tuple):
        stranger = next((c for c in completions if not isinstance(c, Completion)), None)
        if len(completions) == count and stranger is None:
            return list(completions)
        got = f"{len(completions)} items"
        if stranger is not None:
            got += f", among them {type(stranger).__name__} {stranger!r:.60}"
    else:
        got = f"{type(completions).__name__} {completions!r:.60}"
    raise BackendError(
        f"backend {getattr(backend, 'name', type(backend).__name__)!s:.80} returned {got} from "
        f"generate() for {count} prompts; it must return one Completion per prompt"
    )


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
