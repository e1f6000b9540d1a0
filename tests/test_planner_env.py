"""PlannerEnv: API conformance, determinism, budget, invalid actions, injection, targeting,
the synthetic ground truth's response, argument checks, baselines and the LLM reply parser."""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

import mfllm_env
from agents.planners import parse_planner_reply, planner_prompt
from mfllm_env import SDQC, PopulationEnv, synthetic_scenario
from mfllm_env import planner as planner_module
from mfllm_env.metrics import kl_divergence
from mfllm_env.planner import (
    DEBUNK_TARGET,
    DEFAULT_MENU,
    PLANNER,
    WAIT,
    InterventionOption,
    NoIntervention,
    PlannerEnv,
    RandomPlanner,
    ScriptedPlanner,
    ThresholdPlanner,
    run_planner_episode,
)
from mfllm_env.synthetic import (
    INTERVENTION_EFFECTS,
    Intervention,
    SyntheticPopulation,
    SyntheticResponse,
)
from tests.conftest import plain

SUPPORT = SDQC.index("support")
QUERY = SDQC.index("query")
NAMES = [option.name for option in DEFAULT_MENU]
DEBUNK = NAMES.index("debunk")
DOUBT = NAMES.index("doubt")
BELIEVERS = NAMES.index("debunk-believers")


@pytest.fixture(scope="module")
def scenario():
    # 64 reactions, warm-up 16, 8 agents per step: 8 population steps, 2 of warm-up,
    # so 6 planner decisions with every=1.
    return synthetic_scenario(seed=1, n_reactions=64)


def _make(scenario, **kwargs) -> PlannerEnv:
    return pettingzoo.make("parallel", "mfllm/Planner-v0", scenario=scenario, **kwargs)


# -- 1. PettingZoo API ----------------------------------------------------------------------


@pytest.mark.parametrize("action_mode", ["menu", "text"])
def test_parallel_api(scenario, action_mode):
    env = _make(scenario, action_mode=action_mode)
    assert isinstance(env, PlannerEnv)
    assert env.possible_agents == [PLANNER]
    parallel_api_test(env, num_cycles=100)


def test_aec_api_menu_mode(scenario):
    api_test(parallel_to_aec(_make(scenario, action_mode="menu")), num_cycles=100)


def test_aec_api_text_mode(scenario):
    api_test(parallel_to_aec(_make(scenario, action_mode="text")), num_cycles=100)


def test_text_mode_takes_arbitrary_strings(scenario):
    env = _make(scenario, action_mode="text", budget=10)
    observations, _ = env.reset(seed=0)
    space = env.observation_space(PLANNER)
    strange = ["\x00\x1b[31m\ufffd", "😀" * 500, "这是假的", "zzz", "x" * 100_000, "a\nb\tc"]
    for text in strange:
        assert env.agents
        assert space.contains(observations[PLANNER])
        observations, rewards, _, _, infos = env.step({PLANNER: text})
        assert np.isfinite(rewards[PLANNER])
        assert infos[PLANNER]["invalid_action"] is False
    assert env.stats["interventions"] == 6
    # Posted messages are whitespace-normalised and cut to max_message_length.
    assert all(len(i["messages"][0]) <= env.max_message_length for i in env.interventions)
    assert env.interventions[-1]["messages"] == ["a b c"]
    assert all(i["label"] in SDQC.labels for i in env.interventions)
    # "zzz" carries no stance: the scheme's fallback label, counted.
    assert env.stats["fallback"] >= 1


def test_text_mode_message_is_labelled_posted_and_shown(scenario):
    env = _make(scenario, action_mode="text")
    env.reset(seed=0)
    pop = env.population_env
    seen = []
    act = env.follower_actions  # the population's observations, as a policy would get them
    env.follower_actions = lambda observations: seen.append(observations) or act(observations)
    _, _, _, _, infos = env.step({PLANNER: "  This is false,   it is a hoax.  "})
    message = "This is false, it is a hoax."
    assert infos[PLANNER]["intervention"] == "message"
    assert infos[PLANNER]["label"] == "deny"
    assert [post["text"] for post in pop.injected] == [message]
    assert pop.injected[0]["label"] == "deny"
    # The note ("<official name>: <message>") reaches every acting agent.
    assert all(message in obs["mean_field"] for obs in seen[0].values())


# -- 2. Determinism -------------------------------------------------------------------------


