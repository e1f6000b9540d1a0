"""PopulationEnv: a real event replayed as a PettingZoo parallel game.

## Description
One episode replays one :class:`~mfllm_env.scenario.Scenario`: an event (a source post)
and the population's reactions to it, in time order. Each reaction is one decision of one
agent. Every step activates the authors of the next ``agents_per_step`` reactions (16 by
default, as in MF-LLM); each of them sees the event, its own state (profile and its own
earlier posts) and the population's mean field, and answers with an action. Actions are
labelled along one label scheme (SDQC stance by default), and the label histogram is the
population state that simulated and real populations are compared on.

For the first ``warmup`` reactions the *real* reactions drive the mean field (the
simulation is anchored on observed data); after that the agents' own actions do (free
rollout). Agents act in every step, warm-up included, so that their labels can be scored
against the real ones throughout.

| Import             | ``pettingzoo.make("parallel", "mfllm/Population-v0", scenario=...)`` |
|--------------------|------------------------------------------------------------------------|
| Agents             | one per reaction, ``"reaction_00000"``, ...; each acts once         |
| Active agents      | the authors of the next ``agents_per_step`` reactions                  |
| Action space       | ``FreeText(max_action_length)`` (``action_mode="text"``) or            |
|                    | ``Discrete(K)`` over the scheme's labels (``action_mode="label"``)     |
| Observation space  | ``Dict(event: FreeText, state: FreeText, mean_field: FreeText,         |
|                    | shares: Box(0, 1, (K,), float32))``                                    |
| State space        | ``Box(0, 1, (2K + 1,))``: mean-field shares, simulated cumulative      |
|                    | shares, fraction of reactions done                                     |

## Action space
Text mode accepts any string (cut to ``max_action_length`` characters). It is labelled by
the labeller; a text the labeller cannot label (it returns -1) gets the scheme's
``fallback`` label. Label mode takes an int (a Python or numpy integer, not a bool) in
``[0, K)``. Label mode has no texts: the mean-field model and the agents' histories see
label names, for real reactions (warm-up) and actions alike.

## Bad input: what raises, what falls back
One rule for both halves of the API, :meth:`PopulationEnv.step` and ``begin_step``:

* **The call is wrong: it raises.** ``actions`` that is not a mapping: ``TypeError``. A
  key that is not an agent acting this step (unknown, already terminated, not a string):
  ``ValueError`` naming the keys. ``step`` before ``reset`` or after the episode ended:
  ``RuntimeError``. ``reset(seed=...)`` with anything but ``None`` or an integer >= 0:
  ``ValueError``. Nothing of the episode changes before such an error, so the env keeps
  working with a corrected call.
* **An active agent's action is wrong: it falls back, counted.** A missing action, a
  value of the wrong type (a float, a bool, bytes, an array, ``None``...), an int out of
  range (label mode) or a string with characters that cannot be written as UTF-8 (lone
  surrogates; text mode) is an *invalid action*: the agent gets the fallback label and
  acts with an empty text. ``infos[agent]`` says so (``invalid_action``, ``fallback``;
  ``empty_action`` for an empty or whitespace-only string) and :attr:`PopulationEnv.stats`
  counts them over the episode (``invalid_action``, ``fallback``, ``empty_action``), as do
  the run's metrics.

Constructor arguments are checked at once: counts must be integers in the documented
range (at most :data:`~mfllm_env.checks.MAX_COUNT`), else ``ValueError`` naming the argument
and value; a ``labeler``, ``mean_field`` or ``reward_fn`` without the methods it needs is a
``TypeError``. What user-supplied components return is checked where it is used: a
labeller's ids must be integers in ``[-1, K)``, one per text; a mean-field model must return
a :class:`~mfllm_env.mean_field.MeanField` with a text and ``K`` finite shares >= 0 summing
to 1; otherwise a ``ValueError`` names the component and what it returned.

## Observation space
``event``: the source post. ``state``: the agent's profile and up to ``history_length`` of
its own earlier posts in this episode (the real ones during warm-up, its own actions after).
``mean_field``: the mean-field model's text. ``shares``: the mean field's numeric label
shares (uniform before any action). Texts are cut to ``max_text_length`` characters. A
terminated agent's final observation is the one it acted on.

## Rewards
Pluggable through ``reward_fn(outcome: StepOutcome) -> array`` (one value per agent that
acted, in order, or one value for all), called in ``begin_step`` before the mean field is
updated: if it raises, or returns anything but finite numbers (``ValueError`` naming what
it returned), nothing of the episode has changed. The default, :class:`LabelMatchReward`,
gives each acting agent ``1[simulated label == real label] - kl_weight * KL(real step
shares || simulated step shares)`` (KL smoothed as in :func:`mfllm_env.metrics.kl_divergence`):
a per-agent match term and a shared population term. Newly activated agents get 0.

## Starting state
``reset`` activates the first batch; the mean field is the model's initial one.

## Episode end
An agent terminates right after its one action. The episode ends when every reaction
(up to ``max_reactions``) has been acted on; ``env.agents`` is then empty. No truncation.

## Infos
On activation: ``step``, ``reaction_index``, ``warmup``. After acting: also
``real_text``, ``real_label``/``real_label_id`` (human label where the data has one, else
the labeller's), ``real_label_source`` (``"human"``/``"labeller"``), ``sim_label``/
``sim_label_id``, ``fallback``, ``empty_action``, ``invalid_action``; and ``policy``
when the action was an :class:`~mfllm_env.spaces.AnnotatedText` (its ``info``: token
counts, likelihood, errors, as the policy reports them).

## Arguments
``scenario`` (required), ``agents_per_step=16``, ``warmup=50`` (real reactions that drive
the mean field), ``max_reactions=None`` (cut the episode), ``action_mode="text"``,
``label_dimension=None`` (the scenario's default dimension; or a
:class:`~mfllm_env.labels.LabelScheme`), ``labeler=None`` (the dimension's default
labeller; needed in text mode and for reactions without human labels),
``mean_field=None`` (a :class:`~mfllm_env.mean_field.HistogramMeanField`),
``reward_fn=None``, ``history_length=2``, ``max_text_length=2048``,
``max_action_length=1000``, ``render_mode=None`` (or ``"ansi"``).

>>> import pettingzoo, mfllm_env
>>> env = pettingzoo.make("parallel", "mfllm/Population-v0",
...                       scenario=mfllm_env.synthetic_scenario(seed=0, n_reactions=64),
...                       action_mode="label")
>>> observations, infos = env.reset(seed=0)
>>> len(env.agents)
16
>>> while env.agents:
...     actions = {agent: int(obs["shares"].argmax()) for agent, obs in observations.items()
...                if agent in env.agents}
...     observations, rewards, terminations, truncations, infos = env.step(actions)
>>> env.stats["actions"]
64

## Version history
* v0: initial release.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from mfllm_env.checks import (
    check_actions,
    check_can_step,
    check_count,
    check_methods,
    check_number,
    check_seed,
    is_integer,
    is_text,
)
from mfllm_env.labels import UNLABELLED, ActionLabeler, LabelScheme, scheme_for
from mfllm_env.mean_field import HistogramMeanField, MeanField, MeanFieldModel, MeanFieldUpdate
from mfllm_env.metrics import kl_divergence
from mfllm_env.scenario import Author, Reaction, Scenario
from mfllm_env.spaces import AnnotatedText, FreeText

ActionMode = Literal["text", "label"]
HISTORY_POST_LENGTH = 280
"""Characters of each earlier post kept in an agent's state (a tweet's length)."""


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What happened in one step, as passed to a reward function.

    Arrays are aligned with ``agents`` (the agents that acted, in activation order).
    ``warmup`` and ``fallback`` are boolean masks (the reaction was in warm-up; the action
    got the fallback label). ``real_counts``/``sim_counts`` are the step's label histograms.
    """

    step: int
    agents: Sequence[str]
    reaction_indices: np.ndarray
    real_ids: np.ndarray
    sim_ids: np.ndarray
    warmup: np.ndarray
    fallback: np.ndarray
    real_counts: np.ndarray
    sim_counts: np.ndarray
    scheme: LabelScheme


