"""The rumour family as a :class:`~mfllm_env.core.protocols.Game`: a population reacting
to one event, replayed reaction by reaction.

:class:`RumourGame` holds the episode: which reactions' authors act now, what they see
(event, own state, mean field), how their actions are labelled (the labeller is the
family's text codec, :class:`~mfllm_env.games.rumour.text.RumourTextCodec`: a text becomes
a label id, with the scheme's fallback counted), the rewards and the mean field. Its
transition is split around the mean-field update
(:class:`~mfllm_env.core.protocols.SplitGame`), so the mean fields of several episodes are
updated in one batched call. :class:`~mfllm_env.population_env.PopulationEnv`
(``mfllm/Population-v0``) is the generic :class:`~mfllm_env.core.env.GameEnv` over it;
its docstring documents the behaviour (observations, actions, bad input, rewards, infos).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from mfllm_env.checks import (
    check_count,
    check_methods,
    check_number,
    is_integer,
    is_text,
)
from mfllm_env.core.protocols import MISSING, Transition
from mfllm_env.games.rumour.text import RumourTextCodec
from mfllm_env.labels import UNLABELLED, ActionLabeler, LabelScheme, scheme_for
from mfllm_env.mean_field import HistogramMeanField, MeanField, MeanFieldModel, MeanFieldUpdate
from mfllm_env.metrics import kl_divergence
from mfllm_env.scenario import Author, Reaction, Scenario
from mfllm_env.spaces import AnnotatedText, FreeText

ActionMode = Literal["text", "label"]


@runtime_checkable
class ResponseModel(Protocol):
    """The population's own response, part of the game's transition (label mode): the
    acting agents given no action react with the label ids it draws, from its own
    generator. ``labels``: the scheme it answers in. ``reset(seed)`` starts an episode
    (an int seed, or a generator to draw from); ``respond(indices, world_label_ids)``
    draws the labels of the reactions at ``indices`` given the world's labels so far (one
    id in ``[0, K)`` per index; the game refuses anything else, naming the model), and
    ``check(scenario)`` raises a ``ValueError`` naming both scenarios unless it answers for
    ``scenario``'s reactions (the game calls it once, at construction).
    :class:`mfllm_env.synthetic.SyntheticResponse` is one."""

    labels: tuple[str, ...]

    def check(self, scenario: Scenario) -> None: ...

    def reset(self, seed: int | np.random.Generator | None = None) -> None: ...

    def respond(self, indices: Sequence[int], world_label_ids: np.ndarray) -> list[int]: ...


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


class ReactionActions(NamedTuple):
    """The acting agents' actions as :meth:`RumourGame.decode` reads them: texts (for the
    mean field; an invalid action is the empty text), label ids (fallbacks applied), the
    fallback / empty / invalid flags and what each policy reported
    (:class:`~mfllm_env.spaces.AnnotatedText`'s ``info``, else ``None``)."""

    texts: list[str]
    ids: np.ndarray
    fallback: list[bool]
    empty: list[bool]
    invalid: list[bool]
    policy_infos: list[dict[str, Any] | None]


class _PendingStep(NamedTuple):
    """What :meth:`RumourGame.begin_transition` leaves for
    :meth:`RumourGame.finish_transition`; the mean-field update carries the world's texts
    and label ids of the step."""

    update: MeanFieldUpdate
    actions: ReactionActions
    n_warm: int
    outcome: StepOutcome
    rewards: list[float]


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


class RumourGame:
    """One event's population replayed as a :class:`~mfllm_env.core.protocols.SplitGame`;
    the arguments and behaviour are :class:`~mfllm_env.population_env.PopulationEnv`'s."""

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
        response: ResponseModel | None = None,
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
        if response is not None:
            if not isinstance(response, ResponseModel):
                raise TypeError(
                    f"response must have labels, check(scenario), reset(seed) and "
                    f"respond(indices, world_label_ids), got {type(response).__name__}"
                )
            if action_mode != "label" or tuple(response.labels) != self.scheme.labels:
                raise ValueError(
                    f"{type(response).__name__} answers in labels {tuple(response.labels)}: "
                    f"it needs an environment in label mode with that scheme, got "
                    f"{action_mode!r} mode with {self.scheme.labels}"
                )
            response.check(scenario)
        self.response = response
        self.mean_field_model: MeanFieldModel = mean_field or HistogramMeanField()
        self.reward_fn: RewardFn = reward_fn or LabelMatchReward()
        self._reactions = reactions
        self._n = len(reactions)
        self.labeler = labeler
        self._codec: RumourTextCodec | None = None
        self._real_ids, self._real_from_human = self._label_real_reactions()

        width = max(5, len(str(self._n - 1)))
        self.agent_ids = [f"reaction_{i:0{width}d}" for i in range(self._n)]
        self._agent_index = {agent: i for i, agent in enumerate(self.agent_ids)}
        k = self.scheme.size
        self.observation_space = spaces.Dict(
            {
                "event": FreeText(max_text_length),
                "state": FreeText(max_text_length),
                "mean_field": FreeText(max_text_length),
                "shares": spaces.Box(0.0, 1.0, (k,), np.float32),
            }
        )
        self.action_space: spaces.Space[Any] = (
            FreeText(max_action_length) if action_mode == "text" else spaces.Discrete(k)
        )
        self.state_space = spaces.Box(0.0, 1.0, (2 * k + 1,), np.float32)
        self._event_text = scenario.event_text[:max_text_length]
        self._language = scenario.language
        self._profiles: dict[str, str] = {}  # author id -> profile line, kept across resets
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
            codec = self.codec(f"{len(missing)} reactions have no human {dimension!r} label")
            predicted = codec.label([self._reactions[i].text for i in missing])
            predicted = np.where(predicted == UNLABELLED, self.scheme.fallback_id, predicted)
            ids[missing] = predicted
        if self.action_mode == "text":
            self.require_labeler("text actions must be labelled")
        return ids, human

    def label_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The env's labeller's ids for ``texts`` (-1: it could not label one)."""
        return self.codec().label(texts)

    def codec(self, why: str = "texts must be labelled") -> RumourTextCodec:
        """The text codec over the env's labeller (:meth:`require_labeler` with ``why``)."""
        labeler = self.require_labeler(why)
        if self._codec is None or self._codec.labeler is not labeler:
            self._codec = RumourTextCodec(labeler)
        return self._codec

    def _reset_episode_state(self) -> None:
        self._cursor = 0
        self._step_index = 0
        self._sim_ids = np.full(self._n, UNLABELLED, dtype=np.int64)
        self._world_ids = np.full(self._n, UNLABELLED, dtype=np.int64)
        self._world_counts = np.zeros(self.scheme.size)
        self._active: list[int] = []
        self._observations: dict[int, dict[str, Any]] = {}  # the acting agents'
        self._acted_observations: dict[int, dict[str, Any]] = {}  # the last step's
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

    # -- the Game protocol ------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        """Steps in a full episode."""
        return math.ceil(self._n / self.agents_per_step)

    def reset(self, rng: np.random.Generator) -> None:
        """Start the episode: the mean field is the model's initial one and the first
        ``agents_per_step`` reactions' authors act. (A replay draws nothing from ``rng``;
        the response model, if any, draws its labels from it, unless
        :meth:`reset_response` gives it a seed of its own.)"""
        self._reset_episode_state()
        if self.response is not None:
            self.response.reset(rng)
        self._mean_field = self._checked_mean_field(
            self.mean_field_model.reset(self.scenario, self.scheme), "reset"
        )
        self._shares32 = self._observed_shares()
        self._activate_next()

    def reset_response(self, seed: int) -> None:
        """Seed the response model's draws for this episode (a leader env seeds it as it
        would seed a follower policy: :class:`~mfllm_env.core.leader.LeaderEnv`)."""
        if self.response is None:
            raise ValueError("this game has no response model (response=...)")
        self.response.reset(seed)

    def acting(self) -> Sequence[int]:
        return self._active

    def observe(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The observations of the acting agents, and of those that acted last step (a
        terminated agent's final observation is the one it acted on)."""
        acting, acted = self._observations, self._acted_observations
        return [acting[i] if i in acting else acted[i] for i in indices]

    def activation_infos(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        step, warmup = self._step_index, self.warmup
        return [{"step": step, "reaction_index": i, "warmup": i < warmup} for i in indices]

    def statistics(self) -> dict[str, float]:
        """The mean field's label shares, by label."""
        return dict(zip(self.scheme.labels, self._mean_field.shares.tolist(), strict=True))

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

    def _activate_next(self) -> None:
        start = self._cursor
        stop = min(start + self.agents_per_step, self._n)
        self._active = list(range(start, stop))
        self._cursor = stop
        observations: dict[int, dict[str, Any]] = {}
        mf_text = self._mean_field.text[: self.max_text_length]
        language = self._language
        for i in self._active:
            reaction = self._reactions[i]
            author = reaction.author.author_id
            profile = self._profiles.get(author)
            if profile is None:
                profile = self._profiles[author] = render_profile(reaction, language)
            history = self._history.get(author)
            state = render_state(profile, history, language) if history else profile
            observations[i] = {
                "event": self._event_text,
                "state": state[: self.max_text_length],
                "mean_field": mf_text,
                "shares": self._shares32,
            }
        self._observations = observations

    def decode(self, actions: Sequence[Any]) -> ReactionActions:
        """Label the acting agents' actions (one per acting agent, in order; a missing one
        is :data:`~mfllm_env.core.protocols.MISSING`: with a response model, the label it
        draws): invalid ones fall back, counted in the flags; the labeller's ids are
        checked (``ValueError`` naming it)."""
        fallback_id = self.scheme.fallback_id
        policy_infos = [a.info if isinstance(a, AnnotatedText) else None for a in actions]
        if self.response is not None:
            actions = self._responded(actions)
        if self.action_mode == "label":
            size = self.scheme.size
            invalid = [not (is_integer(a) and 0 <= a < size) for a in actions]
            id_list = [
                fallback_id if bad else int(a) for a, bad in zip(actions, invalid, strict=True)
            ]
            labels = self.scheme.labels
            return ReactionActions(
                [labels[i] for i in id_list],
                np.array(id_list),
                invalid,
                [False] * len(actions),
                invalid,
                policy_infos,
            )
        texts: list[str] = []
        invalid = []
        empty = []
        limit = self.max_action_length
        for action in actions:
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
        decoded = self.codec().decode_texts(texts)
        ids = decoded.actions
        fallback = [bad or bool(f) for bad, f in zip(invalid, decoded.fallbacks, strict=True)]
        if any(invalid):
            ids[np.array(invalid)] = fallback_id
        return ReactionActions(texts, ids, fallback, empty, invalid, policy_infos)

    def _responded(self, actions: Sequence[Any]) -> list[Any]:
        """``actions`` with the response model's labels where none was given."""
        response = self.response
        assert response is not None  # decode calls it only then
        missing = [j for j, action in enumerate(actions) if action is MISSING]
        if not missing:
            return list(actions)
        world = self._world_ids.view()
        world.flags.writeable = False  # the model reads the world, never writes it
        drawn = response.respond([self._active[j] for j in missing], world)
        try:
            ids = np.asarray(drawn)
        except ValueError:  # ragged nested lists
            ids = np.asarray(None)
        if (
            ids.dtype.kind not in "iu"
            or ids.shape != (len(missing),)
            or (ids.size and (ids.min() < 0 or ids.max() >= self.scheme.size))
        ):
            raise ValueError(
                f"response {type(response).__name__} must return one label id in "
                f"[0, {self.scheme.size}) per reaction as integers, {len(missing)} here; "
                f"got {drawn!r:.100}"
            )
        responded = list(actions)
        for j, label_id in zip(missing, ids.tolist(), strict=True):
            responded[j] = label_id
        return responded

    def inject(
        self, texts: Sequence[str], label_ids: Sequence[int], author: Author
    ) -> dict[str, dict[str, Any]]:
        """Post ``texts`` (labelled ``label_ids``) from ``author`` into the reaction stream
        before the active agents act: the mean-field model folds them in as one batch, so
        the active agents' observations (returned by agent, new dicts) and every later one
        see them.
        Injected posts are not reactions of the population: they are not scored and do
        not enter :meth:`state`'s simulated shares. :attr:`injected` lists them.
        """
        if not self._active:
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
                MeanFieldUpdate(
                    self._mean_field, [state] * ids.size, list(texts), ids, [author] * ids.size
                )
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
            i: {**observation, "mean_field": mf_text, "shares": self._shares32}
            for i, observation in self._observations.items()
        }
        names = self.agent_ids
        return {names[i]: observation for i, observation in self._observations.items()}

    def reaction_index(self, agent: str) -> int:
        """The index (in the scenario's reactions) of the reaction ``agent`` replays."""
        return self._agent_index[agent]

    def begin_transition(self, batch: ReactionActions) -> MeanFieldUpdate:
        """First half of :meth:`transition`: score the labelled actions (the reward
        function: if it raises or returns garbage, nothing has changed) and return the
        mean-field update they call for. Finish with :meth:`finish_transition`."""
        if self._pending is not None:
            raise RuntimeError("begin_step() called twice; call end_step() first")
        count = len(self._active)
        start = self._active[0]
        texts, sim_ids = batch.texts, batch.ids
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
        update = MeanFieldUpdate(
            self._mean_field,
            [self._observations[i]["state"] for i in self._active],
            world_texts,
            world_ids,
            [r.author for r in self._reactions[start : start + count]],
        )
        warm = np.zeros(count, dtype=bool)
        warm[:n_warm] = True
        size = self.scheme.size
        outcome = StepOutcome(
            step=self._step_index,
            agents=[self.agent_ids[i] for i in self._active],
            reaction_indices=np.arange(start, start + count),
            real_ids=real_ids,
            sim_ids=sim_ids,
            warmup=warm,
            fallback=np.array(batch.fallback),
            real_counts=np.bincount(real_ids, minlength=size).astype(np.float64),
            sim_counts=np.bincount(sim_ids, minlength=size).astype(np.float64),
            scheme=self.scheme,
        )
        rewards = self._checked_rewards(outcome)
        self._pending = _PendingStep(update, batch, n_warm, outcome, rewards)
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

    def transition(self, batch: ReactionActions) -> Transition:
        return self.finish_transition(self.mean_field_model.update(self.begin_transition(batch)))

    def finish_transition(self, mean_field: MeanField) -> Transition:
        """Second half of :meth:`transition` (see :meth:`begin_transition`): take the
        mean-field model's answer, record the step and activate the next authors."""
        if self._pending is None:
            raise RuntimeError("end_step() called without begin_step()")
        update, actions, n_warm, outcome, reward_list = self._pending
        sim_ids, fallback, empty, invalid = (
            actions.ids,
            actions.fallback,
            actions.empty,
            actions.invalid,
        )
        world_ids, world_texts = update.labels, update.actions
        self._pending = None
        acted = self._active
        count = len(acted)
        start = acted[0]
        stop = start + count
        real_ids = self._real_ids[start:stop]
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
        infos: dict[int, dict[str, Any]] = {}
        human = self._real_from_human
        step = self._step_index
        policy_infos = actions.policy_infos
        for j, (reaction, real, sim) in enumerate(
            zip(self._reactions[start:stop], real_ids.tolist(), sim_ids.tolist(), strict=True)
        ):
            infos[j] = {
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
                infos[j]["policy"] = dict(policy_infos[j])
        self._step_index += 1
        # A terminated agent's final observation is the one it acted on.
        self._acted_observations = self._observations
        if self._cursor < self._n:
            self._activate_next()
        else:
            self._active = []
            self._observations = {}
        return Transition(np.array(reward_list), True, False, infos)

    # -- results ---------------------------------------------------------------------------

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
        done = (self._cursor - len(self._active)) / self._n
        return np.concatenate([self._mean_field.shares, world, [done]]).astype(np.float32)

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
        return {self.agent_ids[i]: self._reactions[i].text for i in self._active}

    @property
    def mean_field(self) -> MeanField:
        return self._mean_field