def test_same_seed_same_episode(scenario):
    env = _make(scenario)
    first = plain(run_planner_episode(env, RandomPlanner(env), seed=7))
    env = _make(scenario)
    second = plain(run_planner_episode(env, RandomPlanner(env, seed=123), seed=7))
    assert first == second
    assert len(first["decision_log"]) == env.num_decisions == 6
    assert first["interventions"] > 0  # a random planner does intervene
    third = plain(run_planner_episode(env, RandomPlanner(env), seed=8))
    assert third["trajectory"] != first["trajectory"]
    assert third["return"] != first["return"]


def test_same_seed_same_observations_and_rewards(scenario):
    def rollout(seed):
        env = _make(scenario, every=2)
        observations, infos = env.reset(seed=seed)
        trace = [(observations, infos)]
        actions = iter([DOUBT, 0, DEBUNK])
        while env.agents:
            trace.append(env.step({PLANNER: next(actions)}))
        return plain(trace), plain(env.summary())

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


# -- 3. Budget and cost ---------------------------------------------------------------------


def test_budget_cost_mask_and_counters(scenario):
    env = _make(scenario, budget=2, cost=0.25)
    observations, infos = env.reset(seed=0)
    assert env.num_decisions == 6
    assert observations[PLANNER]["steps_left"] == 6
    assert observations[PLANNER]["budget_left"] == 2
    assert infos[PLANNER]["action_mask"].tolist() == [1, 1, 1, 1, 1]
    rewards, costs, steps_left, budget_left, masks = [], [], [], [], []
    while env.agents:
        observations, reward, terminations, truncations, infos = env.step({PLANNER: 1})
        info = infos[PLANNER]
        assert reward[PLANNER] == pytest.approx(-info["distance"] - info["cost"])
        assert truncations[PLANNER] is False
        rewards.append(reward[PLANNER])
        costs.append(info["cost"])
        steps_left.append(observations[PLANNER]["steps_left"])
        budget_left.append(observations[PLANNER]["budget_left"])
        if not terminations[PLANNER]:
            masks.append(info["action_mask"].tolist())
    assert costs == [0.25, 0.25, 0, 0, 0, 0]
    assert steps_left == [5, 4, 3, 2, 1, 0]
    assert budget_left == [1, 0, 0, 0, 0, 0]
    assert masks[0] == [1, 1, 1, 1, 1]
    assert masks[1:] == [[1, 0, 0, 0, 0]] * 4
    assert env.stats["interventions"] == 2
    assert env.stats["over_budget"] == 4
    assert len(env.population_env.injected) == 2  # one debunk message each time
    summary = env.summary()
    assert summary["interventions"] == 2
    assert summary["cost"] == pytest.approx(0.5)
    assert summary["return"] == pytest.approx(sum(rewards))
    assert summary["decisions"] == 6


def test_option_cost_overrides_env_cost(scenario):
    cheap = InterventionOption("cheap", messages=("Is this confirmed?",), label="query", cost=0.0)
    env = _make(scenario, menu=(WAIT, cheap), cost=0.5)
    env.reset(seed=0)
    *_, infos = env.step({PLANNER: 1})
    assert infos[PLANNER]["cost"] == 0.0
    assert infos[PLANNER]["intervention"] == "cheap"


def test_budget_zero_never_intervenes(scenario):
    env = _make(scenario, budget=0)
    _, infos = env.reset(seed=0)
    assert infos[PLANNER]["action_mask"].tolist() == [1, 0, 0, 0, 0]
    while env.agents:
        env.step({PLANNER: DEBUNK})
    assert env.stats["interventions"] == 0 and env.stats["over_budget"] == 6
    assert env.population_env.injected == []


def test_every_groups_population_steps_into_windows(scenario):
    env = _make(scenario, every=4)  # 6 planning steps -> decisions of 4 and 2 steps
    env.reset(seed=0)
    assert env.num_decisions == 2
    _, _, _, _, infos = env.step({PLANNER: 0})
    assert len(env.trajectory) == 2 + 4
    window = np.concatenate([env.population_env.world_label_ids[16:48]])
    expected = np.bincount(window, minlength=4) / 32
    np.testing.assert_allclose(infos[PLANNER]["window_shares"], expected)
    _, _, terminations, _, _ = env.step({PLANNER: 0})
    assert terminations[PLANNER] and env.agents == []
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step({PLANNER: 0})


