"""The mean-field protocol and the default, LLM-free :class:`HistogramMeanField`.

The mean field ``m_t`` is what every agent sees of the population: a short text and the
numeric label-share vector. A mean-field model is updated once per environment step with
the batch of actions of that step (the real ones during warm-up, the simulated ones
afterwards). The numeric shares always come from label ids, never from parsing text, so the
environment's numeric signal does not depend on a language model's wording.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from mfllm_env.labels import LabelScheme
from mfllm_env.scenario import Scenario


@dataclass(frozen=True, slots=True)
class MeanField:
    """The population signal at one step.

    ``shares`` is a read-only float64 vector over the scheme's labels that sums to 1
    (uniform before any action). ``count`` is the number of actions it summarises.
    """

    text: str
    shares: np.ndarray
    count: int


@runtime_checkable
class MeanFieldModel(Protocol):
    """What the environment needs from a mean-field model.

    ``reset`` starts an episode and returns the initial mean field; ``update`` folds in one
    step's batch: the agents' state texts, their action texts and the action label ids
    (ids of ``scheme``, fallbacks already applied). Implementations may keep state
    between calls; ``reset`` must clear it.
    """

    def reset(self, scenario: Scenario, scheme: LabelScheme) -> MeanField: ...

    def update(
        self,
        previous: MeanField,
        states: Sequence[str],
        actions: Sequence[str],
        labels: np.ndarray,
    ) -> MeanField: ...


def uniform_shares(size: int) -> np.ndarray:
    shares = np.full(size, 1.0 / size)
    shares.flags.writeable = False
    return shares


_TEMPLATES = {
    "en": {
        "empty": "No reactions yet.",
        "summary": "{count} reactions so far. Shares: {shares}.",
        "recent": " Latest {n}: {shares}.",
        "trend": " Rising: {rising}.",
        "window": "Last {count} reactions. Shares: {shares}.",
    },
    "zh": {
        "empty": "暂无反应。",
        "summary": "目前共{count}条反应。占比：{shares}。",
        "recent": "最新{n}条：{shares}。",
        "trend": "上升：{rising}。",
        "window": "最近{count}条反应。占比：{shares}。",
    },
}


class HistogramMeanField:
    """Label histogram of the population, rendered as a short text (no LLM).

    The shares are the label histogram of all actions so far (``window=None``) or of the
    last ``window`` actions. The text states the shares in percent, the shares of the
    newest batch, and which labels gained share with that batch. English or Chinese
    wording follows the scenario's language.
    """

    def __init__(self, window: int | None = None) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of actions, got {window}")
        self.window = window
        self._counts = np.zeros(0)
        self._recent: deque[int] = deque()
        self._labels: tuple[str, ...] = ()
        self._templates = _TEMPLATES["en"]

    def reset(self, scenario: Scenario, scheme: LabelScheme) -> MeanField:
        self._labels = scheme.names(scenario.language)
        self._counts = np.zeros(scheme.size)
        self._recent = deque()
        self._templates = _TEMPLATES.get(scenario.language, _TEMPLATES["en"])
        return MeanField(self._templates["empty"], uniform_shares(scheme.size), 0)

    def _format(self, percents: list[int]) -> str:
        return ", ".join([f"{name} {p}%" for name, p in zip(self._labels, percents, strict=True)])

    def update(
        self,
        previous: MeanField,
        states: Sequence[str],
        actions: Sequence[str],
        labels: np.ndarray,
    ) -> MeanField:
        labels = np.asarray(labels, dtype=np.int64)
        size = labels.size
        if size == 0:
            return previous
        batch = np.bincount(labels, minlength=len(self._labels))
        self._counts += batch
        if self.window is not None:
            self._recent.extend(labels.tolist())
            while len(self._recent) > self.window:
                self._counts[self._recent.popleft()] -= 1.0
        count = int(self._counts.sum())
        shares = self._counts / count
        shares.flags.writeable = False
        # Percentages of all actions so far and of the newest batch, rounded, in one call.
        k = len(self._labels)
        percents = np.rint(np.concatenate([100.0 * shares, (100.0 / size) * batch]))
        percents = percents.astype(np.int64).tolist()
        t = self._templates
        key = "summary" if self.window is None else "window"
        text = t[key].format(count=count, shares=self._format(percents[:k]))
        text += t["recent"].format(n=size, shares=self._format(percents[k:]))
        if previous.count:
            gained = (shares - previous.shares > 0.005).tolist()
            rising = [name for name, up in zip(self._labels, gained, strict=True) if up]
            if rising:
                text += t["trend"].format(rising=", ".join(rising))
        return MeanField(text, shares, count)
