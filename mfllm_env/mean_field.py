"""The mean-field protocol and the default, LLM-free :class:`HistogramMeanField`.

The mean field ``m_t`` is what every agent sees of the population: a short text and the
numeric label-share vector. A mean-field model is updated once per environment step with
the batch of actions of that step (the real ones during warm-up, the simulated ones
afterwards). The numeric shares always come from label ids, never from parsing text, so the
environment's numeric signal does not depend on a language model's wording.

Besides the histogram, two LLM-free context models serve the paper's Recent(k) and
Popular(k) baselines: their text lists reactions instead of summarising them.

Several environments can be stepped together (:mod:`mfllm_env.simulation`); their mean-field
updates are then made in one call of :func:`update_mean_fields`, which lets a model class
with an ``update_many`` classmethod (an LLM mean field) serve them all with one batched
backend call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from mfllm_env.checks import check_count, is_finite_number
from mfllm_env.core.runner import update_mean_fields as update_mean_fields  # the runner's
from mfllm_env.labels import LabelScheme
from mfllm_env.scenario import Author, Scenario


@dataclass(frozen=True, slots=True)
class MeanField:
    """The population signal at one step.

    ``shares`` is a read-only float64 vector over the scheme's labels that sums to 1
    (uniform before any action). ``count`` is the number of actions it summarises.
    """

    text: str
    shares: np.ndarray
    count: int


@dataclass(frozen=True, slots=True)
class MeanFieldUpdate:
    """One step's batch for a mean-field model: the previous mean field, the acting
    agents' state texts, their action texts, the action label ids (ids of the env's
    scheme, fallbacks already applied) and the acting authors (the real reactions'
    during warm-up, the agents' own after it)."""

    previous: MeanField
    states: Sequence[str]
    actions: Sequence[str]
    labels: np.ndarray
    authors: Sequence[Author] = field(default=())


@runtime_checkable
class MeanFieldModel(Protocol):
    """What the environment needs from a mean-field model: the rumour family's
    :class:`mfllm_env.core.protocols.MeanFieldModel`.

    ``reset`` starts an episode and returns the initial mean field; ``update`` folds in one
    step's batch (:class:`MeanFieldUpdate`: a new field never changes the signature).
    Implementations may keep state between calls; ``reset`` must clear it. One instance
    serves one episode at a time.

    Optionally, a class may define ``update_many(models, batches) -> list[MeanField]`` (a
    classmethod) to update several instances at once; :func:`update_mean_fields` uses it.
    """

    def reset(self, scenario: Scenario, scheme: LabelScheme) -> MeanField: ...

    def update(self, batch: MeanFieldUpdate) -> MeanField: ...


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
        if window is not None:
            check_count("window", window, 1)
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

    def update(self, batch: MeanFieldUpdate) -> MeanField:
        previous = batch.previous
        labels = np.asarray(batch.labels, dtype=np.int64)
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


def follower_rank(author: Author) -> float:
    """The author's follower count as a rank: -1 (below every count) when the profile has
    none, or one that is not a finite number >= 0 (text, ``NaN``, ``Infinity``: data no
    ranking can trust, which must not stop an episode)."""
    followers = author.profile.get("followers")
    return followers if is_finite_number(followers) and followers >= 0 else -1


class _ReactionList:
    """Shared part of :class:`RecentReactions` and :class:`PopularReactions`: the shares come
    from a :class:`HistogramMeanField`; the text lists ``k`` reactions of the world so far
    (real ones in warm-up, the agents' own after it), one per line."""

    _EMPTY: ClassVar[dict[str, str]] = {"en": "No replies yet.", "zh": "暂无回复。"}

    def __init__(self, k: int = 5, max_chars: int = 280) -> None:
        check_count("k", k, 1)
        check_count("max_chars", max_chars, 1)
        self.k = k
        self.max_chars = max_chars
        self._histogram = HistogramMeanField()
        self._posts: list[tuple[float, int, str, str]] = []  # (followers, order, name, text)
        self._language = "en"

    def reset(self, scenario: Scenario, scheme: LabelScheme) -> MeanField:
        self._posts = []
        self._language = scenario.language
        initial = self._histogram.reset(scenario, scheme)
        return MeanField(self._EMPTY.get(self._language, self._EMPTY["en"]), initial.shares, 0)

    def _chosen(self) -> list[tuple[float, int, str, str]]:
        raise NotImplementedError

    def update(self, batch: MeanFieldUpdate) -> MeanField:
        previous, actions, authors = batch.previous, batch.actions, batch.authors
        if len(authors) != len(actions):
            raise ValueError(
                f"{type(self).__name__} needs the acting authors: got {len(authors)} authors "
                f"for {len(actions)} actions"
            )
        histogram = self._histogram.update(batch)
        for author, action in zip(authors, actions, strict=True):
            name = str(author.profile.get("name") or author.author_id)
            text = " ".join(str(action).split())[: self.max_chars]
            self._posts.append((follower_rank(author), len(self._posts), name, text))
        chosen = self._chosen()
        if not chosen:
            return MeanField(previous.text, histogram.shares, histogram.count)
        text = "\n".join(f"- {name}: {post}" for _, _, name, post in chosen)
        return MeanField(text, histogram.shares, histogram.count)


class RecentReactions(_ReactionList):
    """The Recent(k) context: the ``k`` newest reactions, oldest first."""

    def _chosen(self) -> list[tuple[float, int, str, str]]:
        return self._posts[-self.k :]


class PopularReactions(_ReactionList):
    """The Popular(k) context: the reactions of the ``k`` most-followed authors so far.

    Ranked by the author's follower count (the reference implementation sorted on a
    missing key and silently returned the oldest reactions); authors without a follower
    count, or with one that is not a finite number >= 0 (:func:`follower_rank`), rank below
    every author with one; ties go to the newer reaction. Listed from the most-followed
    down.
    """

    def _chosen(self) -> list[tuple[float, int, str, str]]:
        ranked = sorted(self._posts, key=lambda post: (post[0], post[1]), reverse=True)
        return ranked[: self.k]