def test_horizon_limits_the_episode(scenario):
    env = _make(scenario, horizon=16)  # 16 reactions past warm-up: 2 steps, 2 decisions
    result = run_planner_episode(env, NoIntervention(), seed=0)
    assert env.num_decisions == 2 and len(result["decision_log"]) == 2
    assert result["trajectory"][-1]["reactions"] == [24, 32]
    real = [SDQC.index(r.labels["stance"]) for r in scenario.reactions[16:32]]
    np.testing.assert_allclose(result["real_shares"], np.bincount(real, minlength=4) / 16)


# -- 4. Invalid actions ---------------------------------------------------------------------


def test_invalid_menu_actions_wait(scenario):
    env = _make(scenario)
    env.reset(seed=0)
    bad = [99, -1, "debunk", None, True, 1.0, float("nan"), np.array([1]), 10**30, b"\x01"]
    env = _make(scenario, agents_per_step=4)  # 12 decisions: one per bad action, and more
    env.reset(seed=0)
    for action in bad:
        _, rewards, _, _, infos = env.step({PLANNER: action})
        assert infos[PLANNER]["invalid_action"] is True
        assert infos[PLANNER]["intervention"] is None
        assert infos[PLANNER]["cost"] == 0.0
        assert np.isfinite(rewards[PLANNER])
    assert env.stats["invalid_action"] == len(bad)
    assert env.stats["interventions"] == 0
    assert env.population_env.injected == []


def test_missing_action_is_invalid(scenario):
    env = _make(scenario)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({})
    assert infos[PLANNER]["invalid_action"] is True
    assert env.stats["invalid_action"] == 1


def test_numpy_integer_action_is_valid(scenario):
    env = _make(scenario)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({PLANNER: np.int64(DEBUNK)})
    assert infos[PLANNER]["invalid_action"] is False
    assert infos[PLANNER]["intervention"] == "debunk"


def test_text_mode_empty_waits_and_non_strings_are_invalid(scenario):
    env = _make(scenario, action_mode="text")
    env.reset(seed=0)
    for action in ["", "   \n\t "]:
        _, _, _, _, infos = env.step({PLANNER: action})
        assert infos[PLANNER]["invalid_action"] is False
        assert infos[PLANNER]["intervention"] is None and infos[PLANNER]["cost"] == 0.0
    assert env.stats["invalid_action"] == 0
    for action in [5, None, b"bytes", "Fact check: \udc80 false"]:
        _, _, _, _, infos = env.step({PLANNER: action})
        assert infos[PLANNER]["invalid_action"] is True
        assert infos[PLANNER]["intervention"] is None
    assert env.stats["invalid_action"] == 4
    assert env.stats["interventions"] == 0
    assert env.population_env.injected == []


@pytest.mark.parametrize(
    ("actions", "error", "message"),
    [
        (None, TypeError, "actions must be a mapping from agent name to action, got NoneType"),
        ([DEBUNK], TypeError, "got list"),
        ({"planer": DEBUNK}, ValueError, r"do not act this step: 'planer' \(acting now: planner\)"),
        ({PLANNER: DEBUNK, "reaction_00000": 1}, ValueError, "'reaction_00000'"),
    ],
)
def test_a_wrong_step_call_raises_and_changes_nothing(scenario, actions, error, message):
    env = _make(scenario)
    env.reset(seed=0)
    with pytest.raises(error, match=message):
        env.step(actions)
    assert env.agents == [PLANNER] and env.stats == {
        "interventions": 0,
        "over_budget": 0,
        "invalid_action": 0,
        "fallback": 0,
    }
    _, _, _, _, infos = env.step({PLANNER: DEBUNK})  # still works
    assert infos[PLANNER]["intervention"] == "debunk"


def test_step_before_reset_and_bad_seeds(scenario):
    env = _make(scenario)
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\)"):
        env.step({PLANNER: 0})
    for seed in (-1, 2.5, "1", False):
        with pytest.raises(ValueError, match="seed must be None or an integer >= 0"):
            env.reset(seed=seed)
    assert plain(env.reset(seed=np.int32(4))) == plain(env.reset(seed=4))


# -- 5. Injection ---------------------------------------------------------------------------