class LabelMatchReward:
    """``1[sim == real] - kl_weight * KL(real step shares || sim step shares)`` per agent."""

    def __init__(self, match_weight: float = 1.0, kl_weight: float = 1.0) -> None:
        check_number("match_weight", match_weight, -math.inf)
        check_number("kl_weight", kl_weight, -math.inf)
        self.match_weight = match_weight
        self.kl_weight = kl_weight

    def __call__(self, outcome: StepOutcome) -> np.ndarray:
        match = (outcome.sim_ids == outcome.real_ids).astype(np.float64)
        penalty = kl_divergence(outcome.real_counts, outcome.sim_counts) if self.kl_weight else 0.0
        return self.match_weight * match - self.kl_weight * penalty


RewardFn = Callable[[StepOutcome], np.ndarray]


class _PendingStep(NamedTuple):
    """What :meth:`PopulationEnv.begin_step` leaves for :meth:`PopulationEnv.end_step`;
    the mean-field update carries the world's texts and label ids of the step."""

    update: MeanFieldUpdate
    sim_ids: np.ndarray
    fallback: list[bool]
    empty: list[bool]
    invalid: list[bool]
    n_warm: int
    policy_infos: list[dict[str, Any] | None]
    outcome: StepOutcome
    rewards: list[float]


