"""LLM households and the LLM mean-field model of the macro-economy: the MF-LLM loop applied
to the economy.

* :class:`LLMHouseholds` plays every household of ``mfllm/Macro-v0`` in text mode
  (``action_mode="text"``): each household's observation becomes prompt parts through the
  env's :class:`~mfllm_env.games.macro.HouseholdTextCodec`, the prompt comes from the one
  prompt builder (:func:`agents.prompts.household_messages`), and one batched backend call
  answers all households of a year. The env parses the replies ("I will work 40 hours a
  week and save 20% of my income") and counts what it cannot read (``stats["fallback"]``).
* :class:`LLMEconomyMeanField` is the env's mean-field model
  (``MacroEnv(mean_field=...)``): every year an LLM rewrites its summary of the economy
  from the previous summary, the year's statistics and a sample of households (income,
  wealth, hours, saving); households read that summary followed by the statistics. The
  numeric mean field is computed by the env, never parsed from the text.

Both draw their sampling seeds from a generator seeded by ``reset`` (the households) or
at construction (the mean field, re-seeded every episode), so the same seeds give the same
episode. A failed or empty generation is counted in ``usage``: a household's reply is then
empty (the env's fallback shares), a summary keeps the previous one.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.backends.base import (
    Backend,
    GenerationParams,
    check_backend_and_params,
    check_completions,
)
from agents.prompts import economy_summary_messages, household_messages, printable
from mfllm_env.checks import check_count, check_seed
from mfllm_env.games.macro import (
    EconomyBatch,
    HouseholdTextCodec,
    MacroMeanField,
    StatisticsMeanField,
)
from mfllm_env.games.macro.economy import HOURS_PER_SHARE

HOUSEHOLD_PARAMS = GenerationParams(max_new_tokens=40, temperature=0.7)
SUMMARY_PARAMS = GenerationParams(max_new_tokens=80, temperature=0.7)
REPLY_CHARS = 400
"""Characters of a reply kept for the parser (whitespace runs collapsed)."""


def _one_line(text: str, limit: int) -> str:
    return " ".join(printable(text).split())[:limit]


class LLMHouseholds:
    """A language model acting for every household it is given (module docstring).
    :attr:`usage` counts calls, replies, errors and tokens over its life."""

    action_mode = "text"

    def __init__(
        self,
        backend: Backend,
        *,
        params: GenerationParams = HOUSEHOLD_PARAMS,
        codec: HouseholdTextCodec | None = None,
    ) -> None:
        check_backend_and_params(backend, params)
        self.backend = backend
        self.params = params
        self.codec = codec or HouseholdTextCodec()
        self.usage: Counter[str] = Counter()
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def prompt(self, observation: Mapping[str, Any]) -> list[dict[str, str]]:
        """The prompt of one household observation."""
        return household_messages(self.codec.prompt_parts(observation))

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        agents = list(observations)
        if not agents:
            return {}
        prompts = [self.prompt(observations[agent]) for agent in agents]
        params = dataclasses.replace(self.params, seed=int(self._rng.integers(2**31 - 1)))
        completions = check_completions(
            self.backend, self.backend.generate(prompts, params), len(prompts)
        )
        self.usage["calls"] += 1
        self.usage["replies"] += len(agents)
        replies = {}
        for agent, completion in zip(agents, completions, strict=True):
            self.usage["errors"] += completion.error is not None
            self.usage["prompt_tokens"] += completion.prompt_tokens
            self.usage["completion_tokens"] += completion.completion_tokens
            replies[agent] = "" if completion.error else _one_line(completion.text, REPLY_CHARS)
        return replies


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) < 1e9 else f"{x:.3g}"


class LLMEconomyMeanField:
    """The economy's MF-LLM mean-field model (module docstring): a
    :class:`~mfllm_env.core.protocols.MeanFieldModel` over
    :class:`~mfllm_env.games.macro.EconomyBatch`. ``sample`` households (drawn with the
    model's generator, re-seeded from ``seed`` every episode) are shown to the LLM each
    year."""

    def __init__(
        self,
        backend: Backend,
        *,
        params: GenerationParams = SUMMARY_PARAMS,
        sample: int = 8,
        seed: int = 0,
    ) -> None:
        check_backend_and_params(backend, params)
        check_count("sample", sample, 1)
        check_seed(seed)
        self.backend = backend
        self.params = params
        self.sample = sample
        self.seed = seed
        self.usage: Counter[str] = Counter()
        self.summary = ""
        self.last_failure: str | None = None
        self._statistics = StatisticsMeanField()
        self._rng = np.random.default_rng(seed)

    def reset(self, batch: EconomyBatch) -> MacroMeanField:
        self.summary = ""
        self._rng = np.random.default_rng(self.seed)
        return self._statistics.reset(batch)

    def update(self, batch: EconomyBatch) -> MacroMeanField:
        statistics = self._statistics.update(batch)
        n = batch.income.size
        rows = np.sort(self._rng.choice(n, size=min(self.sample, n), replace=False))
        labour = batch.labour if batch.labour is not None else np.full(n, np.nan)
        saving = batch.saving if batch.saving is not None else np.full(n, np.nan)
        described = [
            f"{_money(batch.income[i])}, {_money(batch.wealth[i])}, "
            f"{labour[i] * HOURS_PER_SHARE / 52:.0f} hours, {100 * saving[i]:.0f}%"
            for i in rows.tolist()
        ]
        prompt = economy_summary_messages(self.summary, statistics.text, described)
        params = dataclasses.replace(self.params, seed=int(self._rng.integers(2**31 - 1)))
        self.usage["calls"] += 1
        try:
            completion = check_completions(
                self.backend, self.backend.generate([prompt], params), 1
            )[0]
        except Exception as error:  # a backend crash must not end the economy
            self.usage["failures"] += 1
            self.last_failure = f"{type(error).__name__}: {error}"[:200]
        else:
            text = _one_line(completion.text, 1000)
            if completion.error or not text:
                self.usage["failures"] += 1
                self.last_failure = completion.error or "empty summary"
            else:
                self.usage["prompt_tokens"] += completion.prompt_tokens
                self.usage["completion_tokens"] += completion.completion_tokens
                self.summary = text
        text = f"{self.summary}\n{statistics.text}" if self.summary else statistics.text
        return MacroMeanField(text, statistics.values)