def test_untargeted_option_is_injected_into_the_mean_field_only(scenario):
    env = _make(scenario)
    env.reset(seed=0)
    pop = env.population_env
    assert pop.mean_field.count == 16  # the warm-up reactions
    doubt = DEFAULT_MENU[DOUBT]
    env.step({PLANNER: DOUBT})
    assert len(pop.injected) == len(doubt.messages) == 4
    assert pop.stats["injected"] == 4
    assert [post["text"] for post in pop.injected] == list(doubt.messages)
    assert {post["label"] for post in pop.injected} == {"query"}
    assert {post["at"] for post in pop.injected} == {16}
    # The mean field counts the 16 warm-up reactions, the 4 posts and 8 reactions ...
    assert pop.mean_field.count == 16 + 4 + 8
    world = pop.world_label_ids
    # ... but the simulated world has only the 24 reactions, no posts.
    assert world.shape == (64,) and int((world >= 0).sum()) == 24
    counts = np.bincount(world[:24], minlength=4).astype(float)
    counts[QUERY] += 4
    np.testing.assert_allclose(pop.mean_field.shares, counts / 28)
    final = np.bincount(world[16:24], minlength=4) / 8
    np.testing.assert_allclose(env.summary()["final_shares"], final)
    assert env.interventions[0]["messages"] == list(doubt.messages)
    assert env.trajectory[-1]["intervention"] == "doubt"


def test_untargeted_note_reaches_the_next_window_only(scenario):
    env = _make(scenario)
    env.reset(seed=0)
    seen = []
    act = env.follower_actions  # the population's observations, as a policy would get them
    env.follower_actions = lambda observations: seen.append(observations) or act(observations)
    note = DEFAULT_MENU[DEBUNK].note
    env.step({PLANNER: DEBUNK})
    env.step({PLANNER: 0})
    assert len(seen) == 2
    assert len(seen[0]) == 8 and all(note in obs["mean_field"] for obs in seen[0].values())
    assert not any(note in obs["mean_field"] for obs in seen[1].values())


def test_targeted_option_posts_nothing_and_reaches_only_its_group(scenario):
    env = _make(scenario)
    env.reset(seed=0)
    pop = env.population_env
    seen, observed = [], []
    act = env.follower_actions  # the population's observations, as a policy would get them
    env.follower_actions = lambda observations: seen.append(observations) or act(observations)
    response = pop.response
    observe = response.observe_intervention
    response.observe_intervention = lambda iv: observed.append(iv) or observe(iv)
    option = DEFAULT_MENU[BELIEVERS]
    env.step({PLANNER: BELIEVERS})
    assert pop.injected == [] and pop.stats["injected"] == 0
    assert pop.mean_field.count == 16 + 8
    assert env.stats["interventions"] == 1
    assert env.interventions[0]["target"] == "believer"
    assert observed == [Intervention(at=16, kind="debunk", strength=1.0, target="believer")]
    groups = {}
    for agent, obs in seen[0].items():
        group = pop.scenario.reactions[pop.reaction_index(agent)].author.profile["group"]
        groups[agent] = group
        assert (option.note in obs["mean_field"]) == (group == "believer"), (agent, group)
    # The check above is only meaningful if both kinds of agent acted.
    assert "believer" in groups.values() and set(groups.values()) - {"believer"}


def test_inject_is_checked():
    env = PopulationEnv(synthetic_scenario(seed=2, n_reactions=48), action_mode="label")
    author = planner_module.OFFICIAL_ACCOUNT
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one label per text"):
        env.inject(["a", "b"], [0], author)
    with pytest.raises(ValueError, match="label ids"):
        env.inject(["a"], [4], author)
    with pytest.raises(ValueError, match=r"inject\(\) text 1 is not writable text: None"):
        env.inject(["a", None], [0, 1], author)
    with pytest.raises(ValueError, match="text 0 is not writable"):
        env.inject(["\ud800"], [0], author)
    assert env.stats["injected"] == 0
    observations = env.inject(["Is this true?"], [QUERY], author)
    assert set(observations) == set(env.agents)
    assert all(obs["mean_field"] == env.mean_field.text for obs in observations.values())
    assert env.reaction_index(env.agents[0]) == 0
    while env.agents:
        env.step(dict.fromkeys(env.agents, 0))
    with pytest.raises(RuntimeError, match="finished episode"):
        env.inject(["late"], [0], author)


# -- 6. The synthetic ground truth ----------------------------------------------------------


