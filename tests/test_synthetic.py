"""The synthetic scenario: reproducible, with the dynamics its docstring promises."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.baselines import ClassifierPolicy, collect_examples
from mfllm_env import SDQC, Intervention, PopulationEnv, SyntheticPopulation, synthetic_scenario
from mfllm_env.simulation import run_episode
from mfllm_env.synthetic import SyntheticResponse


def _shares(scenario) -> np.ndarray:
    ids = [SDQC.index(r.labels["stance"]) for r in scenario.reactions]
    return np.bincount(ids, minlength=SDQC.size) / len(ids)


def test_same_seed_same_scenario_and_different_seeds_differ():
    assert synthetic_scenario(seed=5) == synthetic_scenario(seed=5)
    assert synthetic_scenario(seed=5) != synthetic_scenario(seed=6)


def test_every_reaction_is_labelled_and_in_time_order():
    sc = synthetic_scenario(seed=2, n_reactions=120)
    assert len(sc.reactions) == 120 == sc.labelled_count("stance")
    times = [r.timestamp for r in sc.reactions]
    assert times == sorted(times) and times[0] > sc.source.timestamp
    assert set(sc.label_counts("stance")) <= set(SDQC.labels)


def test_label_probabilities_are_distributions():
    population = SyntheticPopulation(interventions=(Intervention(at=10),))
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = population.label_probabilities(
            rng.normal(size=4),
            rng.integers(0, 30, size=4).astype(float),
            rng.random(),
            int(rng.integers(40)),
        )
        assert p.shape == (4,) and np.all(p >= 0) and p.sum() == pytest.approx(1.0)


def test_feedback_strength_drives_herding():
    """Stronger mean-field feedback spreads the final shares of different seeds apart."""
    weak = np.array([_shares(synthetic_scenario(s, feedback_strength=0.0)) for s in range(12)])
    strong = np.array([_shares(synthetic_scenario(s, feedback_strength=1.5)) for s in range(12)])
    assert strong.std(axis=0).mean() > 2 * weak.std(axis=0).mean()
    assert strong.max(axis=1).mean() > weak.max(axis=1).mean() + 0.2


def test_debunk_intervention_raises_deny_and_lowers_support():
    deny, support = SDQC.index("deny"), SDQC.index("support")
    gains = []
    for seed in range(10):
        plain = _shares(synthetic_scenario(seed, feedback_strength=0.5))
        debunked = _shares(
            synthetic_scenario(
                seed, feedback_strength=0.5, interventions=[Intervention(at=0, strength=2.0)]
            )
        )
        gains.append((debunked[deny] - plain[deny], debunked[support] - plain[support]))
    gains = np.array(gains)
    assert gains[:, 0].mean() > 0.1 and gains[:, 1].mean() < -0.05


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_reactions": 0}, "n_reactions must be an integer >= 1"),
        ({"n_reactions": 2.5}, "n_reactions must be an integer >= 1"),
        ({"n_reactions": 10**7}, "n_reactions must be an integer >= 1 and <= 1000000"),
        ({"n_users": 0}, "n_users must be an integer >= 1"),
        ({"seed": -1}, "seed must be None or an integer >= 0, got -1"),
        ({"feedback_strength": float("nan")}, "feedback_strength must be a number"),
        ({"feedback_strength": 1e300}, r"feedback_strength must be a number .*, got 1e\+300"),
        ({"prior_weight": 0.0}, "prior_weight must be a number >= 1e-06"),
        ({"half_life": float("-inf")}, "half_life must be a number >= 1e-06"),
        ({"personal_noise": -0.5}, "personal_noise must be a number >= 0"),
        ({"query_decay": "1"}, "query_decay must be a number"),
    ],
)
def test_bad_generator_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        synthetic_scenario(**arguments)


def test_bad_interventions():
    with pytest.raises(ValueError, match="unknown intervention"):
        Intervention(at=3, kind="nuke")
    with pytest.raises(ValueError, match="intervention index must be an integer >= 0"):
        Intervention(at=1.5)
    with pytest.raises(ValueError, match="intervention strength must be a number"):
        Intervention(at=1, strength=float("nan"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"framing": [0.1, float("nan"), 0.0, 0.0]}, "framing must be 4 finite numbers"),
        ({"framing": "tilted"}, "framing must be 4 finite numbers"),
        ({"user_logits": {}}, "'user_logits' lacks the authors"),
        ({"population": {"feedback_strength": float("inf")}}, "feedback_strength must be"),
        ({"population": {"herding": 2.0}}, "metadata 'population' is not a synthetic population"),
    ],
)
def test_synthetic_response_checks_the_ground_truth_before_the_episode(change, message):
    scenario = synthetic_scenario(seed=0, n_reactions=24)
    broken = dataclasses.replace(scenario, metadata={**scenario.metadata, **change})
    with pytest.raises(ValueError, match=message):
        SyntheticResponse(broken)


def test_the_ground_truth_responds_as_the_transition_for_agents_given_no_action():
    scenario = synthetic_scenario(seed=3, n_reactions=48)

    def play(seed, first_agent_action=None):
        env = PopulationEnv(
            scenario, action_mode="label", warmup=8, response=SyntheticResponse(scenario)
        )
        env.reset(seed=seed)
        acted = []
        while env.agents:
            given = {} if first_agent_action is None else {env.agents[0]: first_agent_action}
            acted += [env.reaction_index(agent) for agent in given]
            env.step(given)
        return env, acted

    env, _ = play(0)
    again, _ = play(0)
    other, _ = play(1)
    assert (env.sim_label_ids >= 0).all() and env.stats["invalid_action"] == 0
    np.testing.assert_array_equal(env.sim_label_ids, again.sim_label_ids)  # same seed
    assert (env.sim_label_ids != other.sim_label_ids).any()
    # An agent given an action keeps it; only the others are drawn (a mixed population).
    mixed, acted = play(0, first_agent_action=SDQC.index("deny"))
    assert len(acted) == 3 and (mixed.sim_label_ids[acted] == SDQC.index("deny")).all()
    drawn = np.setdiff1d(np.arange(48), acted)
    # The others' draws change: the given actions took no draw and changed the world.
    assert (mixed.sim_label_ids[drawn] != env.sim_label_ids[drawn]).any()


class RecordingResponse(SyntheticResponse):
    """The ground truth, keeping the indices it was asked to draw for and the world's ids
    it was shown (and whether they could be written)."""

    def reset(self, seed=None):
        super().reset(seed)
        self.asked, self.writable = [], []

    def respond(self, indices, world_label_ids):
        self.asked += list(indices)
        self.writable.append(world_label_ids.flags.writeable)
        return super().respond(indices, world_label_ids)


def test_given_actions_consume_no_draw_of_the_ground_truth():
    """The response is asked to draw only for the agents given no action, once each, in
    order, and is shown a read-only view of the world's labels."""
    scenario = synthetic_scenario(seed=3, n_reactions=48)
    response = RecordingResponse(scenario)
    env = PopulationEnv(scenario, action_mode="label", warmup=8, response=response)
    env.reset(seed=0)
    acted = []
    while env.agents:
        acted.append(env.reaction_index(env.agents[0]))
        env.step({env.agents[0]: SDQC.index("deny")})
    assert acted == [0, 16, 32]
    assert response.asked == sorted(set(range(48)) - set(acted))
    assert len(response.writable) == 3 and not any(response.writable)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            synthetic_scenario(seed=0, n_reactions=48),
            r"answers for scenario 'synthetic/0' \(24 "
            r"reactions\), not for 'synthetic/0' \(48 reactions\)",
        ),
        (
            synthetic_scenario(seed=1, n_reactions=24),
            r"'synthetic/0' \(24 reactions\), not for "
            r"'synthetic/1' \(24 reactions\)",
        ),
    ],
)
def test_the_ground_truth_refuses_another_scenarios_env(other, message):
    response = SyntheticResponse(synthetic_scenario(seed=0, n_reactions=24))
    with pytest.raises(ValueError, match=message):
        PopulationEnv(other, action_mode="label", response=response)


