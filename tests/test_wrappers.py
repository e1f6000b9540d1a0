"""mfllm_env.wrappers: FixedSlots, FlattenObservations and to_vec_env (SuperSuit) on the
package's envs: what they give, that they pickle and re-seed, and their errors."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import cloudpickle
import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test

import mfllm_env
from mfllm_env.games.macro import MacroEnv, MacroPlannerEnv, RuleHouseholds
from mfllm_env.planner import PLANNER, PlannerEnv
from mfllm_env.population_env import PopulationEnv
from mfllm_env.spaces import FreeText
from mfllm_env.wrappers import FixedSlots, FlattenObservations, to_vec_env

SLOTS = 8


@pytest.fixture(scope="module")
def scenario():
    return mfllm_env.synthetic_scenario(seed=0, n_reactions=60)  # last step: 4 of 8 slots


def population(scenario) -> PopulationEnv:
    return PopulationEnv(scenario, agents_per_step=SLOTS, warmup=16, action_mode="label")


def planner(scenario) -> PlannerEnv:
    return PlannerEnv(scenario, every=2, budget=3)


class OneAgentEnv(ParallelEnv):
    """A minimal env whose observation space is given (for the error cases)."""

    metadata: ClassVar[dict] = {"name": "one-agent"}

    def __init__(self, observation_space: spaces.Space) -> None:
        self.possible_agents = ["a"]
        self.agents: list[str] = []
        self._space = observation_space

    def observation_space(self, agent):
        return self._space

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = ["a"]
        return {"a": self._space.sample()}, {"a": {}}

    def step(self, actions):
        self.agents = []
        return {"a": self._space.sample()}, {"a": 0.0}, {"a": True}, {"a": False}, {"a": {}}


# -- FixedSlots ----------------------------------------------------------------------------


def test_fixed_slots_play_the_acting_agents_and_idle_slots_do_nothing(scenario):
    env, inner = FixedSlots(population(scenario), SLOTS), population(scenario)
    observations, infos = env.reset(seed=3)
    inner_observations, _ = inner.reset(seed=3)
    assert env.agents == env.possible_agents == [f"slot_{i}" for i in range(SLOTS)]
    steps = 0
    while env.agents:
        acting = list(inner.agents)
        assert [infos[s]["agent"] for s in env.agents[: len(acting)]] == acting
        for slot, observation in observations.items():
            agent = infos[slot]["agent"]
            assert observation["active"][0] == (agent is not None)
            if agent is None:  # idle: a blank observation
                assert observation["event"] == "" and not observation["shares"].any()
            else:
                assert observation["state"] == inner_observations[agent]["state"]
        actions = {slot: (i + steps) % 4 for i, slot in enumerate(env.agents)}
        observations, rewards, terminations, truncations, infos = env.step(actions)
        played = {acting[i]: actions[f"slot_{i}"] for i in range(len(acting))}
        inner_observations, inner_rewards, *_ = inner.step(played)
        for i, slot in enumerate(env.possible_agents):
            expected = inner_rewards[acting[i]] if i < len(acting) else 0.0
            assert rewards[slot] == pytest.approx(expected)
            assert infos[slot]["acted"] == (acting[i] if i < len(acting) else None)
        steps += 1
        assert all(terminations.values()) == (not inner.agents)
        assert not any(truncations.values())
    assert steps == inner.num_steps == 8
    assert env.stats["idle_actions"] == SLOTS - 60 % SLOTS  # the last step's idle slots
    assert inner.stats["invalid_action"] == 0
    np.testing.assert_array_equal(env.unwrapped.sim_label_ids, inner.sim_label_ids)


def test_fixed_slots_pass_the_parallel_api_test(scenario):
    parallel_api_test(FixedSlots(population(scenario), SLOTS), num_cycles=20)


def test_fixed_slots_wrap_a_non_dict_space():
    env = FixedSlots(OneAgentEnv(spaces.Box(-1.0, 1.0, (3,))), 2)
    observations, _ = env.reset()
    assert set(observations["slot_0"]) == {"observation", "active"}
    assert observations["slot_1"]["active"][0] == 0
    assert not observations["slot_1"]["observation"].any()


def test_fixed_slots_refuse_bad_input(scenario):
    with pytest.raises(ValueError, match="n_slots must be an integer >= 1"):
        FixedSlots(population(scenario), 0)
    env = FixedSlots(population(scenario), 4)
    with pytest.raises(ValueError, match="8 agents act at once, more than the 4 slots"):
        env.reset(seed=0)
    env = FixedSlots(population(scenario), SLOTS)
    with pytest.raises(RuntimeError):
        env.step({})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="slot_99"):
        env.step({"slot_99": 0})
    with pytest.raises(TypeError):
        env.step([0])
    clash = spaces.Dict({"active": spaces.Discrete(2)})
    with pytest.raises(ValueError, match="already has an 'active' key"):
        FixedSlots(OneAgentEnv(clash), 2)
    with pytest.raises(ValueError, match="no blank value"):
        FixedSlots(OneAgentEnv(spaces.Sequence(spaces.Discrete(3))), 2)


# -- FlattenObservations -------------------------------------------------------------------


def test_flatten_keeps_the_numeric_parts_in_key_order(scenario):
    env = FlattenObservations(planner(scenario))
    inner = planner(scenario)
    observations, _ = env.reset(seed=1)
    raw, _ = inner.reset(seed=1)
    box = env.observation_space(PLANNER)
    k = inner.scheme.size
    decisions = inner.num_decisions + 1
    assert box.shape == (8 * k + k + decisions + 4,) and box.dtype == np.float32
    flat = observations[PLANNER]
    assert box.contains(flat)
    # The Dict space's key order: gymnasium sorts the keys of a plain dict.
    budget, shares, history, steps_left = np.split(flat, np.cumsum([4, k, 8 * k]))
    assert budget.sum() == 1 and budget.argmax() == raw[PLANNER]["budget_left"] == 3
    np.testing.assert_allclose(shares, raw[PLANNER]["shares"])
    np.testing.assert_allclose(history, raw[PLANNER]["step_shares"].ravel())
    assert history.any()  # after warm-up: the last steps' shares
    assert steps_left.sum() == 1 and steps_left.argmax() == raw[PLANNER]["steps_left"]
    parallel_api_test(FlattenObservations(planner(scenario)), num_cycles=10)


def test_flatten_macro_households_and_government():
    env = FlattenObservations(MacroEnv(10))
    observations, _ = env.reset(seed=0)
    assert env.observation_space(env.possible_agents[0]).shape == (2 + 6 + 15,)
    assert all(obs.shape == (23,) for obs in observations.values())
    leader = FlattenObservations(MacroPlannerEnv(10))
    observations, _ = leader.reset(seed=0)
    assert observations["government"].shape == (6 + 15,)


def test_flatten_refuses_what_it_cannot_flatten(scenario):
    with pytest.raises(ValueError, match="text must be one of"):
        FlattenObservations(planner(scenario), text="keep")
    with pytest.raises(ValueError, match=r"\['event'\] is text"):
        FlattenObservations(planner(scenario), text="error")
    with pytest.raises(ValueError, match="Graph, which cannot be flattened"):
        graph = spaces.Graph(node_space=spaces.Discrete(3), edge_space=None)
        FlattenObservations(OneAgentEnv(spaces.Dict({"g": graph, "x": spaces.Discrete(2)})))
    with pytest.raises(ValueError, match="no numeric part"):
        FlattenObservations(OneAgentEnv(spaces.Dict({"text": FreeText(10)})))
    with pytest.raises(ValueError, match="Tuple with text"):
        FlattenObservations(OneAgentEnv(spaces.Tuple([spaces.Discrete(2), FreeText(10)])))


# -- pickling and re-seeding (what vector envs and remote workers do with an env) ----------


def _episode(env, seed, actions):
    observations, _ = env.reset(seed=seed)
    trace = []
    t = 0
    while env.agents:
        step = {agent: actions(agent, t) for agent in env.agents}
        observations, rewards, *_ = env.step(step)
        shown = [repr(observations[agent]) for agent in sorted(observations)]
        trace.append((sorted(rewards.items()), shown))
        t += 1
    return trace


@pytest.mark.parametrize(
    "make, actions, random",
    [
        (lambda s: FlattenObservations(planner(s)), lambda agent, t: t % 3, True),
        # label mode with given actions draws nothing: the same episode under every seed
        (lambda s: FixedSlots(population(s), SLOTS), lambda agent, t: t % 4, False),
        (lambda s: FlattenObservations(MacroPlannerEnv(10)), lambda a, t: np.full(5, 0.3), True),
    ],
    ids=["planner", "population-slots", "macro-leader"],
)
def test_wrapped_envs_pickle_and_reseed(scenario, make, actions, random):
    env = make(scenario)
    _episode(env, 5, actions)  # a used env: its generators have moved on
    copy = cloudpickle.loads(cloudpickle.dumps(env))
    episode = _episode(copy, 11, actions)
    assert episode == _episode(env, 11, actions) == _episode(make(scenario), 11, actions)
    assert (_episode(copy, 12, actions) != episode) == random


# -- to_vec_env ----------------------------------------------------------------------------


def _vector_rollout(env, seed, actions, steps):
    vector = to_vec_env(env, copies=2, base_class="gymnasium", seed=seed)
    observations, _ = vector.reset(seed=seed)
    trace = [observations]
    for t in range(steps):  # past the end of the first episode: auto-reset
        observations, rewards, terminations, _, _ = vector.step(
            np.full(vector.num_envs, actions(t))
        )
        trace += [observations, rewards, terminations]
    return vector, trace


def test_to_vec_env_steps_every_slot(scenario):
    env = FlattenObservations(FixedSlots(population(scenario), SLOTS))
    vector, trace = _vector_rollout(env, 0, lambda t: t % 4, 10)
    assert vector.num_envs == 2 * SLOTS
    terminations = trace[3::3]
    assert [bool(t.all()) for t in terminations] == [False] * 7 + [True, False, False]
    assert not any(t.any() for k, t in enumerate(terminations) if k != 7)


def test_to_vec_env_is_seeded(scenario):
    def rollout(seed):
        return _vector_rollout(FlattenObservations(planner(scenario)), seed, lambda t: t % 3, 12)[1]

    first, again, other = rollout(0), rollout(0), rollout(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    rewards = np.stack(first[2::3])
    assert not np.array_equal(rewards[:, 0], rewards[:, 1])  # the copies' seeds: 0 and 1


def test_to_vec_env_in_worker_processes_is_seeded_too(scenario):
    def rollout():
        env = FlattenObservations(planner(scenario))
        vector = to_vec_env(env, copies=2, num_cpus=2, seed=3)  # Stable-Baselines3's VecEnv
        trace = [vector.reset()]
        for t in range(8):
            observations, rewards, dones, _ = vector.step(np.full(vector.num_envs, t % 3))
            assert dones.dtype == bool  # SuperSuit's are 0/1 integers
            trace += [observations, rewards]
        vector.close()
        return trace

    first, again = rollout(), rollout()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_to_vec_env_joins_different_envs(scenario):
    envs = [
        FlattenObservations(planner(mfllm_env.synthetic_scenario(seed=i, n_reactions=60)))
        for i in range(3)
    ]
    vector = to_vec_env(envs, base_class="gymnasium")
    observations, _ = vector.reset(seed=0)
    assert observations.shape == (3, envs[0].observation_space(PLANNER).shape[0])
    assert len({row.tobytes() for row in observations}) == 3  # three events, three starts


def test_to_vec_env_names_the_wrapper_that_is_missing(scenario):
    with pytest.raises(ValueError, match="FlattenObservations"):
        to_vec_env(planner(scenario))
    with pytest.raises(ValueError, match="FixedSlots"):
        to_vec_env(FlattenObservations(population(scenario)))
    flat = FlattenObservations(planner(scenario))
    with pytest.raises(ValueError, match="base_class must be one of"):
        to_vec_env(flat, base_class="rllib")
    with pytest.raises(ValueError, match="copies must be an integer >= 1"):
        to_vec_env(flat, copies=0)
    with pytest.raises(ValueError, match="seed"):
        to_vec_env(flat, seed=-1)
    with pytest.raises(ValueError, match="at least one env"):
        to_vec_env([])
    with pytest.raises(TypeError, match="PettingZoo parallel envs"):
        to_vec_env([object()])
    other = FlattenObservations(PlannerEnv(scenario, every=1, budget=3))  # more decisions
    with pytest.raises(ValueError, match="different observation or action spaces"):
        to_vec_env([flat, other])


def test_importing_the_wrappers_loads_no_rl_library():
    code = (
        "import sys, mfllm_env.wrappers\n"
        "loaded = [m for m in ('torch', 'supersuit', 'stable_baselines3', 'ray') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rule_households_run_through_flattened_macro_env():
    # The households' rule policy reads Dict observations: it plays the wrapped env's inner
    # observations, the wrapper only changes what a learner sees.
    env = FlattenObservations(MacroEnv(10))
    env.reset(seed=0)
    households = RuleHouseholds()
    inner = env.unwrapped
    for _ in range(3):
        env.step(households.act(inner.observe()))
    assert inner.stats["invalid_action"] == 0