def test_debunking_lowers_support_in_the_synthetic_population():
    none, debunk = [], []
    for seed in range(10):
        env = PlannerEnv(synthetic_scenario(seed=seed, n_reactions=96), budget=100)
        for action, out in ((0, none), (DEBUNK, debunk)):
            env.reset(seed=seed)
            while env.agents:
                env.step({PLANNER: action})
            out.append(env.summary()["final_shares"][SUPPORT])
    # Measured: 0.19 without intervention, 0.004 with debunks at every decision.
    assert np.mean(debunk) < np.mean(none) - 0.1
    assert sum(d <= n for d, n in zip(debunk, none, strict=True)) >= 9


def test_no_intervention_tracks_the_real_shares():
    """The ground-truth response, unperturbed, reproduces the real events' shares: per
    episode KL is small, and far smaller than between mismatched events."""
    real, sim = [], []
    for seed in range(20):
        env = PlannerEnv(synthetic_scenario(seed=seed, n_reactions=96), agents_per_step=4)
        summary = run_planner_episode(env, NoIntervention(), seed=seed)
        assert summary["interventions"] == 0
        real.append(summary["real_shares"])
        sim.append(summary["final_shares"])
    matched = np.mean([kl_divergence(r, s) for r, s in zip(real, sim, strict=True)])
    mismatched = np.mean([kl_divergence(real[i], sim[(i + 1) % 20]) for i in range(20)])
    # Measured: 0.09 vs 0.88.
    assert matched < 0.3
    assert mismatched > 4 * matched
    np.testing.assert_allclose(np.mean(sim, axis=0), np.mean(real, axis=0), atol=0.06)


def test_summary_real_shares_are_the_real_labels_after_warmup(scenario):
    env = _make(scenario, warmup=20)
    summary = run_planner_episode(env, NoIntervention(), seed=0)
    real = [SDQC.index(r.labels["stance"]) for r in scenario.reactions[20:]]
    np.testing.assert_allclose(summary["real_shares"], np.bincount(real, minlength=4) / 44)
    assert summary["trajectory"][2]["warmup"] is True  # reactions 16..23, warm-up to 20
    assert summary["trajectory"][3]["warmup"] is False


# -- 7. Targeting in the synthetic population -----------------------------------------------


def test_targeted_intervention_reaches_only_its_group():
    population = SyntheticPopulation(
        half_life=10.0,
        interventions=(
            Intervention(at=5, kind="debunk", strength=2.0, target="believer"),
            Intervention(at=8, kind="calm"),
        ),
    )
    debunk = 2.0 * np.asarray(INTERVENTION_EFFECTS["debunk"])
    calm = np.asarray(INTERVENTION_EFFECTS["calm"])
    np.testing.assert_allclose(population.intervention_effect(4, "believer"), 0.0)
    np.testing.assert_allclose(population.intervention_effect(5, "believer"), debunk)
    np.testing.assert_allclose(population.intervention_effect(7, "believer"), 0.5**0.2 * debunk)
    np.testing.assert_allclose(population.intervention_effect(7, "skeptic"), 0.0)
    np.testing.assert_allclose(population.intervention_effect(7, None), 0.0)
    np.testing.assert_allclose(
        population.intervention_effect(15, "believer"), 0.5 * debunk + 0.5**0.7 * calm
    )
    np.testing.assert_allclose(population.intervention_effect(15, "skeptic"), 0.5**0.7 * calm)
    np.testing.assert_allclose(population.intervention_effect(15, None), 0.5**0.7 * calm)
    np.testing.assert_allclose(
        population.intervention_effect(18, "believer"), 0.5**1.3 * debunk + 0.5 * calm
    )
    p_believer = population.label_probabilities(np.zeros(4), np.zeros(4), 0.0, 6, group="believer")
    p_skeptic = population.label_probabilities(np.zeros(4), np.zeros(4), 0.0, 6, group="skeptic")
    assert p_believer[SUPPORT] < p_skeptic[SUPPORT]


