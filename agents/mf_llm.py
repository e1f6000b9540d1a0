"""The MF-LLM population, built in one place: an LLM policy and the mean-field models its
episodes need (one fresh model per episode).

``mfllm simulate``, ``mfllm bench`` and ``mfllm planner-eval`` (an LLM population under
the planner) build their LLM populations here, so that the same options give the same
policy and mean field everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from agents.backends.base import Backend, GenerationParams
from agents.mean_field import ChainOfSummarization, LLMMeanField
from agents.policies import LLMPolicy, llm_policy
from agents.prompts import ContextKind
from mfllm_env.mean_field import (
    HistogramMeanField,
    MeanFieldModel,
    PopularReactions,
    RecentReactions,
)

MEAN_FIELD_KINDS = ("histogram", "recent", "popular", "llm", "cos")
"""Mean fields an LLM population can use: the rule-rendered histogram, the Recent(k) and
Popular(k) reaction lists, the MF-LLM summariser and Chain of Summarization."""


def _params(max_new_tokens: int, temperature: float | None) -> GenerationParams:
    if temperature is None:  # the backend protocol's default temperature
        return GenerationParams(max_new_tokens=max_new_tokens)
    return GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature)


def mf_llm_population(
    backend: Backend,
    *,
    mean_field: str = "llm",
    mean_field_backend: Backend | None = None,
    context: ContextKind = "mean_field",
    max_new_tokens: int,
    summary_tokens: int,
    temperature: float | None = None,
    show_shares: bool = False,
    share_labels: Sequence[str] | None = None,
    score_references: bool = False,
    k: int = 5,
    cos_every: int = 4,
    seed: int = 0,
) -> tuple[LLMPolicy, Callable[..., MeanFieldModel]]:
    """The LLM policy on ``backend`` and a factory of fresh mean-field models of kind
    ``mean_field`` (:data:`MEAN_FIELD_KINDS`); the LLM kinds run on
    ``mean_field_backend`` (default: ``backend``), are seeded ``seed`` and take
    ``seed=`` to seed one model otherwise (a planner seeds each scenario's).

    ``show_shares`` adds the observation's label shares, named ``share_labels``, to the
    policy's context (:class:`~agents.policies.RumourSpeech`). ``temperature`` ``None``
    keeps :class:`~agents.backends.base.GenerationParams`' default for the policy and the
    summaries. ``ValueError`` for an unknown kind.
    """
    if mean_field not in MEAN_FIELD_KINDS:
        raise ValueError(f"mean_field must be one of {MEAN_FIELD_KINDS}, got {mean_field!r}")
    if show_shares and not share_labels:
        raise ValueError("show_shares needs share_labels (the label names of the shares)")
    policy = llm_policy(
        "rumour",
        backend,
        speech={"context": context, "share_labels": share_labels if show_shares else None},
        params=_params(max_new_tokens, temperature),
        score_references=score_references,
    )
    summaries = _params(summary_tokens, temperature)
    summariser = backend if mean_field_backend is None else mean_field_backend
    factories: dict[str, Callable[..., MeanFieldModel]] = {
        "histogram": HistogramMeanField,
        "recent": partial(RecentReactions, k),
        "popular": partial(PopularReactions, k),
        "llm": partial(LLMMeanField, summariser, params=summaries, seed=seed),
        "cos": partial(
            ChainOfSummarization, summariser, every=cos_every, params=summaries, seed=seed
        ),
    }
    return policy, factories[mean_field]
