"""GameEnv: any :class:`~mfllm_env.core.protocols.Game` as one PettingZoo parallel env.

The env does the API's bookkeeping and leaves the population's dynamics to the game:

* ``reset(seed)`` seeds one generator (:func:`gymnasium.utils.seeding.np_random`) and hands
  it to :meth:`Game.reset`; ``reset()`` without a seed continues that generator's stream,
  so an episode is reproducible from the last seed.
* ``step(actions)`` checks the *call* and raises, changing nothing, when it is wrong:
  ``actions`` not a mapping (``TypeError``), a key that is not an agent acting now
  (``ValueError`` naming it), ``step`` before ``reset`` or after the end
  (``RuntimeError``). Acting agents left out of ``actions`` are passed to the game as
  :data:`~mfllm_env.core.protocols.MISSING`; what is wrong with one agent's *action* is
  the game's to answer with a counted fallback (:attr:`stats`).
* Per-agent dicts are built once per step from the game's arrays, so a step costs
  O(acting agents) with small constants.
* A game that splits its transition around its mean-field update
  (:class:`~mfllm_env.core.protocols.SplitGame`) can be stepped in two halves,
  :meth:`GameEnv.begin_step` and :meth:`GameEnv.end_step`, so that a runner updates the
  mean fields of several episodes in one batched call (:mod:`mfllm_env.core.runner`).
* Agents that become active get the game's ``activation_infos`` as their ``infos``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from mfllm_env.checks import check_actions, check_can_step, check_seed
from mfllm_env.core.protocols import MISSING, ActionT, Game, ObsT, SplitGame

StepResult = tuple[
    dict[str, Any],  # observations
    dict[str, float],  # rewards
    dict[str, bool],  # terminations
    dict[str, bool],  # truncations
    dict[str, dict[str, Any]],  # infos
]


def reseed(env: Any, seed: object, *samplers: spaces.Space[Any]) -> None:
    """Start ``env.np_random`` again from ``seed`` and seed the ``samplers`` (spaces) from
    it; ``None`` keeps the generator's stream going. ``ValueError`` for a seed other than
    ``None`` or an int >= 0."""
    seed = check_seed(seed)
    if seed is None:
        return
    env.np_random, env._seed = seeding.np_random(seed)
    for space, space_seed in zip(
        samplers, env.np_random.integers(0, 2**31 - 1, size=len(samplers)).tolist(), strict=True
    ):
        space.seed(space_seed)


class GameEnv(ParallelEnv[str, ObsT, ActionT], Generic[ObsT, ActionT]):
    """A PettingZoo parallel env over ``game``; see the module docstring."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/Game",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }

    def __init__(self, game: Game[ObsT, ActionT], *, render_mode: str | None = None) -> None:
        missing = [
            name
            for name in ("reset", "acting", "observe", "statistics", "decode", "transition")
            if not callable(getattr(game, name, None))
        ]
        if missing:
            raise TypeError(f"game must implement {', '.join(missing)}; got {type(game).__name__}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.game = game
        self.render_mode = render_mode
        self.possible_agents = list(game.agent_ids)
        self.agents: list[str] = []
        self._acting: list[int] = []
        self._acting_set: frozenset[str] = frozenset()
        self._steps = 0
        self._reset_done = False
        self._split = isinstance(game, SplitGame)
        self._reports_activation = callable(getattr(game, "activation_infos", None))
        self._pending: tuple[Any] | None = None
        self.np_random, self._seed = seeding.np_random(None)

    def observation_space(self, agent: str) -> spaces.Space[ObsT]:
        return self.game.observation_space

    def action_space(self, agent: str) -> spaces.Space[ActionT]:
        return self.game.action_space

    @property
    def stats(self) -> dict[str, int]:
        """The game's counts over the episode (actions, fallbacks, clips...)."""
        return self.game.stats

    def statistics(self) -> Mapping[str, float]:
        """The population statistics now (the game's :meth:`Game.statistics`)."""
        return self.game.statistics()

    def _set_acting(self) -> None:
        self._acting = list(self.game.acting())
        names = self.possible_agents
        self.agents = [names[i] for i in self._acting]
        self._acting_set = frozenset(self.agents)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, ObsT], dict[str, dict[str, Any]]]:
        reseed(self, seed, self.game.action_space, self.game.observation_space)
        self.game.reset(self.np_random)
        self._reset_done = True
        self._pending = None
        self._steps = 0
        self._set_acting()
        infos = dict(zip(self.agents, self._activation_infos(self._acting), strict=True))
        return self.observe(), infos

    def observe(self) -> dict[str, ObsT]:
        """The acting agents' observations now (a leader's move changes them between
        steps: :class:`~mfllm_env.core.leader.LeaderEnv` asks again after it)."""
        return dict(zip(self.agents, self.game.observe(self._acting), strict=True))

    def step(self, actions: Mapping[str, Any]) -> StepResult:
        return self.end_step(self.update_mean_field(self.begin_step(actions)))

    @property
    def mean_field_model(self) -> Any:
        """The game's mean-field model when the game splits its transition
        (:class:`~mfllm_env.core.protocols.SplitGame`), else ``None``."""
        return self.game.mean_field_model if self._split else None

    def update_mean_field(self, batch: Any) -> Any:
        """The mean-field model's answer to ``batch`` (``None`` for an unsplit game)."""
        return self.game.mean_field_model.update(batch) if self._split else None

    def begin_step(self, actions: Mapping[str, Any]) -> Any:
        """First half of :meth:`step`: check the call, decode the actions and return the
        batch the game's mean-field model must fold in (``None`` for a game that does not
        split its transition). Finish with :meth:`end_step`, passing the model's answer.

        ``step(actions)`` is ``end_step(update_mean_field(begin_step(actions)))``; the
        split lets a runner update the mean fields of several envs in one batched call
        (:func:`~mfllm_env.core.runner.update_mean_fields`). ``RuntimeError`` when called
        twice without :meth:`end_step`.
        """
        check_can_step(self.agents, self._reset_done)
        if self._pending is not None:
            raise RuntimeError("begin_step() called twice; call end_step() first")
        check_actions(actions, self.agents, self._acting_set)
        values = [actions.get(agent, MISSING) for agent in self.agents]
        batch = self.game.decode(values)
        if self._split:
            request = self.game.begin_transition(batch)
            self._pending = (None,)
            return request
        self._pending = (batch,)
        return None

    def end_step(self, signal: Any) -> StepResult:
        """Second half of :meth:`step` (see :meth:`begin_step`); returns what ``step``
        returns."""
        if self._pending is None:
            raise RuntimeError("end_step() called without begin_step()")
        (batch,) = self._pending
        self._pending = None
        transition = (
            self.game.finish_transition(signal) if self._split else self.game.transition(batch)
        )
        acted, acted_names = self._acting, self.agents
        self._steps += 1

        rewards = dict(zip(acted_names, np.asarray(transition.rewards).tolist(), strict=True))
        if isinstance(transition.terminated, bool | np.bool_):
            terminations = dict.fromkeys(acted_names, bool(transition.terminated))
        else:
            terminations = dict(
                zip(acted_names, np.asarray(transition.terminated, bool).tolist(), strict=True)
            )
        truncations = dict.fromkeys(acted_names, bool(transition.truncated))
        infos: dict[str, dict[str, Any]] = {agent: {} for agent in acted_names}
        for position, info in transition.infos.items():
            infos[acted_names[position]] = info

        self._set_acting()
        new = self._acting
        observed = acted if not new or new == acted else list(dict.fromkeys([*acted, *new]))
        names = self.possible_agents
        observed_names = acted_names if observed is acted else [names[i] for i in observed]
        observations = dict(zip(observed_names, self.game.observe(observed), strict=True))
        activated = [i for i in new if names[i] not in rewards]
        if activated:
            for i, info in zip(activated, self._activation_infos(activated), strict=True):
                agent = names[i]
                rewards[agent] = 0.0
                terminations[agent] = False
                truncations[agent] = False
                infos[agent] = info
        return observations, rewards, terminations, truncations, infos

    def _activation_infos(self, indices: Sequence[int]) -> Sequence[dict[str, Any]]:
        """The game's ``activation_infos`` for ``indices``, or empty dicts."""
        if self._reports_activation:
            return self.game.activation_infos(indices)  # type: ignore[attr-defined]
        return [{} for _ in indices]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        numbers = ", ".join(f"{key} {value:.4g}" for key, value in self.statistics().items())
        return f"step {self._steps}: {numbers}"

    def close(self) -> None:
        pass