# -- 8. Argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every": 0}, ValueError, "every must be an integer >= 1"),
        ({"budget": -1}, ValueError, "budget must be an integer >= 0"),
        ({"cost": -0.1}, ValueError, "cost must be"),
        ({"distance": "l2"}, ValueError, "distance must be one of"),
        ({"action_mode": "label"}, ValueError, "action_mode must be 'menu' or 'text'"),
        ({"target": {"support": 0.5, "rumour": 0.5}}, ValueError, r"unknown labels \['rumour'\]"),
        ({"target": [0.5, 0.5]}, ValueError, "target needs 4 shares"),
        ({"target": [0, 0, 0, 0]}, ValueError, "not all 0"),
        ({"target": {"support": float("nan")}}, ValueError, "got support nan, deny 0.0"),
        ({"target": [1, -1, 0, 0]}, ValueError, "deny -1"),
        ({"target": [1, float("inf"), 0, 0]}, ValueError, "deny inf"),
        ({"target": [1, "a lot", 0, 0]}, ValueError, "deny 'a lot'"),
        ({"target": "deny"}, TypeError, "target must map labels to shares"),
        ({"target": {1: 0.5}}, ValueError, r"unknown labels \['1'\]"),
        ({"every": 2**31}, ValueError, "every must be an integer >= 1 and <= 2147483647"),
        ({"budget": 10**20}, ValueError, "budget must be an integer >= 0 and <= 2147483647"),
        ({"history_length": 10**6}, ValueError, "history_length must be an integer >= 1 and <= 10"),
        ({"warmup": float("nan")}, ValueError, "warmup must be an integer >= 0"),
        ({"warmup": "16"}, ValueError, "warmup must be an integer >= 0"),
        ({"agents_per_step": 0}, ValueError, "agents_per_step must be an integer >= 1"),
        ({"horizon": 1.5}, ValueError, "horizon must be an integer >= 1"),
        ({"cost": float("inf")}, ValueError, "cost must be a finite number >= 0, got inf"),
        ({"cost": "0.1"}, ValueError, "cost must be a finite number >= 0, got '0.1'"),
        (
            {"menu": (WAIT, dataclasses.replace(DEFAULT_MENU[1], strength=float("nan")))},
            ValueError,
            "menu option 'debunk': strength must be a finite number >= 0, got nan",
        ),
        (
            {"menu": (WAIT, dataclasses.replace(DEFAULT_MENU[1], cost="free"))},
            ValueError,
            "menu option 'debunk': cost must be a finite number >= 0, got 'free'",
        ),
        ({"menu": (WAIT, "debunk")}, TypeError, "must be InterventionOption objects, got 'debunk'"),
        ({"menu": (DEFAULT_MENU[1], WAIT)}, ValueError, "option 0 must wait"),
        ({"menu": ()}, ValueError, "option 0 must wait"),
        ({"menu": (WAIT, DEFAULT_MENU[1], DEFAULT_MENU[1])}, ValueError, "must be unique"),
        ({"menu": (WAIT, InterventionOption("noop"))}, ValueError, "does nothing"),
        (
            {"menu": (WAIT, InterventionOption("x", messages=("hi",), label="rumour"))},
            ValueError,
            "has label 'rumour'",
        ),
        ({"population": "llm"}, ValueError, "population must be a policy or 'synthetic'"),
        ({"population": object()}, TypeError, "reset"),
        ({"render_mode": "human"}, ValueError, "render_mode"),
    ],
)
def test_bad_arguments(scenario, kwargs, error, match):
    with pytest.raises(error, match=match):
        PlannerEnv(scenario, **kwargs)


def test_bad_scenarios():
    with pytest.raises(ValueError, match="none left to plan for after a warm-up of 16"):
        PlannerEnv(synthetic_scenario(seed=0, n_reactions=16))
    with pytest.raises(TypeError, match=r"mfllm_env\.Scenario"):
        PlannerEnv({"reactions": []})
    stripped = dataclasses.replace(synthetic_scenario(seed=0, n_reactions=48), metadata={})
    with pytest.raises(ValueError, match="no synthetic ground truth"):
        PlannerEnv(stripped)
    with pytest.raises(ValueError, match="label mode"):
        PopulationEnv(
            synthetic_scenario(seed=0, n_reactions=48),
            response=SyntheticResponse(synthetic_scenario(seed=0, n_reactions=48)),
        )


