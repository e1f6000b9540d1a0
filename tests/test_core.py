"""The mean-field-game core: GameEnv over a toy game (agents that act once, in turns, as
rumour reactions do), the call checks, seeding, the split step, LeaderEnv's Stackelberg
order and warm-up, and the vector runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.test import parallel_api_test

from mfllm_env.core import MISSING, GameEnv, LeaderEnv, Transition
from mfllm_env.core.protocols import (
    Game,
    LeaderRole,
    MeanFieldModel,
    Policy,
    SplitGame,
    TextCodec,
)
from mfllm_env.core.runner import run_episodes, step_episodes, update_mean_fields
from mfllm_env.games.macro import HouseholdTextCodec, MacroGame, RuleHouseholds
from mfllm_env.games.macro.mean_field import StatisticsMeanField
from mfllm_env.population_env import PopulationEnv
from mfllm_env.synthetic import synthetic_scenario


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


def test_protocols_are_met_by_both_families():
    game = MacroGame(10)
    assert isinstance(game, Game) and isinstance(game, LeaderRole)
    rumour = PopulationEnv(synthetic_scenario(seed=0, n_reactions=32), action_mode="label").game
    assert isinstance(rumour, SplitGame) and isinstance(rumour.mean_field_model, MeanFieldModel)
    assert not isinstance(game, SplitGame)
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
    with pytest.raises(TypeError, match="object has no leader role"):
        LeaderEnv(GameEnv(TurnGame()), Echo(), role=object())  # type: ignore[arg-type]
    # A role apart from the follower game leads it.
    role = TurnGame()
    env = LeaderEnv(GameEnv(Leaderless()), Echo(), role=role)
    assert env.possible_agents == ["leader"] and env.role is role
    with pytest.raises(TypeError, match="followers"):
        LeaderEnv(GameEnv(TurnGame()), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"or None for a game that responds .* TurnGame does not"):
        LeaderEnv(GameEnv(TurnGame()), None)
    # A rumour population responds for its agents only with a response model, which the
    # leader env asks for at construction (not at reset, after the followers' reset).
    unanswered = PopulationEnv(synthetic_scenario(seed=0, n_reactions=24), action_mode="label")
    with pytest.raises(ValueError, match=r"followers=None .* RumourGame has no response model"):
        LeaderEnv(unanswered, None, role=TurnGame())
    with pytest.raises(ValueError, match="every"):
        LeaderEnv(GameEnv(TurnGame()), Echo(), every=0)
    env = LeaderEnv(GameEnv(TurnGame()), Echo())
    with pytest.raises(RuntimeError, match="before reset"):
        env.step({"leader": 0})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="do not act"):
        env.step({"follower": 0})


class SplitTurnGame(TurnGame):
    """TurnGame with its transition split around a mean field (the running total of the
    actions, as the model's answer) and infos for newly active agents."""

    def __init__(self) -> None:
        super().__init__()
        self.mean_field_model = Totals()
        self.signal = 0

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.signal = 0

    def activation_infos(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [{"turn": i // 2} for i in indices]

    def begin_transition(self, batch: np.ndarray) -> tuple[int, int]:
        self.batch = batch
        return (self.signal, int(batch.sum()))

    def finish_transition(self, signal: int) -> Transition:
        self.signal = signal
        return super().transition(self.batch)

    def transition(self, batch: np.ndarray) -> Transition:
        self.batch = batch
        return self.finish_transition(self.mean_field_model.update(self.begin_transition(batch)))

    def observe(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [np.array([self.draws[i], self.signal]) for i in indices]


class Totals:
    """Mean field: previous total + the step's sum; ``update_many`` counts its calls."""

    calls = 0

    def reset(self, batch: Any) -> int:
        return 0

    def update(self, batch: tuple[int, int]) -> int:
        return batch[0] + batch[1]

    @classmethod
    def update_many(cls, models: Sequence[Totals], batches: Sequence[tuple[int, int]]) -> list:
        cls.calls += 1
        return [model.update(batch) for model, batch in zip(models, batches, strict=True)]


def test_a_split_game_steps_in_two_halves_with_the_same_result():
    assert isinstance(SplitTurnGame(), SplitGame) and not isinstance(TurnGame(), SplitGame)
    whole, halves = GameEnv(SplitTurnGame()), GameEnv(SplitTurnGame())
    assert whole.mean_field_model is whole.game.mean_field_model
    assert GameEnv(TurnGame()).mean_field_model is None
    parallel_api_test(GameEnv(SplitTurnGame()), num_cycles=10)
    _, infos = whole.reset(seed=2)
    halves.reset(seed=2)
    assert infos == {"a0": {"turn": 0}, "a1": {"turn": 0}}
    for actions in ({"a0": 1, "a1": 1}, {"a2": 1, "a3": 0}, {"a4": 0, "a5": 1}):
        expected = whole.step(actions)
        with pytest.raises(RuntimeError, match="without begin_step"):
            halves.end_step(0)
        batch = halves.begin_step(actions)
        with pytest.raises(RuntimeError, match="called twice"):
            halves.begin_step(actions)
        got = halves.end_step(halves.update_mean_field(batch))
        assert repr(got) == repr(expected)
    assert expected[4] == {"a4": {}, "a5": {}}
    assert whole.game.signal == 4  # the mean field's running total reached the game


def test_newly_active_agents_get_the_games_activation_infos():
    env = GameEnv(SplitTurnGame())
    env.reset(seed=0)
    *_, infos = env.step({"a0": 0, "a1": 1})
    assert infos == {"a0": {}, "a1": {}, "a2": {"turn": 1}, "a3": {"turn": 1}}


def test_update_mean_fields_batches_by_class_and_skips_unsplit_games():
    Totals.calls = 0

    class Plain:
        def update(self, batch: int) -> int:
            return -batch

    answers = update_mean_fields([Totals(), None, Plain(), Totals()], [(1, 2), None, 4, (0, 5)])
    assert answers == [3, None, -4, 5] and Totals.calls == 1
    with pytest.raises(ValueError, match="2 models but 1 batches"):
        update_mean_fields([Plain(), Plain()], [1])


def test_the_leader_sits_out_the_warm_up():
    class WarmUp(TurnGame):
        def leader_waits(self) -> bool:
            return self.cursor < 2  # the first step's followers respond alone

    followers = Echo()
    env = LeaderEnv(GameEnv(WarmUp()), followers)
    observations, _ = env.reset(seed=0)
    assert len(followers.seen) == 1 and observations["leader"].tolist() == [2 / 6]
    assert env.followers_env.agents == ["a2", "a3"]

    class Never(TurnGame):
        def leader_waits(self) -> bool:
            return True

    with pytest.raises(ValueError, match="no decision"):
        LeaderEnv(GameEnv(Never()), Echo()).reset(seed=0)


class Counting(Echo):
    """Plays 1; keeps the agents of every ``act`` call (``reset`` clears only ``seen``)."""

    rounds: ClassVar[list[set[str]]]

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        self.rounds.append(set(observations))
        return super().act(observations)


def test_run_episodes_steps_episodes_together_with_one_act_and_one_update_call():
    Totals.calls = 0
    Counting.rounds = []
    policy = Counting()
    steps: list[tuple[int, list[str]]] = []
    envs = [GameEnv(SplitTurnGame()) for _ in range(3)]
    done = list(
        run_episodes(
            [(env, seed) for seed, env in enumerate(envs)],
            policy,
            parallel=2,
            on_step=lambda episode, acted, _: steps.append((episode.index, list(acted))),
        )
    )
    # Episodes 0 and 1 together (3 rounds), then episode 2 alone (3 rounds).
    assert len(policy.rounds) == Totals.calls == 6
    assert sorted(e.index for e in done) == [0, 1, 2]
    assert steps[:2] == [(0, ["a0", "a1"]), (1, ["a0", "a1"])]
    assert all(env.game.signal == 6 and not env.agents for env in envs)
    assert policy.rounds[0] == {"0|a0", "0|a1", "1|a0", "1|a1"}
    assert policy.rounds[-1] == {"2|a4", "2|a5"}


def test_run_episodes_per_episode_policies_depend_only_on_the_seed():
    def totals(parallel: int) -> list[float]:
        envs = [GameEnv(TurnGame()) for _ in range(3)]
        played = run_episodes(
            [(env, 7 + i) for i, env in enumerate(envs)],
            Echo(),
            parallel=parallel,
            policy_per_episode=True,
        )
        assert len(list(played)) == 3
        return [env.game.total for env in envs] + [float(env.game.draws.sum()) for env in envs]

    assert totals(1) == totals(3)


def test_run_episodes_refuses_a_shared_env_and_bad_actions():
    env = GameEnv(TurnGame())
    with pytest.raises(ValueError, match="still playing episode 0"):
        list(run_episodes([(env, 0), (env, 1)], Echo(), parallel=2))

    class Stray(Echo):
        def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
            return {"9|a0": 1}

    with pytest.raises(ValueError, match=r"policy Stray\.act\(\)"):
        list(run_episodes([(GameEnv(TurnGame()), 0)], Stray()))
    with pytest.raises(ValueError, match="parallel"):
        list(run_episodes([(GameEnv(TurnGame()), 0)], Echo(), parallel=0))


def test_step_episodes_opens_each_round_between_its_halves():
    Totals.calls = 0
    envs = [GameEnv(SplitTurnGame()) for _ in range(2)]
    asked: list[tuple[list[int], list[list[str]]]] = []

    def act(indices: Sequence[int], observations: Sequence[dict[str, Any]]) -> list[dict]:
        asked.append((list(indices), [sorted(o) for o in observations]))
        return [dict.fromkeys(o, 1) for o in observations]

    numbers = []
    for round_ in step_episodes([(envs[0], 0), (envs[1], 1)], act):
        numbers.append(round_.number)
        total = 2 * round_.number  # the running total before this step
        # Begun, not ended: each batch is (previous total, this step's sum), and no env
        # has its new mean field yet.
        assert round_.batches == [(total, 2), (total, 2)]
        assert [env.game.signal for env in envs] == [total, total]
        assert round_.actions == [dict.fromkeys(o, 1) for o in round_.observations]
        if round_.number == 2:
            round_.skip(1, -5)
    assert numbers == [0, 1, 2]
    assert asked[0] == ([0, 1], [["a0", "a1"], ["a0", "a1"]])
    assert asked[2] == ([0, 1], [["a4", "a5"], ["a4", "a5"]])
    assert Totals.calls == 3  # one batched update per round, the skipped env left out
    assert (envs[0].game.signal, envs[1].game.signal) == (6, -5)
    assert not envs[0].agents and not envs[1].agents


def test_step_episodes_refuses_a_shared_env_and_wrong_answers():
    def ones(indices: Sequence[int], observations: Sequence[dict[str, Any]]) -> list[dict]:
        return [dict.fromkeys(o, 1) for o in observations]

    env = GameEnv(SplitTurnGame())
    with pytest.raises(ValueError, match="an env of its own"):
        list(step_episodes([(env, 0), (env, 1)], ones))
    with pytest.raises(ValueError, match="act gave 0 action sets for 1 episodes"):
        list(step_episodes([(GameEnv(SplitTurnGame()), 0)], lambda i, o: []))
    with pytest.raises(ValueError, match="do not act this step: 'a5'"):
        list(step_episodes([(GameEnv(SplitTurnGame()), 0)], lambda i, o: [{"a5": 1}]))
