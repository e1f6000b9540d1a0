"""The LLM mean-field model of the macro-economy: with LLM households (the one LLM policy,
:class:`agents.policies.LLMPolicy`, speaking as :class:`agents.policies.HouseholdSpeech`),
the MF-LLM loop applied to the economy.

:class:`LLMEconomyMeanField` is the env's mean-field model (``MacroEnv(mean_field=...)``):
every year an LLM rewrites its summary of the economy from the previous summary, the year's
statistics and a sample of households (income, wealth, hours, saving); households read that
summary followed by the statistics. The numeric mean field is computed by the env, never
parsed from the text. Its sampling seeds come from a generator seeded at construction and
re-seeded every episode, so the same seed gives the same episode. A failed or empty
generation is counted in ``usage`` (``failures``), and the summary keeps the previous one.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from agents.backends.base import (
    Backend,
    GenerationParams,
    check_backend_and_params,
    check_completions,
)
from agents.prompts import economy_summary_messages, one_line
from mfllm_env.checks import check_count, check_seed
from mfllm_env.games.macro import EconomyBatch, MacroMeanField, StatisticsMeanField
from mfllm_env.games.macro.economy import HOURS_PER_SHARE

SUMMARY_PARAMS = GenerationParams(max_new_tokens=80, temperature=0.7)


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
            text = one_line(completion.text, 1000)
            if completion.error or not text:
                self.usage["failures"] += 1
                self.last_failure = completion.error or "empty summary"
            else:
                self.usage["prompt_tokens"] += completion.prompt_tokens
                self.usage["completion_tokens"] += completion.completion_tokens
                self.summary = text
        text = f"{self.summary}\n{statistics.text}" if self.summary else statistics.text
        return MacroMeanField(text, statistics.values)