def test_default_target_is_the_debunk_target(scenario):
    env = PlannerEnv(scenario)
    expected = [DEBUNK_TARGET[label] for label in SDQC.labels]
    np.testing.assert_allclose(env.target, expected)
    env = PlannerEnv(scenario, target={"deny": 3, "query": 1})
    np.testing.assert_allclose(env.target, [0.0, 0.75, 0.25, 0.0])
    env = PlannerEnv(scenario, target=[1e308, 1e308, 0, 0])  # a sum that would overflow
    np.testing.assert_allclose(env.target, [0.5, 0.5, 0.0, 0.0])


# -- 9. Baselines ---------------------------------------------------------------------------


def test_scripted_planner_doubts_once_at_the_first_decision(scenario):
    env = _make(scenario)
    result = run_planner_episode(env, ScriptedPlanner(env), seed=0)
    assert [d["intervention"] for d in result["decision_log"]] == ["doubt"] + [None] * 5
    assert result["interventions"] == 1
    assert env.interventions[0]["decision"] == 0 and env.interventions[0]["at"] == 16
    assert len(result["injected"]) == 4
    # reset() restarts the script.
    again = run_planner_episode(env, ScriptedPlanner(env, option="calm", at=(1, 3)), seed=0)
    log = [d["intervention"] for d in again["decision_log"]]
    assert log == [None, "calm", None, "calm", None, None]


def test_threshold_planner_fires_on_the_last_steps_support_share():
    fired_any = waited_any = False
    for seed in range(6):
        env = PlannerEnv(synthetic_scenario(seed=seed, n_reactions=64), budget=10)
        planner = ThresholdPlanner(env, threshold=0.2)
        observations, _ = env.reset(seed=seed)
        planner.reset(seed=seed)
        while env.agents:
            observation = observations[PLANNER]
            last_step = env.trajectory[-1]["shares"]
            np.testing.assert_allclose(observation["step_shares"][-1], last_step, rtol=1e-6)
            fire = last_step[SUPPORT] > 0.2
            action = planner.act(observations)[PLANNER]
            assert action == (DEBUNK if fire else 0)
            observations, _, _, _, infos = env.step({PLANNER: action})
            assert infos[PLANNER]["intervention"] == ("debunk" if fire else None)
            fired_any |= fire
            waited_any |= not fire
    assert fired_any and waited_any


def test_threshold_planner_respects_the_budget():
    planner = ThresholdPlanner(PlannerEnv(synthetic_scenario(seed=0, n_reactions=48)))
    shares = np.zeros((8, 4), dtype=np.float32)
    shares[-1] = [1.0, 0.0, 0.0, 0.0]
    assert planner.act({PLANNER: {"step_shares": shares, "budget_left": 1}}) == {PLANNER: 1}
    assert planner.act({PLANNER: {"step_shares": shares, "budget_left": 0}}) == {PLANNER: 0}
    shares[-1] = [0.3, 0.7, 0.0, 0.0]  # not above the threshold
    assert planner.act({PLANNER: {"step_shares": shares, "budget_left": 1}}) == {PLANNER: 0}
    with pytest.raises(ValueError, match="no menu option 'shout'"):
        ThresholdPlanner(planner_module.PlannerEnv(synthetic_scenario(0, n_reactions=48)), "shout")


def test_no_intervention_never_intervenes(scenario):
    env = _make(scenario)
    result = run_planner_episode(env, NoIntervention(), seed=0)
    assert result["interventions"] == 0 and result["cost"] == 0
    assert result["injected"] == []
    assert all(d["intervention"] is None for d in result["decision_log"])
    assert result["return"] == pytest.approx(-sum(d["distance"] for d in result["decision_log"]))


# -- 10. The LLM planner's prompt and reply parser ------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("WAIT", ""),
        ("  wait. ", ""),
        ("", ""),
        ("Nothing", ""),
        ('Reply: "This is false"', "This is false"),
        ("This is false.\nExplanation: it is a rumour.", "This is false."),
        ("Please wait for official information.", "Please wait for official information."),
    ],
)
def test_parse_text_reply(reply, expected):
    assert parse_planner_reply(reply) == (expected, True)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("debunk", (1, True)),
        ("I choose: DOUBT", (2, True)),
        ("calm first, then debunk", (3, True)),
        ("debunk, not calm", (1, True)),
        ("debunk-believers", (4, True)),
        ("Option: debunk-believers.", (4, True)),
        ("wait", (0, True)),
        ("something else entirely", (0, False)),
        ("", (0, False)),
    ],
)
def test_parse_menu_reply(reply, expected):
    assert parse_planner_reply(reply, NAMES) == expected


