"""LLM mean-field models: the paper's mu and Chain of Summarization.

Both implement :class:`mfllm_env.mean_field.MeanFieldModel`. Their numeric shares always
come from a :class:`~mfllm_env.mean_field.HistogramMeanField` over the action labels, so
the environment's numeric signal never depends on parsing generated text; only the text is
written by the model. Both define ``update_many``, so that the mean fields of several
episodes stepped together are rewritten in one batched backend call
(:func:`mfllm_env.mean_field.update_mean_fields`).

A failed or empty generation keeps the previous summary and is counted in ``usage``
(``failures``); it never ends the episode.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import Counter, deque
from collections.abc import Sequence

import numpy as np

from agents.backends.base import (
    Backend,
    GenerationParams,
    Prompt,
    check_backend_and_params,
    check_completions,
)
from agents.prompts import chain_summary_messages, mean_field_messages, printable
from mfllm_env.checks import check_count, check_seed
from mfllm_env.labels import LabelScheme
from mfllm_env.mean_field import HistogramMeanField, MeanField, MeanFieldUpdate
from mfllm_env.scenario import Scenario

SUMMARY_PARAMS = GenerationParams(max_new_tokens=96, temperature=0.7)
CHAIN_PARAMS = GenerationParams(max_new_tokens=64, temperature=0.7)


def summary_text(completion: str) -> str:
    """A generated summary as agents see it: control and format characters (and lone
    surrogates, which no file can hold) dropped, whitespace runs collapsed to single spaces
    (IB-Tune scores sampled summaries in this same form)."""
    return " ".join(printable(completion).split())


class _LLMRewriter:
    """What both models share: a histogram for the shares, a backend, a seeded generator,
    usage counters, and a batched rewrite over several instances."""

    def __init__(self, backend: Backend, params: GenerationParams, seed: int) -> None:
        check_backend_and_params(backend, params)
        check_seed(seed)
        self.backend = backend
        self.params = params
        self.seed = seed
        self.usage: Counter[str] = Counter()
        self._histogram = HistogramMeanField()
        self._event = ""
        self._language = "en"
        self._summary = ""
        self._rng = np.random.default_rng(seed)
        self.last_failure: str | None = None  # why the latest failed rewrite failed

    def reset(self, scenario: Scenario, scheme: LabelScheme) -> MeanField:
        initial = self._histogram.reset(scenario, scheme)
        self._event = scenario.event_text
        self._language = scenario.language
        self._summary = ""
        # Same seed and scenario -> same summaries, whatever ran before.
        self._rng = np.random.default_rng([self.seed, zlib.crc32(scenario.scenario_id.encode())])
        return MeanField(initial.text, initial.shares, 0)

    def update(self, batch: MeanFieldUpdate) -> MeanField:
        return type(self).update_many([self], [batch])[0]

    # Subclasses: what to ask (None: no call this step) and how to compose the text.
    def _request(self, update: MeanFieldUpdate, statistics: MeanField) -> Prompt | None:
        raise NotImplementedError

    def _compose(self, statistics: MeanField) -> str:
        raise NotImplementedError

    @classmethod
    def update_many(
        cls, models: Sequence[_LLMRewriter], updates: Sequence[MeanFieldUpdate]
    ) -> list[MeanField]:
        """Update every model with its update; one ``generate`` call per distinct
        (backend, parameters) pair among the models that need a rewrite this step."""
        statistics = [
            model._histogram.update(update) for model, update in zip(models, updates, strict=True)
        ]
        groups: dict[tuple[int, GenerationParams], list[tuple[int, Prompt]]] = {}
        for i, (model, update, stats) in enumerate(zip(models, updates, statistics, strict=True)):
            if stats.count == update.previous.count:  # an empty batch changes nothing
                continue
            prompt = model._request(update, stats)
            if prompt is not None:
                groups.setdefault((id(model.backend), model.params), []).append((i, prompt))
        for (_, params), requests in groups.items():
            # One seed per call, drawn by every model in it (their streams stay aligned).
            seeds = [int(models[i]._rng.integers(2**31 - 1)) for i, _ in requests]
            backend = models[requests[0][0]].backend
            call_params = dataclasses.replace(params, seed=seeds[0])
            reason = ""
            try:
                completions = check_completions(
                    backend, backend.generate([p for _, p in requests], call_params), len(requests)
                )
            except Exception as error:  # a backend crash must not end every episode
                completions = [None] * len(requests)
                reason = f"{type(error).__name__}: {error}"[:200]
            for (i, _), completion in zip(requests, completions, strict=True):
                model = models[i]
                model.usage["calls"] += 1
                if completion is None or completion.error or not completion.text.strip():
                    model.usage["failures"] += 1
                    model.last_failure = (
                        reason if completion is None else completion.error or "empty summary"
                    )
                    continue
                model.usage["prompt_tokens"] += completion.prompt_tokens
                model.usage["completion_tokens"] += completion.completion_tokens
                model._summary = summary_text(completion.text)
        return [
            MeanField(model._compose(stats), stats.shares, stats.count)
            for model, stats in zip(models, statistics, strict=True)
        ]


class LLMMeanField(_LLMRewriter):
    """The MF-LLM mean-field model mu: m_{t+1} = mu(m_t, states, actions).

    Every step, the model rewrites the previous summary from the newest batch of (state,
    action) pairs (the aspects listed in :func:`agents.prompts.mean_field_messages`).
    ``with_statistics`` appends the histogram's rule-rendered shares to the summary text.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        params: GenerationParams = SUMMARY_PARAMS,
        with_statistics: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(backend, params, seed)
        self.with_statistics = with_statistics

    def next_prompt(self, update: MeanFieldUpdate) -> Prompt:
        """The prompt the rewrite for ``update`` sends (what IB-Tune trains mu on)."""
        return mean_field_messages(
            self._event, self._summary, update.states, update.actions, language=self._language
        )

    def _request(self, update: MeanFieldUpdate, statistics: MeanField) -> Prompt | None:
        return self.next_prompt(update)

    def _compose(self, statistics: MeanField) -> str:
        summary = self._summary or statistics.text
        if self.with_statistics and self._summary:
            return f"{summary}\n{statistics.text}"
        return summary


class ChainOfSummarization(_LLMRewriter):
    """Chain of Summarization (from the TextStarCraft II agent of Ma et al.) as a mean field.

    Every step renders the histogram's statistics as a frame (no LLM); every ``every``
    steps an LLM rewrites the last ``frames`` frames into a short trend description. The
    text is the latest description followed by the current frame.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        every: int = 4,
        frames: int = 4,
        params: GenerationParams = CHAIN_PARAMS,
        seed: int = 0,
    ) -> None:
        check_count("every", every, 1)
        check_count("frames", frames, 1)
        super().__init__(backend, params, seed)
        self.every = every
        self._frames: deque[str] = deque(maxlen=frames)
        self._steps = 0

    def reset(self, scenario: Scenario, scheme: LabelScheme) -> MeanField:
        self._frames.clear()
        self._steps = 0
        return super().reset(scenario, scheme)

    def _request(self, update: MeanFieldUpdate, statistics: MeanField) -> Prompt | None:
        self._frames.append(statistics.text)
        self._steps += 1
        if self._steps % self.every:
            return None
        return chain_summary_messages(self._event, list(self._frames), language=self._language)

    def _compose(self, statistics: MeanField) -> str:
        return f"{self._summary}\n{statistics.text}" if self._summary else statistics.text
