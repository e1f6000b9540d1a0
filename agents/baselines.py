"""Policies that need no LLM: reference points for LLM policies and for RL users.

They follow the :class:`mfllm_env.simulation.Policy` protocol, all but the last in label
mode (``Discrete`` actions over the scheme's labels):

- :class:`UniformRandomPolicy`: every label equally likely.
- :class:`HerdingPolicy`: every agent takes the mean field's majority label.
- :class:`ClassifierPolicy` with ``features="state"``: a logistic regression on the
  agent's state text (profile and own history) -- what a state-only agent can know.
- :class:`ClassifierPolicy` with ``features="state+mean_field"``: the same plus the
  mean-field share vector -- a mean-field-aware agent.
- :class:`RealTextPolicy` (text mode): every agent posts the real reaction it stands for.
  Not a simulator but the benchmark's ceiling for text policies: its score is what a
  perfect simulator would get once its texts pass through the labeller, so it shows how
  much of any text policy's divergence is the labeller's own error.

Classifier policies *sample* their label from the predicted probabilities (seeded), so a
population of them reproduces a distribution instead of collapsing onto the majority
label; after each ``act`` their ``label_distributions`` hold those probabilities per
agent (as :class:`agents.policies.LLMPolicy` holds its samples' label shares), which the
benchmark's expected scores use. They are fitted on scenarios through
:func:`collect_examples`, which replays each scenario with real reactions driving the
mean field (teacher forcing), so the features at fitting time are produced exactly the
way the environment produces them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from mfllm_env.checks import check_count, check_seed
from mfllm_env.labels import LabelScheme
from mfllm_env.registry import family
from mfllm_env.scenario import Scenario

Observation = Mapping[str, Any]


def check_scheme(scheme: object) -> None:
    """``TypeError`` unless ``scheme`` is a :class:`LabelScheme`."""
    if not isinstance(scheme, LabelScheme):
        raise TypeError(f"scheme must be a LabelScheme, got {type(scheme).__name__}")


class UniformRandomPolicy:
    """Each agent picks a label uniformly at random."""

    action_mode = "label"

    def __init__(self, scheme: LabelScheme, seed: int | None = None) -> None:
        check_scheme(scheme)
        self.scheme = scheme
        self._rng = np.random.default_rng(check_seed(seed))

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, observations: Mapping[str, Observation]) -> dict[str, int]:
        ids = self._rng.integers(0, self.scheme.size, size=len(observations))
        return dict(zip(observations, ids.tolist(), strict=True))


class HerdingPolicy:
    """Each agent takes the label with the largest mean-field share (ties: lowest id)."""

    action_mode = "label"

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observations: Mapping[str, Observation]) -> dict[str, int]:
        return {agent: int(np.argmax(obs["shares"])) for agent, obs in observations.items()}


class RealTextPolicy:
    """Each agent posts the real reaction it stands for (the texts come through
    ``references``, see :func:`mfllm_env.simulation.play_episodes`)."""

    action_mode = "text"
    score_references = True

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(
        self, observations: Mapping[str, Observation], references: Mapping[str, str]
    ) -> dict[str, str]:
        return {agent: references[agent] for agent in observations}


@dataclass(frozen=True)
class Examples:
    """Teacher-forced (observation, real label id) pairs."""

    states: list[str]
    shares: np.ndarray
    labels: np.ndarray


def collect_examples(scenarios: Iterable[Scenario], **env_options: Any) -> Examples:
    """Replay each scenario with real reactions driving the mean field all the way.

    ``env_options`` go to the rumour family's population env (the registry's
    :class:`~mfllm_env.population_env.PopulationEnv`; ``warmup`` and ``action_mode`` are set
    here). Returns the observations each agent had and the real label it took.
    """
    states: list[str] = []
    shares: list[np.ndarray] = []
    labels: list[int] = []
    for scenario in scenarios:
        env = family("rumour").population_env(
            scenario, **{**env_options, "warmup": len(scenario), "action_mode": "label"}
        )
        observations, _ = env.reset(seed=0)
        while env.agents:
            acting = list(env.agents)
            for agent in acting:
                states.append(observations[agent]["state"])
                shares.append(observations[agent]["shares"])
            observations, _, _, _, infos = env.step(dict.fromkeys(acting, 0))
            labels.extend(infos[agent]["real_label_id"] for agent in acting)
    if not labels:
        raise ValueError("no reactions to fit on")
    return Examples(states, np.asarray(shares, dtype=np.float64), np.asarray(labels))


class ClassifierPolicy:
    """A logistic-regression policy over state text, optionally with the mean-field shares.

    ``features="state"`` is state-only; ``features="state+mean_field"`` adds the share
    vector (and its log) as features. Fit with :meth:`fit` before acting. After each
    :meth:`act`, :attr:`label_distributions` maps each agent to the probabilities its
    label was drawn from (:meth:`probabilities`).
    """

    action_mode = "label"

    def __init__(
        self,
        scheme: LabelScheme,
        features: Literal["state", "state+mean_field"] = "state+mean_field",
        *,
        seed: int | None = None,
        max_iter: int = 2000,
    ) -> None:
        if features not in ("state", "state+mean_field"):
            raise ValueError(f"features must be 'state' or 'state+mean_field', got {features!r}")
        check_scheme(scheme)
        check_count("max_iter", max_iter, 1)
        check_seed(seed)
        self.scheme = scheme
        self.features = features
        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        self._model = LogisticRegression(max_iter=max_iter, C=1.0)
        self._rng = np.random.default_rng(seed)
        self._fitted = False
        self.label_distributions: dict[str, list[float]] = {}

    def _matrix(self, states: Sequence[str], shares: np.ndarray) -> sp.csr_matrix:
        text = self._vectorizer.transform(states)
        if self.features == "state":
            return text
        # Shares and log-shares: the log lets the model express herding as odds ratios.
        numeric = np.hstack([shares, np.log(shares + 1e-3) / 7.0])
        return sp.hstack([text, sp.csr_matrix(numeric)], format="csr")

    def fit(self, examples: Examples) -> ClassifierPolicy:
        self._vectorizer.fit(examples.states)
        self._model.fit(self._matrix(examples.states, examples.shares), examples.labels)
        self._columns = self._model.classes_.astype(np.int64)
        self._fitted = True
        return self

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def probabilities(self, observations: Sequence[Observation]) -> np.ndarray:
        """P(label) for each observation, shape ``(n, K)`` over the scheme's labels."""
        if not self._fitted:
            raise RuntimeError("ClassifierPolicy.fit() must be called before acting")
        states = [obs["state"] for obs in observations]
        shares = np.asarray([obs["shares"] for obs in observations], dtype=np.float64)
        proba = np.zeros((len(observations), self.scheme.size))
        proba[:, self._columns] = self._model.predict_proba(self._matrix(states, shares))
        return proba

    def act(self, observations: Mapping[str, Observation]) -> dict[str, int]:
        proba = self.probabilities(list(observations.values()))
        self.label_distributions = dict(zip(observations, proba.tolist(), strict=True))
        draws = self._rng.random(len(proba))[:, None]
        ids = (proba.cumsum(axis=1) < draws).sum(axis=1).clip(max=self.scheme.size - 1)
        return dict(zip(observations, ids.tolist(), strict=True))