def test_the_ground_truth_refuses_a_same_named_scenario_of_other_content():
    scenario = synthetic_scenario(seed=0, n_reactions=24)
    framed = dataclasses.replace(
        scenario, metadata={**scenario.metadata, "framing": [2.0, 0.0, 0.0, 0.0]}
    )
    with pytest.raises(ValueError, match="a different scenario of the same name and size"):
        PopulationEnv(framed, action_mode="label", response=SyntheticResponse(scenario))
    # An equal scenario (another object) is the same one.
    copy = dataclasses.replace(scenario)
    assert copy is not scenario
    PopulationEnv(copy, action_mode="label", response=SyntheticResponse(scenario))


class _Answering(SyntheticResponse):
    """The ground truth answering ``answer(indices)`` instead of its draws."""

    def __init__(self, scenario, answer):
        super().__init__(scenario)
        self.answer = answer

    def respond(self, indices, world_label_ids):
        return self.answer(indices)


@pytest.mark.parametrize(
    "answer",
    [
        lambda indices: [0] * (len(indices) - 1),  # one short
        lambda indices: [0] * (len(indices) + 1),
        lambda indices: [SDQC.size] * len(indices),  # not a label id
        lambda indices: [-1] * len(indices),
        lambda indices: [0.0] * len(indices),
        lambda indices: [True] * len(indices),
        lambda indices: [[0]] * (len(indices) - 1) + [[0, 1]],  # ragged
    ],
)
def test_a_response_must_answer_one_label_id_per_reaction(answer):
    scenario = synthetic_scenario(seed=0, n_reactions=24)
    env = PopulationEnv(
        scenario, action_mode="label", warmup=0, response=_Answering(scenario, answer)
    )
    env.reset(seed=0)
    with pytest.raises(
        ValueError,
        match=r"response _Answering must return one label id in "
        r"\[0, 4\) per reaction as integers, 16 here",
    ):
        env.step({})
    fine = PopulationEnv(
        scenario,
        action_mode="label",
        warmup=0,
        response=_Answering(scenario, lambda indices: np.arange(len(indices)) % SDQC.size),
    )
    fine.reset(seed=0)
    fine.step({})
    assert fine.stats["invalid_action"] == 0


