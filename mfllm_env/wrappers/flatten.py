"""FlattenObservations: one ``float32`` ``Box`` observation per agent, text left out.

The observations of this package's envs are ``Dict`` spaces that mix numbers (label
shares, the economy's statistics, budget and decisions left) with text (the event, the
mean field's summary). Stable-Baselines3's vector envs and most RL networks take one
numeric vector: :class:`FlattenObservations` keeps the numeric parts, in the ``Dict``
space's key order (gymnasium sorts the keys of a plain dict), flattened by
:func:`gymnasium.spaces.flatten` (a ``Discrete`` becomes a one-hot vector, a ``Box`` its
values) and cast to ``float32``. With ``text="drop"`` (default) the
text parts are left out; with ``text="error"`` a text part is an error, for users who want
to be sure nothing is dropped. Actions, rewards and infos pass through unchanged.

>>> import pettingzoo, mfllm_env
>>> from mfllm_env.wrappers import FlattenObservations
>>> env = FlattenObservations(pettingzoo.make("parallel", "mfllm/Planner-v0",
...     scenario=mfllm_env.synthetic_scenario(seed=0, n_reactions=64)))
>>> observations, _ = env.reset(seed=0)
>>> observations["planner"].shape   # budget_left 4, shares 4, step_shares 8 x 4, steps_left 7
(47,)

Bad input: ``text`` other than ``"drop"``/``"error"``, an observation space that is not
``Box``, ``Discrete``, ``MultiBinary``, ``MultiDiscrete``, text, or a ``Dict``/``Tuple`` of
them (a ``Graph``, a ``Sequence``), a text part with ``text="error"`` or inside a ``Tuple``,
or no numeric part at all: ``ValueError`` at construction, naming the agent and the part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

TEXT_MODES = ("drop", "error")
_NUMERIC = (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)


def numeric_part(
    space: spaces.Space[Any], text: Literal["drop", "error"], where: str
) -> spaces.Space[Any] | None:
    """The numeric part of ``space`` (``None``: none), text parts dropped or refused."""
    if isinstance(space, _NUMERIC):
        return space
    if isinstance(space, spaces.Text):
        if text == "drop":
            return None
        raise ValueError(f"{where} is text ({space}); text='drop' leaves such parts out")
    if isinstance(space, spaces.Dict):
        kept = {
            key: part
            for key, sub in space.items()
            if (part := numeric_part(sub, text, f"{where}[{key!r}]")) is not None
        }
        return spaces.Dict(kept) if kept else None
    if isinstance(space, spaces.Tuple):
        parts = [numeric_part(sub, text, f"{where}[{i}]") for i, sub in enumerate(space)]
        if any(part is None for part in parts):  # dropping one would shift the positions
            raise ValueError(f"{where} is a Tuple with text in it; use a Dict for such parts")
        return spaces.Tuple(parts)
    raise ValueError(
        f"{where} is a {type(space).__name__}, which cannot be flattened into a Box (Box, "
        "Discrete, MultiBinary, MultiDiscrete, text, and Dict or Tuple of them can)"
    )


def select(space: spaces.Space[Any], value: Any) -> Any:
    """The parts of ``value`` that ``space`` (a :func:`numeric_part`) kept."""
    if isinstance(space, spaces.Dict):
        return {key: select(sub, value[key]) for key, sub in space.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(select(sub, part) for sub, part in zip(space, value, strict=True))
    return value


class FlattenObservations(BaseParallelWrapper):
    """Every agent's observation as one ``float32`` ``Box``; see the module docstring."""

    def __init__(self, env: ParallelEnv, text: Literal["drop", "error"] = "drop") -> None:
        super().__init__(env)
        if text not in TEXT_MODES:
            raise ValueError(f"text must be one of {TEXT_MODES}, got {text!r}")
        self.text = text
        self.possible_agents = list(env.possible_agents)
        self.agents: list[str] = []
        # One plan per distinct space: the envs here share one space object among agents.
        plans: dict[int, tuple[spaces.Space[Any], spaces.Box]] = {}
        self._plans: dict[str, tuple[spaces.Space[Any], spaces.Box]] = {}
        for agent in self.possible_agents:
            space = env.observation_space(agent)
            if id(space) not in plans:
                kept = numeric_part(space, text, f"the observation of agent {agent!r}")
                if kept is None:
                    raise ValueError(
                        f"the observation of agent {agent!r} has no numeric part to keep ({space})"
                    )
                flat = spaces.flatten_space(kept)
                box = spaces.Box(
                    flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32
                )
                plans[id(space)] = (kept, box)
            self._plans[agent] = plans[id(space)]

    def observation_space(self, agent: str) -> spaces.Box:
        return self._plans[agent][1]

    def flatten(self, agent: str, observation: Any) -> np.ndarray:
        """``agent``'s observation of the wrapped env as this wrapper gives it."""
        kept = self._plans[agent][0]
        return spaces.flatten(kept, select(kept, observation)).astype(np.float32, copy=False)

    def _flatten_all(self, observations: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {agent: self.flatten(agent, value) for agent, value in observations.items()}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return self._flatten_all(observations), infos

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        self.agents = list(self.env.agents)
        return self._flatten_all(observations), rewards, terminations, truncations, infos
