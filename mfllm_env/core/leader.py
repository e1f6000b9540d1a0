"""LeaderEnv: a leader moves first, then a frozen follower population responds.

The Stackelberg order of a mean-field game with a leader: each step of this one-agent
PettingZoo parallel env is one decision. The leader's action goes to the game
(:meth:`~mfllm_env.core.protocols.LeaderRole.lead`: taxes set, a message posted); the
followers then see the changed world (their observations are taken again) and respond with
the frozen ``followers`` policy for ``every`` steps of the follower env (with
``followers=None``, as the follower game's own response makes them: a game with a
``response`` model and ``reset_response(seed)``, whose transition draws the actions of agents
given none; ``ValueError`` at construction when its ``response`` is ``None``); the game's
:meth:`~mfllm_env.core.protocols.LeaderRole.settle` gives the leader's reward for that
response. The episode ends when the follower env's does; the leader is then terminated
or truncated as the followers were. A game with a warm-up (``leader_waits()`` true) has
the followers respond alone at reset until the leader's first decision is due.

Bad input: ``actions`` not a mapping (``TypeError``), a key other than the leader's
(``ValueError``), ``step`` before ``reset`` or after the end (``RuntimeError``), a seed
other than ``None`` or an int >= 0 (``ValueError``): raised, nothing changed. A bad
*action* of the leader is the game's to answer, with a counted fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from mfllm_env.checks import check_actions, check_can_step, check_count, check_methods
from mfllm_env.core.env import GameEnv, StepResult, reseed
from mfllm_env.core.protocols import MISSING, LeaderRole, Policy


class LeaderEnv(ParallelEnv[str, Any, Any]):
    """A leader over ``followers_env`` and the frozen ``followers`` policy (``None``: the
    follower game responds for its agents; its response is seeded as a policy would be);
    the leader's part is played by ``role`` (by default the follower game, which must then
    be a :class:`~mfllm_env.core.protocols.LeaderRole`)."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/Leader",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        followers_env: GameEnv[Any, Any],
        followers: Policy | None,
        *,
        every: int = 1,
        render_mode: str | None = None,
        role: LeaderRole | None = None,
    ) -> None:
        if not isinstance(followers_env, GameEnv):
            raise TypeError(f"followers_env must be a GameEnv, got {type(followers_env).__name__}")
        role = followers_env.game if role is None else role
        if not isinstance(role, LeaderRole):
            raise TypeError(
                f"{type(role).__name__} has no leader role (leader_id, lead, "
                "leader_observation, settle)"
            )
        check_methods("followers", followers, ("reset", "act"))
        if followers is None and not callable(getattr(followers_env.game, "reset_response", None)):
            raise TypeError(
                "followers must be a policy with reset(seed) and act(observations), or None "
                f"for a game that responds for its agents (reset_response); "
                f"{type(followers_env.game).__name__} does not"
            )
        if followers is None and getattr(followers_env.game, "response", None) is None:
            raise ValueError(
                f"followers=None needs the follower game to respond for its agents, but "
                f"{type(followers_env.game).__name__} has no response model (response=...)"
            )
        check_count("every", every, 1)
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.followers_env = followers_env
        self.followers = followers
        self.role: LeaderRole = role
        self.every = every
        self.render_mode = render_mode
        self.possible_agents = [self.role.leader_id]
        self.agents: list[str] = []
        self.decisions = 0
        self._follower_observations: dict[str, Any] = {}
        self._reset_done = False
        self.np_random, self._seed = seeding.np_random(None)

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self.role.leader_observation_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self.role.leader_action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        reseed(self, seed, self.role.leader_action_space, self.role.leader_observation_space)
        # Without a seed, both continue this env's stream (reproducible from the last seed).
        env_seed, policy_seed = (int(s) for s in self.np_random.integers(0, 2**31 - 1, size=2))
        self._follower_observations, _ = self.followers_env.reset(seed=env_seed)
        if self.followers is None:
            self.followers_env.game.reset_response(policy_seed)
        else:
            self.followers.reset(seed=policy_seed)
        self._reset_done = True
        self.decisions = 0
        waits = getattr(self.role, "leader_waits", None)
        while callable(waits) and self.followers_env.agents and waits():
            self._follower_step()  # a warm-up: the followers respond alone
        if not self.followers_env.agents:
            raise ValueError(
                "the followers' episode ended while the leader waited (its warm-up): "
                "the leader has no decision to make"
            )
        self.agents = list(self.possible_agents)
        leader = self.role.leader_id
        return {leader: self.role.leader_observation()}, {leader: {}}

    def _follower_step(self) -> tuple[dict[str, bool], dict[str, bool]]:
        """One step of the follower env with the frozen followers' actions; returns its
        terminations and truncations. (A leader that records each follower step, such as
        the rumour planner, overrides it.)"""
        env = self.followers_env
        observations, _, terminations, truncations, _ = env.step(
            self.follower_actions(self._follower_observations)
        )
        self._follower_observations = {agent: observations[agent] for agent in env.agents}
        return terminations, truncations

    def follower_actions(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        """The followers' actions for ``observations`` (none without a followers policy:
        the game's response acts for them)."""
        return {} if self.followers is None else self.followers.act(observations)

    def step(self, actions: Mapping[str, Any]) -> StepResult:
        check_can_step(self.agents, self._reset_done)
        leader = self.role.leader_id
        info = self.role.lead(check_actions(actions, self.agents).get(leader, MISSING))
        env = self.followers_env
        self._follower_observations = env.observe()  # the followers see the leader's move
        terminated = truncated = False
        for _ in range(self.every):
            terminations, truncations = self._follower_step()
            if not env.agents:
                terminated = any(terminations.values())
                truncated = not terminated and any(truncations.values())
                break
        reward, settled = self.role.settle()
        self.decisions += 1
        if not env.agents:
            self.agents = []
        info = {**info, **settled}
        info.setdefault("decision", self.decisions - 1)  # the role's own count, if it keeps one
        return (
            {leader: self.role.leader_observation()},
            {leader: float(reward)},
            {leader: terminated},
            {leader: truncated},
            {leader: info},
        )

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        numbers = ", ".join(
            f"{key} {value:.4g}" for key, value in self.followers_env.statistics().items()
        )
        return f"decision {self.decisions}: {numbers}"

    def close(self) -> None:
        self.followers_env.close()
