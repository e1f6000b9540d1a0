"""FixedSlots: a fixed set of agents over an env whose acting agents change.

SuperSuit's vector-env conversion, and parameter-shared training in general, need the
same agents at every step. In ``mfllm/Population-v0`` each agent acts once: every step
activates the authors of the next reactions. :class:`FixedSlots` gives the learner
``n_slots`` agents, ``slot_0`` ... ``slot_{n-1}``, that live for the whole episode:

- at each step, slot ``i`` plays the wrapped env's ``i``-th acting agent (``env.agents``
  order); its observation is that agent's, with ``active`` 1;
- a slot with no agent to play (the last step of an episode often activates fewer) is
  idle: a blank observation (zeros, empty texts, the smallest option) with ``active`` 0,
  reward 0, and its action is ignored (counted in ``stats["idle_actions"]``);
- a slot's reward is the reward of the agent it played, given when that agent acted; its
  info after a step is that agent's info plus ``"acted"`` (its name) and ``"agent"`` (the
  agent the slot plays now, whose observation it holds; ``None``: idle), after ``reset``
  the info of the agent it plays plus ``"agent"``;
- every slot terminates (or truncates) when the wrapped episode ends.

The observation space is the wrapped one's ``Dict`` with one more key, ``active``
(``Box(0, 1, (1,), float32)``); any other space becomes ``Dict(observation=..., active=...)``.
Parameter sharing over slots is what the slots are for: the slots are not the same
individuals from one step to the next.

Bad input: ``n_slots`` not an integer >= 1, agents with different spaces, a space with no
blank value, or a ``Dict`` that already has an ``active`` key: ``ValueError`` at
construction. More agents acting at once than there are slots: ``ValueError`` naming both
counts (at ``reset`` or ``step``). ``step`` before ``reset`` or after the end
(``RuntimeError``), ``actions`` not a mapping (``TypeError``) or a key that is not a slot
(``ValueError``), as for every env of this package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from mfllm_env.checks import check_actions, check_can_step, check_count

ACTIVE = "active"
ACTIVE_SPACE = spaces.Box(0.0, 1.0, (1,), np.float32)
_ON = np.ones(1, np.float32)
_OFF = np.zeros(1, np.float32)


def blank_observation(space: spaces.Space[Any], where: str = "observation") -> Any:
    """The value an idle slot sees in ``space``: zeros (moved into a ``Box``'s bounds),
    empty texts, the smallest option; ``ValueError`` for a space without one."""
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high)
    if isinstance(space, spaces.Discrete):
        return space.dtype.type(space.start)
    if isinstance(space, spaces.MultiDiscrete):
        return np.asarray(space.start, space.dtype).copy()
    if isinstance(space, spaces.MultiBinary):
        return np.zeros(space.shape, space.dtype)
    if isinstance(space, spaces.Text):
        return ""
    if isinstance(space, spaces.Dict):
        return {key: blank_observation(sub, f"{where}[{key!r}]") for key, sub in space.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(blank_observation(sub, f"{where}[{i}]") for i, sub in enumerate(space))
    raise ValueError(
        f"FixedSlots: {where} is a {type(space).__name__}, which has no blank value for an "
        "idle slot (Box, Discrete, MultiDiscrete, MultiBinary, Text, Dict and Tuple do)"
    )


class FixedSlots(BaseParallelWrapper):
    """``n_slots`` fixed agents over ``env``'s changing acting agents; see the module
    docstring."""

    def __init__(self, env: ParallelEnv, n_slots: int) -> None:
        super().__init__(env)
        check_count("n_slots", n_slots, 1)
        if not env.possible_agents:
            raise ValueError("FixedSlots: the env has no possible agents")
        first = env.possible_agents[0]
        inner_observation = env.observation_space(first)
        inner_action = env.action_space(first)
        for agent in env.possible_agents:  # envs of this package return one shared object
            observation, action = env.observation_space(agent), env.action_space(agent)
            if (observation is not inner_observation and observation != inner_observation) or (
                action is not inner_action and action != inner_action
            ):
                raise ValueError(
                    f"FixedSlots: agents {first!r} and {agent!r} have different spaces; slots "
                    "share one observation and one action space"
                )
        if isinstance(inner_observation, spaces.Dict):
            if ACTIVE in inner_observation.spaces:
                raise ValueError(
                    f"FixedSlots: the observation already has an {ACTIVE!r} key; the slot "
                    "flag would hide it"
                )
            self._wrap_dict = False
            parts = dict(inner_observation.spaces)
        else:
            self._wrap_dict = True
            parts = {"observation": inner_observation}
        self._observation_space = spaces.Dict({**parts, ACTIVE: ACTIVE_SPACE})
        self._blank = {**blank_observation(spaces.Dict(parts)), ACTIVE: _OFF}
        self._action_space = inner_action
        self.n_slots = n_slots
        self.possible_agents = [f"slot_{i}" for i in range(n_slots)]
        self.agents: list[str] = []
        self._playing: list[str | None] = [None] * n_slots
        self._reset_done = False
        self.stats = {"idle_actions": 0}

    def observation_space(self, agent: str) -> spaces.Dict:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_space

    def _assign(self) -> None:
        """Slot ``i`` plays the env's ``i``-th acting agent from now on."""
        acting = list(self.env.agents)
        if len(acting) > self.n_slots:
            raise ValueError(
                f"FixedSlots: {len(acting)} agents act at once, more than the {self.n_slots} "
                f"slots; give n_slots >= {len(acting)}"
            )
        self._playing = acting + [None] * (self.n_slots - len(acting))

    def _observe(self, observations: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        result = {}
        for slot, agent in zip(self.possible_agents, self._playing, strict=True):
            if agent is None:
                result[slot] = dict(self._blank)
            elif self._wrap_dict:
                result[slot] = {"observation": observations[agent], ACTIVE: _ON}
            else:
                result[slot] = {**observations[agent], ACTIVE: _ON}
        return result

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        self._assign()
        self._reset_done = True
        self.stats = {"idle_actions": 0}
        self.agents = list(self.possible_agents)
        slot_infos = {
            slot: {**(infos.get(agent, {}) if agent else {}), "agent": agent}
            for slot, agent in zip(self.possible_agents, self._playing, strict=True)
        }
        return self._observe(observations), slot_infos

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[
        dict[str, dict[str, Any]],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        check_can_step(self.agents, self._reset_done)
        check_actions(actions, self.agents)
        played = self._playing
        inner_actions = {}
        for slot, agent in zip(self.possible_agents, played, strict=True):
            if slot not in actions:
                continue
            if agent is None:
                self.stats["idle_actions"] += 1
            else:
                inner_actions[agent] = actions[slot]
        observations, rewards, _, truncations, infos = self.env.step(inner_actions)
        done = not self.env.agents
        truncated = done and any(truncations.get(a, False) for a in played if a is not None)
        if done:
            self._playing = [None] * self.n_slots
            self.agents = []
        else:
            self._assign()
        slot_rewards, slot_infos = {}, {}
        for slot, agent, now in zip(self.possible_agents, played, self._playing, strict=True):
            slot_rewards[slot] = float(rewards.get(agent, 0.0)) if agent else 0.0
            slot_infos[slot] = {**(infos.get(agent, {}) if agent else {}), "acted": agent}
            slot_infos[slot]["agent"] = now
        return (
            self._observe(observations),  # all blank once the episode is over
            slot_rewards,
            dict.fromkeys(self.possible_agents, done and not truncated),
            dict.fromkeys(self.possible_agents, truncated),
            slot_infos,
        )