def test_the_ground_truth_answers_only_in_sdqc_label_mode():
    scenario = synthetic_scenario(seed=0, n_reactions=24)
    with pytest.raises(ValueError, match="needs an environment in label mode"):
        PopulationEnv(scenario, response=SyntheticResponse(scenario))
    with pytest.raises(TypeError, match=r"response must have labels, check\(scenario\), reset"):
        PopulationEnv(scenario, action_mode="label", response=object())


def test_mean_field_aware_policy_recovers_trajectory_state_only_cannot():
    """The package's central claim, on ground truth: with strong feedback, seeing the mean
    field is what lets a policy follow the real share trajectory."""
    fit = collect_examples([synthetic_scenario(seed=s) for s in range(1000, 1020)])
    results = {}
    for features in ("state", "state+mean_field"):
        policy = ClassifierPolicy(SDQC, features, seed=0).fit(fit)
        metrics = [
            run_episode(
                PopulationEnv(synthetic_scenario(seed=s), action_mode="label", warmup=50),
                policy,
                seed=s,
            )
            for s in range(10)
        ]
        results[features] = {
            k: np.mean([m[k] for m in metrics]) for k in ("kl", "dtw", "kl_mean_over_time")
        }
    state, mf = results["state"], results["state+mean_field"]
    # Held-out seeds: the mean-field-aware policy is several times closer to the real
    # shares, at the end and along the way.
    assert mf["kl"] < 0.4 * state["kl"], results
    assert mf["dtw"] < 0.6 * state["dtw"], results
    assert mf["kl_mean_over_time"] < 0.5 * state["kl_mean_over_time"], results
    assert mf["kl"] < 0.25, results


def test_round_trips_through_jsonl(tmp_path):
    from mfllm_env import load_scenarios, write_scenarios_jsonl

    scenario = synthetic_scenario(seed=4, n_reactions=40, interventions=[Intervention(at=5)])
    write_scenarios_jsonl([scenario], tmp_path / "s.jsonl")
    assert load_scenarios("jsonl", tmp_path / "s.jsonl") == [scenario]


def test_default_labeller_recovers_the_label_of_every_synthetic_text():
    from mfllm_env.labelers import default_labeler
    from mfllm_env.synthetic import _OUTLETS, _TEXTS

    labeler = default_labeler("stance")
    for name, templates in _TEXTS.items():
        texts = [t.format(outlet=outlet) for t in templates for outlet in _OUTLETS]
        assert labeler.label(texts).tolist() == [SDQC.index(name)] * len(texts), name


def test_scenarios_reject_non_finite_times_and_unknown_labels():
    from dataclasses import replace

    scenario = synthetic_scenario(seed=1, n_reactions=5)
    first = scenario.reactions[0]
    with pytest.raises(ValueError, match="finite"):
        replace(scenario, reactions=[replace(first, timestamp=float("nan"))])
    with pytest.raises(ValueError, match="stance label 'maybe'"):
        replace(scenario, reactions=[replace(first, labels={"stance": "maybe"})])
    # Dimensions without a built-in scheme are the user's business.
    replace(scenario, reactions=[replace(first, labels={"mood": "happy"})])


@pytest.mark.parametrize("interventions", [None, Intervention(at=10), "debunk"])
def test_interventions_must_be_a_sequence_of_interventions(interventions):
    with pytest.raises(TypeError, match="interventions must be a sequence of Intervention"):
        synthetic_scenario(seed=0, n_reactions=20, interventions=interventions)
