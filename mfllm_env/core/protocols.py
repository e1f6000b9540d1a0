"""The protocols a population family implements to run on the mean-field-game core.

A family (rumours, a macro-economy) is a :class:`Game`: the population's dynamics,
vectorised over agents. :class:`~mfllm_env.core.env.GameEnv` turns any game into one
PettingZoo parallel environment, and :class:`~mfllm_env.core.leader.LeaderEnv` puts a
leader (a planner, a government) in front of it when the game also plays a
:class:`LeaderRole`. Language models reach a game only through :class:`MeanFieldModel`
(a population summary) and a :class:`TextCodec` (observation -> prompt parts, text ->
action), so this package never imports an LLM library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from gymnasium import spaces

ObsT = TypeVar("ObsT")
ActionT = TypeVar("ActionT")
BatchT = TypeVar("BatchT")
BatchT_contra = TypeVar("BatchT_contra", contravariant=True)
SignalT_co = TypeVar("SignalT_co", covariant=True)

MISSING: Any = object()
"""Stands for the action of an acting agent that the ``actions`` mapping left out."""


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step of a game did, aligned with the agents that acted (in
    :meth:`Game.acting` order).

    ``rewards``: one float per acting agent. ``terminated``: one bool for all, or one per
    acting agent. ``truncated``: the time limit ended the episode for everyone. ``infos``:
    the few acting agents with something to report (a fallback, a clip), by their position
    among the acting agents; the others get an empty dict.
    """

    rewards: np.ndarray
    terminated: bool | np.ndarray
    truncated: bool = False
    infos: Mapping[int, dict[str, Any]] = field(default_factory=dict)


@runtime_checkable
class Game(Protocol[ObsT, ActionT]):
    """One population family: its state, who acts, what they see, what their actions do.

    A game owns its episode's state. ``reset(rng)`` draws the initial population from
    ``rng`` (every draw of an episode comes from the generator it was reset with: the same
    seed gives the same bytes). Each step, the agents at positions :meth:`acting` (indices
    into ``agent_ids``) act: :meth:`decode` turns their raw actions (one per acting agent,
    :data:`MISSING` where none was given) into the game's action batch -- counting, never
    raising on, bad actions of an agent -- and :meth:`transition` applies the batch.
    :meth:`acting` is empty once the episode is over.

    Optional: ``activation_infos(indices) -> [dict, ...]``, what the agents at ``indices``
    are told when they become active (returned as their ``infos`` by ``reset`` and by the
    step that activates them; without it, empty dicts). A game whose mean field is costly
    (an LLM summary) also splits its transition: :class:`SplitGame`.
    """

    agent_ids: Sequence[str]
    observation_space: spaces.Space[ObsT]
    action_space: spaces.Space[ActionT]
    stats: dict[str, int]

    def reset(self, rng: np.random.Generator) -> None: ...

    def acting(self) -> Sequence[int]: ...

    def observe(self, indices: Sequence[int]) -> Sequence[ObsT]: ...

    def statistics(self) -> Mapping[str, float]: ...

    def decode(self, actions: Sequence[Any]) -> Any: ...

    def transition(self, batch: Any) -> Transition: ...


@runtime_checkable
class SplitGame(Game[ObsT, ActionT], Protocol[ObsT, ActionT]):
    """A game whose transition is split around its mean-field update, so that a runner
    can update the mean fields of several episodes in one batched call
    (:func:`~mfllm_env.core.runner.update_mean_fields`: one LLM call for all of them).

    ``begin_transition(batch)`` takes the decoded action batch and returns the batch its
    ``mean_field_model`` must fold in; it must raise, changing nothing, on what it refuses
    (a reward function returning garbage). ``finish_transition(signal)`` takes the model's
    answer to that batch and ends the step. ``transition(batch)`` is
    ``finish_transition(mean_field_model.update(begin_transition(batch)))``.
    """

    mean_field_model: Any

    def begin_transition(self, batch: Any) -> Any: ...

    def finish_transition(self, signal: Any) -> Transition: ...


@runtime_checkable
class LeaderRole(Protocol):
    """A game that a leader (planner, government) steers in Stackelberg order.

    ``lead(action)`` applies the leader's action before the followers act (a bad action is
    answered with a counted fallback, reported in the returned info); after the followers'
    response, ``settle()`` returns the leader's reward for that response and an info dict.

    Optional: ``leader_waits() -> bool``, true while the leader sits out (a warm-up on
    observed data): :class:`~mfllm_env.core.leader.LeaderEnv` lets the followers respond
    alone, at reset, until it is false.
    """

    leader_id: str
    leader_observation_space: spaces.Space[Any]
    leader_action_space: spaces.Space[Any]

    def lead(self, action: Any) -> dict[str, Any]: ...

    def leader_observation(self) -> Any: ...

    def settle(self) -> tuple[float, dict[str, Any]]: ...


@runtime_checkable
class MeanFieldModel(Protocol[BatchT_contra, SignalT_co]):
    """Summarises the population for its members: one batch in, one signal out.

    ``reset(batch)`` sees the episode's opening batch (the initial population, no actions)
    and clears any state; ``update(batch)`` folds in one step's batch. The batch is the
    family's own frozen dataclass (for the economy,
    :class:`~mfllm_env.games.macro.mean_field.EconomyBatch`), so a new field never changes
    the signature. A class may also offer ``update_many(models, batches)`` (a classmethod)
    to serve several episodes in one batched call
    (:func:`~mfllm_env.core.runner.update_mean_fields` uses it).
    """

    def reset(self, batch: BatchT_contra) -> SignalT_co: ...

    def update(self, batch: BatchT_contra) -> SignalT_co: ...


@dataclass(frozen=True, slots=True)
class Decoded:
    """Texts turned into actions: ``actions`` (one row per text) and, per text, the names
    of the parts the codec could not read and filled with its fallback (empty: all read)."""

    actions: np.ndarray
    fallbacks: Sequence[tuple[str, ...]]


@runtime_checkable
class TextCodec(Protocol[ObsT]):
    """How a family speaks: an observation becomes named prompt parts (``state``,
    ``mean_field``, ...; the prompt builder in ``agents`` arranges them), and texts become
    actions, with a counted fallback for what cannot be read."""

    def prompt_parts(self, observation: ObsT) -> dict[str, str]: ...

    def decode_texts(self, texts: Sequence[str]) -> Decoded: ...


@runtime_checkable
class Policy(Protocol):
    """Acts for every agent it is given: ``act({agent: observation}) -> {agent: action}``.
    ``reset(seed)`` starts an episode; the same seed gives the same actions."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]: ...
