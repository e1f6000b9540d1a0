"""The mean-field-game core: GameEnv over a toy game (agents that act once, in turns, as
rumour reactions do), the call checks, seeding, and LeaderEnv's Stackelberg order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.test import parallel_api_test

from mfllm_env.core import MISSING, GameEnv, LeaderEnv, Transition
from mfllm_env.core.protocols import Game, LeaderRole, MeanFieldModel, Policy, TextCodec
from mfllm_env.games.macro import HouseholdTextCodec, MacroGame, RuleHouseholds
from mfllm_env.games.macro.mean_field import StatisticsMeanField


class TurnGame:
    """Six agents, two acting per step, each once (then terminated); an action is 0 or 1,
    rewarded with ``bonus + action``; the observation is the agent's draw and the bonus.
    A bad action counts as 0 (``stats["invalid_action"]``). The leader sets the bonus."""

    agent_ids: ClassVar[list[str]] = [f"a{i}" for i in range(6)]
    leader_id = "leader"
    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = spaces.Discrete(2)
    leader_observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float64)
    leader_action_space = spaces.Discrete(3)

    def __init__(self) -> None:
        self.stats: dict[str, int] = {}
        self.bonus = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self.draws = rng.random(6)
        self.cursor = 0
        self.bonus = 0.0
        self.total = 0.0
        self.stats = {"invalid_action": 0}

    def acting(self) -> Sequence[int]:
        return list(range(self.cursor, min(self.cursor + 2, 6)))

    def observe(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [np.array([self.draws[i], self.bonus]) for i in indices]

    def statistics(self) -> Mapping[str, float]:
        return {"done": self.cursor / 6}

    def decode(self, actions: Sequence[Any]) -> np.ndarray:
        good = [a in (0, 1) and not isinstance(a, bool) for a in actions]
        self.stats["invalid_action"] += good.count(False)
        return np.array([a if ok else 0 for a, ok in zip(actions, good, strict=True)])

    def transition(self, batch: np.ndarray) -> Transition:
        self.cursor += batch.size
        rewards = self.bonus + batch.astype(np.float64)
        self.total += float(rewards.sum())
        return Transition(rewards, np.ones(batch.size, dtype=bool))

    def lead(self, action: Any) -> dict[str, Any]:
        self.bonus = float(action) if action in (0, 1, 2) else 0.0
        self.total = 0.0
        return {"bonus": self.bonus}

    def leader_observation(self) -> np.ndarray:
        return np.array([self.cursor / 6])

    def settle(self) -> tuple[float, dict[str, Any]]:
        return self.total, {}


class Echo:
    """Plays 1 and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def reset(self, seed: int | None = None) -> None:
        self.seen = []

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        self.seen.append(dict(observations))
        return dict.fromkeys(observations, 1)


def test_protocols_are_met_by_the_macro_family():
    game = MacroGame(10)
    assert isinstance(game, Game) and isinstance(game, LeaderRole)
    assert isinstance(TurnGame(), Game) and isinstance(TurnGame(), LeaderRole)
    assert isinstance(StatisticsMeanField(), MeanFieldModel)
    assert isinstance(HouseholdTextCodec(), TextCodec)
    assert isinstance(RuleHouseholds(), Policy)


def test_game_env_passes_the_parallel_api_test():
    parallel_api_test(GameEnv(TurnGame()), num_cycles=20)


def test_agents_act_in_turns_and_terminate():
    env = GameEnv(TurnGame())
    observations, infos = env.reset(seed=3)
    assert env.agents == ["a0", "a1"] and set(observations) == set(infos) == {"a0", "a1"}
    observations, rewards, terminations, _, _ = env.step({"a0": 1, "a1": 0})
    assert rewards == {"a0": 1.0, "a1": 0.0, "a2": 0.0, "a3": 0.0}
    assert terminations == {"a0": True, "a1": True, "a2": False, "a3": False}
    assert env.agents == ["a2", "a3"] and set(observations) == {"a0", "a1", "a2", "a3"}
    env.step({"a2": 1})  # a3 left out: the game gets MISSING and counts it
    assert env.stats["invalid_action"] == 1
    env.step({"a4": 1, "a5": 1})
    assert env.agents == []
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step({})


def test_missing_actions_reach_the_game_as_missing():
    seen = []

    class Recording(TurnGame):
        def decode(self, actions):
            seen.extend(actions)
            return super().decode(actions)

    env = GameEnv(Recording())
    env.reset(seed=0)
    env.step({"a1": 1})
    assert seen == [MISSING, 1]


def test_a_wrong_call_raises_and_changes_nothing():
    env = GameEnv(TurnGame())
    with pytest.raises(RuntimeError, match="before reset"):
        env.step({})
    env.reset(seed=0)
    with pytest.raises(TypeError, match="mapping"):
        env.step([1, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'a3'.*acting now: a0\.\.a1"):
        env.step({"a0": 1, "a3": 1})
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    assert env.agents == ["a0", "a1"] and env.game.cursor == 0
    _, rewards, *_ = env.step({"a0": 1, "a1": 1})
    assert rewards["a0"] == 1.0


def test_bad_games_and_arguments_are_refused():
    with pytest.raises(TypeError, match="transition"):
        GameEnv(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="render_mode"):
        GameEnv(TurnGame(), render_mode="human")


def test_same_seed_same_episode_and_reset_without_seed_continues():
    env = GameEnv(TurnGame())
    first, _ = env.reset(seed=5)
    following, _ = env.reset()
    again, _ = env.reset(seed=5)
    assert all(np.array_equal(first[a], again[a]) for a in first)
    assert not np.array_equal(first["a0"], following["a0"])
    assert env.reset()[0]["a0"].tobytes() == following["a0"].tobytes()


def test_leader_moves_first_and_followers_see_it():
    followers = Echo()
    env = LeaderEnv(GameEnv(TurnGame()), followers, every=2)
    parallel_api_test(LeaderEnv(GameEnv(TurnGame()), Echo()), num_cycles=10)
    observations, _ = env.reset(seed=1)
    assert env.agents == ["leader"] and observations["leader"].tolist() == [0.0]
    observations, rewards, terminations, truncations, infos = env.step({"leader": 2})
    # The followers' observations (second column: the bonus) show the leader's action.
    assert [obs[1] for step in followers.seen for obs in step.values()] == [2.0] * 4
    assert rewards == {"leader": 4 * (2 + 1)} and infos["leader"]["bonus"] == 2.0
    assert terminations == {"leader": False} and observations["leader"].tolist() == [4 / 6]
    _, rewards, terminations, truncations, _ = env.step({"leader": 0})
    assert rewards == {"leader": 2.0} and terminations == {"leader": True}
    assert env.agents == [] and truncations == {"leader": False}
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step({"leader": 0})


def test_leader_env_checks_its_arguments_and_calls():
    with pytest.raises(TypeError, match="GameEnv"):
        LeaderEnv(TurnGame(), Echo())  # type: ignore[arg-type]

    class Leaderless(TurnGame):
        lead = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match="no leader role"):
        LeaderEnv(GameEnv(Leaderless()), Echo())
    with pytest.raises(TypeError, match="followers"):
        LeaderEnv(GameEnv(TurnGame()), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        LeaderEnv(GameEnv(TurnGame()), Echo(), every=0)
    env = LeaderEnv(GameEnv(TurnGame()), Echo())
    with pytest.raises(RuntimeError, match="before reset"):
        env.step({"leader": 0})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="do not act"):
        env.step({"follower": 0})