def test_planner_prompt_shows_goal_budget_and_played_rows(scenario):
    env = _make(scenario)
    observations, _ = env.reset(seed=0)
    observation = observations[PLANNER]
    # history_length 8, 2 warm-up steps played: 6 all-zero rows.
    assert int((observation["step_shares"].sum(axis=1) == 0).sum()) == 6
    messages = planner_prompt(observation, labels=SDQC.labels, target=env.target, options=NAMES)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "support 10%, deny 40%, query 30%, comment 20%" in user
    assert "You can post 3 more time(s); 6 decision(s) left." in user
    assert ", ".join(NAMES) in user
    assert observation["event"] in user
    shares_block = user.split("oldest first:\n")[1].split("\n\n")[0]
    assert len(shares_block.splitlines()) == 2
    assert "support 0%, deny 0%, query 0%, comment 0%" not in user
    text_prompt = planner_prompt(observation, labels=SDQC.labels, target=env.target)
    assert "WAIT" in text_prompt[1]["content"]
    assert ", ".join(NAMES) not in text_prompt[1]["content"]


# -- 11. Docstring example and render -------------------------------------------------------


def test_module_docstring_example_runs():
    result = doctest.testmod(planner_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_render_ansi(scenario):
    env = _make(scenario, render_mode="ansi", budget=2)
    env.reset(seed=0)
    env.step({PLANNER: DEBUNK})
    text = env.render()
    assert text.startswith("decision 1/6, budget 1: support ")
    assert _make(scenario).render() is None


def test_registered_and_exported():
    assert mfllm_env.PlannerEnv is PlannerEnv
    assert mfllm_env.run_planner_episode is run_planner_episode
    assert mfllm_env.DEFAULT_MENU is DEFAULT_MENU


def test_a_step_straddling_the_warmup_scores_only_its_simulated_reactions(scenario):
    env = _make(scenario, warmup=20)  # steps of 8: reactions 16-19 are real, 20-23 not
    env.reset(seed=0)
    _, _, _, _, infos = env.step({PLANNER: 0})
    assert env.trajectory[-1]["reactions"] == [16, 24]
    sim = env.population_env.world_label_ids[20:24]
    expected = np.bincount(sim, minlength=SDQC.size) / 4
    np.testing.assert_allclose(infos[PLANNER]["window_shares"], expected)


def test_reset_without_a_seed_continues_the_seeded_stream(scenario):
    def returns(env):
        out = []
        for seed in (0, None, None):
            env.reset(seed=seed)
            total = 0.0
            while env.agents:
                total += env.step({PLANNER: 0})[1][PLANNER]
            out.append(total)
        return out

    first, second = returns(_make(scenario)), returns(_make(scenario))
    assert first == second
    assert len(set(first)) > 1  # the unseeded resets are new episodes, not replays


def test_default_menu_drops_targeted_options_whose_group_is_absent(scenario):
    no_groups = dataclasses.replace(
        scenario,
        reactions=[
            dataclasses.replace(
                r,
                author=dataclasses.replace(
                    r.author, profile={k: v for k, v in r.author.profile.items() if k != "group"}
                ),
            )
            for r in scenario.reactions
        ],
    )
    env = PlannerEnv(no_groups, population=NoIntervention())
    assert "debunk-believers" not in [o.name for o in env.menu]
    with pytest.raises(ValueError, match="no author of this scenario"):
        PlannerEnv(no_groups, population=NoIntervention(), menu=DEFAULT_MENU)


def test_inject_returns_new_observations_and_leaves_earlier_ones(scenario):
    env = PopulationEnv(scenario, warmup=16, agents_per_step=8, action_mode="label")
    before, _ = env.reset(seed=0)
    kept = {agent: dict(obs) for agent, obs in before.items()}
    after = env.inject(
        ["Fact check: false."], [SDQC.index("deny")], planner_module.OFFICIAL_ACCOUNT
    )
    for agent, observation in before.items():
        assert observation["mean_field"] == kept[agent]["mean_field"]
        assert after[agent]["mean_field"] != observation["mean_field"]


def test_text_over_budget_is_not_labelled(scenario):
    env = _make(scenario, action_mode="text", budget=0)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({PLANNER: "zzz"})  # the labeller cannot label it
    assert infos[PLANNER]["over_budget"] and env.stats["fallback"] == 0