StepResult = tuple[
    dict[str, dict[str, Any]],  # observations
    dict[str, float],  # rewards
    dict[str, bool],  # terminations
    dict[str, bool],  # truncations
    dict[str, dict[str, Any]],  # infos
]

_STATE_TEMPLATES = {
    "en": {
        "user": "User {name}",
        "followers": "{n} followers",
        "verified": "verified",
        "bio": "Bio: {text}",
        "location": "Location: {text}",
        "history": "Your earlier posts: {posts}",
    },
    "zh": {
        "user": "用户{name}",
        "followers": "粉丝{n}",
        "verified": "认证用户",
        "bio": "简介：{text}",
        "location": "所在地：{text}",
        "history": "你之前的发言：{posts}",
    },
}


_SENTENCE_ENDS = (".", "!", "?", "。", "！", "？")


def render_profile(reaction: Reaction, language: str = "en") -> str:
    """Who the author of ``reaction`` is, as one line of text."""
    t = _STATE_TEMPLATES.get(language, _STATE_TEMPLATES["en"])
    profile = reaction.author.profile
    parts = [t["user"].format(name=profile.get("name") or reaction.author.author_id)]
    if "followers" in profile:
        parts.append(t["followers"].format(n=profile["followers"]))
    if profile.get("verified"):
        parts.append(t["verified"])
    text = ", ".join(parts) + "."
    for key, template in (("description", "bio"), ("location", "location")):
        value = str(profile.get(key) or "").strip()
        if value:
            sentence = t[template].format(text=value)
            text += " " + (sentence if sentence.endswith(_SENTENCE_ENDS) else sentence + ".")
    return text


def render_state(profile_text: str, own_history: Sequence[str], language: str = "en") -> str:
    """The agent's state text: its profile line and what it already posted.

    One function for the environment and for every prompt built from its observations.
    """
    if not own_history:
        return profile_text
    t = _STATE_TEMPLATES.get(language, _STATE_TEMPLATES["en"])
    return profile_text + " " + t["history"].format(posts=" | ".join(own_history))


class PopulationEnv(ParallelEnv[str, dict[str, Any], Any]):
    """A population reacting to one event; see the module docstring.

    Bad input (the module docstring's "Bad input" section): a wrong *call* raises and
    changes nothing -- ``actions`` not a mapping (``TypeError``), keys of agents not acting
    now (``ValueError``), ``step`` before ``reset`` or after the end (``RuntimeError``), a
    seed other than ``None`` or an int >= 0 (``ValueError``); a wrong *action* of an acting
    agent (missing, wrong type, out of range, unwritable text) falls back to the scheme's
    fallback label, flagged in ``infos[agent]["invalid_action"]`` and counted in
    ``stats["invalid_action"]``.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/Population-v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        scenario: Scenario,
        *,
        agents_per_step: int = 16,
        warmup: int = 50,
        max_reactions: int | None = None,
        action_mode: ActionMode = "text",
        label_dimension: str | LabelScheme | None = None,
        labeler: ActionLabeler | None = None,
        mean_field: MeanFieldModel | None = None,
        reward_fn: RewardFn | None = None,
        history_length: int = 2,
        max_text_length: int = 2048,
        max_action_length: int = 1000,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(scenario, Scenario):
            raise TypeError(f"scenario must be a mfllm_env.Scenario, got {type(scenario).__name__}")
        check_count("agents_per_step", agents_per_step, 1)
        check_count("warmup", warmup, 0)
        check_count("history_length", history_length, 0)
        check_count("max_text_length", max_text_length, 1)
        check_count("max_action_length", max_action_length, 1)
        if action_mode not in ("text", "label"):
            raise ValueError(f"action_mode must be 'text' or 'label', got {action_mode!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if max_reactions is not None:
            check_count("max_reactions", max_reactions, 1)
        check_methods("mean_field", mean_field, ("reset", "update"))
        check_methods("labeler", labeler, ("label",))
        if labeler is not None and not isinstance(getattr(labeler, "scheme", None), LabelScheme):
            raise TypeError(
                f"labeler must have a LabelScheme as its scheme, got {type(labeler).__name__} "
                f"with scheme {getattr(labeler, 'scheme', None)!r:.80}"
            )
        if reward_fn is not None and not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
        reactions = scenario.reactions[:max_reactions]
        if not reactions:
            raise ValueError(f"scenario {scenario.scenario_id!r} has no reactions to replay")

        self.scenario = scenario
        self.scheme = (
            label_dimension
            if isinstance(label_dimension, LabelScheme)
            else scheme_for(label_dimension or scenario.default_label_dimension)
        )
        self.agents_per_step = agents_per_step
        self.warmup = warmup
        self.action_mode: ActionMode = action_mode
        self.history_length = history_length
        self.max_text_length = max_text_length
        self.max_action_length = max_action_length
        self.render_mode = render_mode
        self.mean_field_model: MeanFieldModel = mean_field or HistogramMeanField()
        self.reward_fn: RewardFn = reward_fn or LabelMatchReward()
        self._reactions = reactions
        self._n = len(reactions)
        self.labeler = labeler
        self._real_ids, self._real_from_human = self._label_real_reactions()

        width = max(5, len(str(self._n - 1)))
        self.possible_agents = [f"reaction_{i:0{width}d}" for i in range(self._n)]
        self._agent_index = {agent: i for i, agent in enumerate(self.possible_agents)}
        k = self.scheme.size
        self._observation_space = spaces.Dict(
            {
                "event": FreeText(max_text_length),
                "state": FreeText(max_text_length),
                "mean_field": FreeText(max_text_length),
                "shares": spaces.Box(0.0, 1.0, (k,), np.float32),
            }
        )
        self._action_space: spaces.Space[Any] = (
            FreeText(max_action_length) if action_mode == "text" else spaces.Discrete(k)
        )
        self.state_space = spaces.Box(0.0, 1.0, (2 * k + 1,), np.float32)
        self._event_text = scenario.event_text[:max_text_length]
        self._language = scenario.language
        self._profiles: dict[str, str] = {}  # author id -> profile line, kept across resets
        self.np_random, self._seed = seeding.np_random(None)
        self.agents: list[str] = []
        self._reset_done = False
        self._reset_episode_state()

    # -- set-up helpers -------------------------------------------------------------

    def require_labeler(self, why: str) -> ActionLabeler:
        if self.labeler is None:
            # Imported here: the trained labeller is only loaded when it is needed.
            from mfllm_env.labelers import default_labeler

            try:
                self.labeler = default_labeler(self.scheme)
            except (KeyError, ValueError) as error:
                raise ValueError(f"{why}, but {error}") from None
        if self.labeler.scheme.labels != self.scheme.labels:
            raise ValueError(
                f"labeler labels {self.labeler.scheme.labels} differ from the env's scheme "
                f"{self.scheme.labels}"
            )
        return self.labeler

    def _label_real_reactions(self) -> tuple[np.ndarray, np.ndarray]:
        dimension = self.scheme.dimension
        ids = np.full(self._n, UNLABELLED, dtype=np.int64)
        human = np.zeros(self._n, dtype=bool)
        missing: list[int] = []
        for i, reaction in enumerate(self._reactions):
            name = reaction.labels.get(dimension)
            if name is None:
                missing.append(i)
            elif name in self.scheme.labels:
                ids[i] = self.scheme.index(name)
                human[i] = True
            else:
                raise ValueError(
                    f"scenario {self.scenario.scenario_id!r}: reaction {reaction.reaction_id!r} "
                    f"has {dimension} label {name!r}, not a label of scheme {self.scheme.name!r} "
                    f"{self.scheme.labels}"
                )
        if missing:
            labeler = self.require_labeler(
                f"{len(missing)} reactions have no human {dimension!r} label"
            )
            predicted = self._checked_labels(labeler, [self._reactions[i].text for i in missing])
            predicted = np.where(predicted == UNLABELLED, self.scheme.fallback_id, predicted)
            ids[missing] = predicted
        if self.action_mode == "text":
            self.require_labeler("text actions must be labelled")
        return ids, human

    def label_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The env's labeller's ids for ``texts`` (-1: it could not label one)."""
        return self._checked_labels(self.require_labeler("texts must be labelled"), list(texts))

    def _checked_labels(self, labeler: ActionLabeler, texts: list[str]) -> np.ndarray:
        """The labeller's ids for ``texts``, checked: one per text, each in [-1, K)."""
        returned = labeler.label(texts)
        try:
            ids = np.asarray(returned)
        except ValueError:  # ragged nested lists
            ids = np.asarray(None)
        wrong = f"must return one id in [-1, {self.scheme.size}) per text"
        if ids.dtype.kind not in "iu":  # floats would be cut, strings parsed: refuse both
            raise ValueError(
                f"labeler {type(labeler).__name__} {wrong} as integers; got {returned!r:.100}"
            )
        if ids.shape != (len(texts),) or (
            ids.size and (ids.min() < UNLABELLED or ids.max() >= self.scheme.size)
        ):
            raise ValueError(
                f"labeler {type(labeler).__name__} {wrong}; got shape {ids.shape} for "
                f"{len(texts)} texts" + (f", values {ids.min()}..{ids.max()}" if ids.size else "")
            )
        return ids.astype(np.int64)

    def _reset_episode_state(self) -> None:
        self._cursor = 0
        self._step_index = 0
        self._sim_ids = np.full(self._n, UNLABELLED, dtype=np.int64)
        self._world_ids = np.full(self._n, UNLABELLED, dtype=np.int64)
        self._world_counts = np.zeros(self.scheme.size)
        self._active: list[int] = []
        self._observations: dict[str, dict[str, Any]] = {}
        self._history: dict[str, deque[str]] = {}
        self.stats = {
            "actions": 0,
            "fallback": 0,
            "empty_action": 0,
            "invalid_action": 0,
            "injected": 0,
        }
        self.injected: list[dict[str, Any]] = []
        self._last_outcome: StepOutcome | None = None
        self._pending: _PendingStep | None = None

    # -- PettingZoo API ---------------------------------------------------------------

    def observation_space(self, agent: str) -> spaces.Dict:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_space

    @property
    def num_steps(self) -> int:
        """Steps in a full episode."""
        return math.ceil(self._n / self.agents_per_step)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        seed = check_seed(seed)
        if seed is not None:
            self.np_random, self._seed = seeding.np_random(seed)
            space_seeds = self.np_random.integers(0, 2**31 - 1, size=2)
            self._action_space.seed(int(space_seeds[0]))
            self._observation_space.seed(int(space_seeds[1]))
        self._reset_done = True
        self._reset_episode_state()
        self._mean_field = self._checked_mean_field(
            self.mean_field_model.reset(self.scenario, self.scheme), "reset"
        )
        self._shares32 = self._observed_shares()
        observations, infos = self._activate_next()
        return observations, infos

    def _checked_mean_field(self, mean_field: object, call: str) -> MeanField:
        """``mean_field`` as the model's ``call`` returned it, if it is a :class:`MeanField`
        with a text and ``K`` finite shares >= 0 that sum to 1; ``TypeError`` /
        ``ValueError`` naming the model otherwise."""
        model = f"mean-field model {type(self.mean_field_model).__name__}.{call}()"
        if not isinstance(mean_field, MeanField):
            raise TypeError(f"{model} must return a MeanField, got {type(mean_field).__name__}")
        try:
            shares = np.asarray(mean_field.shares)
        except ValueError:  # ragged nested lists
            shares = np.asarray(None)
        size = self.scheme.size
        if not (
            isinstance(mean_field.text, str)
            and shares.dtype.kind in "iuf"
            and shares.shape == (size,)
            and np.isfinite(shares).all()
            and shares.min() >= 0
            and abs(shares.sum() - 1.0) <= 1e-6
        ):
            raise ValueError(
                f"{model} must return a text and {size} finite shares >= 0 that sum to 1; got "
                f"text of type {type(mean_field.text).__name__}, shares {mean_field.shares!r:.100}"
            )
        if shares is not mean_field.shares:  # a list: the env observes a float array
            mean_field = MeanField(mean_field.text, shares.astype(np.float64), mean_field.count)
        return mean_field

    def _observed_shares(self) -> np.ndarray:
        """The mean field's shares as observed: float32, read-only (shared by all agents)."""
        shares = self._mean_field.shares.astype(np.float32)
        shares.flags.writeable = False
        return shares

    def _activate_next(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        start = self._cursor
        stop = min(start + self.agents_per_step, self._n)
        self._active = list(range(start, stop))
        self._cursor = stop
        self.agents = [self.possible_agents[i] for i in self._active]
        observations: dict[str, dict[str, Any]] = {}
        infos: dict[str, dict[str, Any]] = {}
        mf_text = self._mean_field.text[: self.max_text_length]
        step, warmup, language = self._step_index, self.warmup, self._language
        for i, agent in zip(self._active, self.agents, strict=True):
            reaction = self._reactions[i]
            author = reaction.author.author_id
            profile = self._profiles.get(author)
            if profile is None:
                profile = self._profiles[author] = render_profile(reaction, language)
            history = self._history.get(author)
            state = render_state(profile, history, language) if history else profile
            observations[agent] = {
                "event": self._event_text,
                "state": state[: self.max_text_length],
                "mean_field": mf_text,
                "shares": self._shares32,
            }
            infos[agent] = {"step": step, "reaction_index": i, "warmup": i < warmup}
        self._observations = observations
        return observations, infos

    def _label_actions(
        self, actions: Mapping[str, Any]
    ) -> tuple[list[str], np.ndarray, list[bool], list[bool], list[bool]]:
        """Texts (for the mean field), label ids and the fallback / empty / invalid flags
        of the active agents' actions."""
        agents = self.agents
        fallback_id = self.scheme.fallback_id
        if self.action_mode == "label":
            size = self.scheme.size
            raw = [actions.get(agent) for agent in agents]
            invalid = [not (is_integer(a) and 0 <= a < size) for a in raw]
            id_list = [fallback_id if bad else int(a) for a, bad in zip(raw, invalid, strict=True)]
            labels = self.scheme.labels
            return (
                [labels[i] for i in id_list],
                np.array(id_list),
                invalid,
                [False] * len(agents),
                invalid,
            )
        texts: list[str] = []
        invalid = []
        empty = []
        limit = self.max_action_length
        for agent in agents:
            action = actions.get(agent)
            if isinstance(action, str) and len(action) > limit:
                action = action[:limit]
            if is_text(action):
                texts.append(action)
                invalid.append(False)
                empty.append(not action.strip())
            else:  # missing, not a string or not writable: invalid, labelled as the empty text
                texts.append("")
                invalid.append(True)
                empty.append(False)
        ids = self._checked_labels(self.labeler, texts)  # type: ignore[arg-type]
        fallback = [bad or i == UNLABELLED for bad, i in zip(invalid, ids.tolist(), strict=True)]
        if any(fallback):
            ids[np.array(fallback)] = fallback_id
        return texts, ids, fallback, empty, invalid

    def inject(
        self, texts: Sequence[str], label_ids: Sequence[int], author: Author
    ) -> dict[str, dict[str, Any]]:
        """Post ``texts`` (labelled ``label_ids``) from ``author`` into the reaction stream
        before the active agents act: the mean-field model folds them in as one batch, so
        the active agents' observations (returned, new dicts) and every later one see them.
        Injected posts are not reactions of the population: they are not scored and do
        not enter :meth:`state`'s simulated shares. :attr:`injected` lists them.
        """
        if not self.agents:
            raise RuntimeError("inject() called on a finished episode; call reset() first")
        if self._pending is not None:
            raise RuntimeError("inject() called between begin_step() and end_step()")
        if isinstance(texts, str) or not isinstance(texts, Sequence):  # a str: one per char
            raise TypeError(f"inject() texts must be a list of str, got {type(texts).__name__}")
        try:
            ids = np.asarray(label_ids)
        except ValueError:  # ragged nested lists
            ids = np.asarray(None)
        if ids.dtype.kind not in "iu" or ids.ndim != 1:  # floats were cut, bools taken as ids
            raise ValueError(
                f"inject() label ids must be a list of integers, got {label_ids!r:.80}"
            )
        if len(texts) != ids.size or not ids.size:
            raise ValueError(f"inject() needs one label per text, got {len(texts)} and {ids.size}")
        if ids.min() < 0 or ids.max() >= self.scheme.size:
            raise ValueError(f"label ids must be in [0, {self.scheme.size}), got {ids.tolist()}")
        ids = ids.astype(np.int64)
        bad = next((i for i, text in enumerate(texts) if not is_text(text)), None)
        if bad is not None:
            raise ValueError(f"inject() text {bad} is not writable text: {texts[bad]!r}")
        state = render_profile(Reaction("injected", author, "", 0.0), self._language)
        self._mean_field = self._checked_mean_field(
            self.mean_field_model.update(
                self._mean_field, [state] * ids.size, list(texts), ids, authors=[author] * ids.size
            ),
            "update",
        )
        self._shares32 = self._observed_shares()
        at = self._active[0]
        for text, label in zip(texts, ids.tolist(), strict=True):
            self.injected.append({"at": at, "text": text, "label": self.scheme.labels[label]})
        self.stats["injected"] += ids.size
        mf_text = self._mean_field.text[: self.max_text_length]
        self._observations = {
            agent: {**observation, "mean_field": mf_text, "shares": self._shares32}
            for agent, observation in self._observations.items()
        }
        return dict(self._observations)

    def reaction_index(self, agent: str) -> int:
        """The index (in the scenario's reactions) of the reaction ``agent`` replays."""
        return self._agent_index[agent]

    def step(self, actions: Mapping[str, Any]) -> StepResult:
        update = self.begin_step(actions)
        return self.end_step(update.apply(self.mean_field_model))

    def begin_step(self, actions: Mapping[str, Any]) -> MeanFieldUpdate:
        """First half of :meth:`step`: label the actions and return the mean-field update
        they call for. Finish with :meth:`end_step`, passing the updated mean field.

        ``step(actions)`` is ``end_step(begin_step(actions).apply(env.mean_field_model))``;
        the split lets a runner update the mean fields of several environments in one
        batched call (:func:`mfllm_env.mean_field.update_mean_fields`).
        """
        check_can_step(self.agents, self._reset_done)
        if self._pending is not None:
            raise RuntimeError("begin_step() called twice; call end_step() first")
        actions = check_actions(actions, self.agents)
        acted = self.agents
        count = len(acted)
        start = self._active[0]
        texts, sim_ids, fallback, empty, invalid = self._label_actions(actions)
        real_ids = self._real_ids[start : start + count]

        # The mean field is driven by real reactions during warm-up, by actions after it.
        n_warm = min(max(self.warmup - start, 0), count)
        world_ids = sim_ids.copy()
        world_texts = texts
        if n_warm:
            world_ids[:n_warm] = real_ids[:n_warm]
            if self.action_mode == "text":
                real_texts = [r.text for r in self._reactions[start : start + n_warm]]
            else:  # label mode speaks in label names throughout, real reactions included
                real_texts = [self.scheme.labels[i] for i in real_ids[:n_warm].tolist()]
            world_texts = real_texts + texts[n_warm:]
        policy_infos = [
            action.info if isinstance(action := actions.get(agent), AnnotatedText) else None
            for agent in acted
        ]
        update = MeanFieldUpdate(
            self._mean_field,
            [self._observations[agent]["state"] for agent in acted],
            world_texts,
            world_ids,
            [r.author for r in self._reactions[start : start + count]],
        )
        warm = np.zeros(count, dtype=bool)
        warm[:n_warm] = True
        size = self.scheme.size
        outcome = StepOutcome(
            step=self._step_index,
            agents=acted,
            reaction_indices=np.arange(start, start + count),
            real_ids=real_ids,
            sim_ids=sim_ids,
            warmup=warm,
            fallback=np.array(fallback),
            real_counts=np.bincount(real_ids, minlength=size).astype(np.float64),
            sim_counts=np.bincount(sim_ids, minlength=size).astype(np.float64),
            scheme=self.scheme,
        )
        rewards = self._checked_rewards(outcome)
        self._pending = _PendingStep(
            update, sim_ids, fallback, empty, invalid, n_warm, policy_infos, outcome, rewards
        )
        return update

    def _checked_rewards(self, outcome: StepOutcome) -> list[float]:
        """``reward_fn(outcome)`` as one float per acting agent; ``ValueError`` naming what
        it returned unless that is one finite number or one per acting agent."""
        count = len(outcome.agents)
        returned = self.reward_fn(outcome)
        try:
            values = np.asarray(returned)
        except ValueError:  # ragged nested lists
            values = np.asarray(None)
        if not (
            values.dtype.kind in "biuf"
            and values.shape in ((), (count,))
            and np.isfinite(values).all()
        ):
            raise ValueError(
                f"reward_fn must return a finite number or {count} finite numbers (one per "
                f"acting agent); got {returned!r:.100}"
            )
        if values.shape == ():
            return [float(values)] * count
        return values.astype(np.float64).tolist()

    def end_step(self, mean_field: MeanField) -> StepResult:
        """Second half of :meth:`step` (see :meth:`begin_step`); returns what ``step``
        returns."""
        if self._pending is None:
            raise RuntimeError("end_step() called without begin_step()")
        update, sim_ids, fallback, empty, invalid, n_warm, policy_infos, outcome, reward_list = (
            self._pending
        )
        world_ids, world_texts = update.labels, update.actions
        self._pending = None
        acted = self.agents
        count = len(acted)
        start = self._active[0]
        stop = start + count
        real_ids = self._real_ids[start:stop]
        acted_observations = self._observations
        self._mean_field = self._checked_mean_field(mean_field, "update")
        self._shares32 = self._observed_shares()
        self._sim_ids[start:stop] = sim_ids
        self._world_ids[start:stop] = world_ids
        size = self.scheme.size
        self._world_counts += np.bincount(world_ids, minlength=size)
        if self.history_length:
            history = self._history
            for reaction, text in zip(self._reactions[start:stop], world_texts, strict=True):
                queue = history.get(reaction.author.author_id)
                if queue is None:
                    queue = history[reaction.author.author_id] = deque(maxlen=self.history_length)
                queue.append(text[:HISTORY_POST_LENGTH])

        stats = self.stats
        stats["actions"] += count
        stats["fallback"] += sum(fallback)
        stats["empty_action"] += sum(empty)
        stats["invalid_action"] += sum(invalid)
        self._last_outcome = outcome

        labels = self.scheme.labels
        # A terminated agent's final observation is the one it acted on.
        observations: dict[str, dict[str, Any]] = dict(acted_observations)
        rewards = dict(zip(acted, reward_list, strict=True))
        terminations = dict.fromkeys(acted, True)
        truncations = dict.fromkeys(acted, False)
        infos: dict[str, dict[str, Any]] = {}
        human = self._real_from_human
        step = self._step_index
        for j, (agent, reaction, real, sim) in enumerate(
            zip(
                acted, self._reactions[start:stop], real_ids.tolist(), sim_ids.tolist(), strict=True
            )
        ):
            infos[agent] = {
                "step": step,
                "reaction_index": start + j,
                "warmup": j < n_warm,
                "real_text": reaction.text,
                "real_label": labels[real],
                "real_label_id": real,
                "real_label_source": "human" if human[start + j] else "labeller",
                "sim_label": labels[sim],
                "sim_label_id": sim,
                "fallback": fallback[j],
                "empty_action": empty[j],
                "invalid_action": invalid[j],
            }
            if policy_infos[j]:
                infos[agent]["policy"] = dict(policy_infos[j])
        self._step_index += 1
        if self._cursor < self._n:
            new_obs, new_infos = self._activate_next()
            observations.update(new_obs)
            infos.update(new_infos)
            for agent in self.agents:
                rewards[agent] = 0.0
                terminations[agent] = False
                truncations[agent] = False
        else:
            self._active = []
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    @property
    def last_record(self) -> dict[str, Any] | None:
        """A JSON-ready summary of the last step (``None`` before the first step)."""
        outcome = self._last_outcome
        if outcome is None:
            return None
        count = len(outcome.agents)
        return {
            "step": outcome.step,
            "reactions": [int(outcome.reaction_indices[0]), int(outcome.reaction_indices[-1]) + 1],
            "warmup": int(outcome.warmup.sum()),
            "real_labels": outcome.real_ids.tolist(),
            "sim_labels": outcome.sim_ids.tolist(),
            "real_step_shares": (outcome.real_counts / count).tolist(),
            "sim_step_shares": (outcome.sim_counts / count).tolist(),
            "world_shares": (self._world_counts / self._world_counts.sum()).tolist(),
            "mean_field": self._mean_field.text,
            "fallbacks": int(outcome.fallback.sum()),
        }

    def state(self) -> np.ndarray:
        """Mean-field shares, the simulated world's cumulative label shares (real labels in
        warm-up, the agents' after; the mean-field shares before any action) and the
        fraction of the episode's reactions already acted on."""
        total = self._world_counts.sum()
        world = self._world_counts / total if total else self._mean_field.shares
        done = (self._cursor - len(self.agents)) / self._n
        return np.concatenate([self._mean_field.shares, world, [done]]).astype(np.float32)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        shares = ", ".join(
            f"{name} {share:.2f}"
            for name, share in zip(self.scheme.labels, self._mean_field.shares, strict=True)
        )
        return f"step {self._step_index}/{self.num_steps}: {shares}"

    def close(self) -> None:
        pass

    # -- results ---------------------------------------------------------------------------

    @property
    def real_label_ids(self) -> np.ndarray:
        """Real label id of every reaction of the episode (human where available)."""
        return self._real_ids.copy()

    @property
    def real_label_from_human(self) -> np.ndarray:
        """Whether each reaction's real label is a human one (``False``: the reaction has
        no human label and its real label is the labeller's)."""
        return self._real_from_human.copy()

    @property
    def sim_label_ids(self) -> np.ndarray:
        """The agents' label ids so far (-1 for reactions not yet acted on)."""
        return self._sim_ids.copy()

    @property
    def world_label_ids(self) -> np.ndarray:
        """Labels of the simulated world: real ones in warm-up, the agents' after it."""
        return self._world_ids.copy()

    def reference_texts(self) -> dict[str, str]:
        """The real reactions of the active agents, by agent: for scoring their likelihood
        under a policy (NLL). A policy must not act on them."""
        return {
            agent: self._reactions[i].text
            for agent, i in zip(self.agents, self._active, strict=True)
        }

    @property
    def mean_field(self) -> MeanField:
        return self._mean_field
