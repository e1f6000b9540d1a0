"""Non-LLM baseline policies: protocol, reproducibility, and what each one does."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import (
    ClassifierPolicy,
    HerdingPolicy,
    UniformRandomPolicy,
    collect_examples,
)
from mfllm_env import SDQC, Policy, PopulationEnv, synthetic_scenario
from mfllm_env.simulation import play_episodes, run_episode, simulate


@pytest.fixture(scope="module")
def fitted_examples():
    return collect_examples([synthetic_scenario(seed=s, n_reactions=150) for s in range(100, 106)])


def test_collect_examples_pairs_observations_with_real_labels(fitted_examples):
    n = 6 * 150
    assert len(fitted_examples.states) == n == len(fitted_examples.labels)
    assert fitted_examples.shares.shape == (n, SDQC.size)
    np.testing.assert_allclose(fitted_examples.shares.sum(axis=1), 1.0, rtol=1e-5)
    real = [
        SDQC.index(r.labels["stance"])
        for s in range(100, 106)
        for r in synthetic_scenario(seed=s, n_reactions=150).reactions
    ]
    assert fitted_examples.labels.tolist() == real


@pytest.mark.parametrize(
    "policy",
    [UniformRandomPolicy(SDQC, seed=0), HerdingPolicy()],
    ids=["random", "herding"],
)
def test_simple_policies_follow_the_protocol(policy):
    assert isinstance(policy, Policy)
    metrics = run_episode(
        PopulationEnv(synthetic_scenario(seed=1), action_mode="label"), policy, seed=1
    )
    assert metrics["invalid_actions"] == 0 and metrics["fallbacks"] == 0


def test_uniform_random_is_seeded_and_roughly_uniform():
    policy = UniformRandomPolicy(SDQC)
    observations = {f"a{i}": {} for i in range(4000)}
    policy.reset(3)
    first = policy.act(observations)
    policy.reset(3)
    assert policy.act(observations) == first
    counts = np.bincount(list(first.values()), minlength=4) / 4000
    np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_herding_takes_the_majority():
    shares = np.array([0.1, 0.6, 0.2, 0.1], dtype=np.float32)
    actions = HerdingPolicy().act({"a": {"shares": shares}, "b": {"shares": shares[::-1].copy()}})
    assert actions == {"a": 1, "b": 2}


def test_classifier_policy_is_reproducible_and_samples(fitted_examples):
    policy = ClassifierPolicy(SDQC, "state+mean_field", seed=0).fit(fitted_examples)
    env = PopulationEnv(synthetic_scenario(seed=9), action_mode="label")
    first = run_episode(env, policy, seed=4)
    second = run_episode(env, policy, seed=4)
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    proba = policy.probabilities([{"state": "User x.", "shares": np.full(4, 0.25)}])
    assert proba.shape == (1, 4) and proba.sum() == pytest.approx(1.0)
    # It samples: a batch of identical agents does not all take one label.
    same = {f"a{i}": {"state": "User x.", "shares": np.full(4, 0.25)} for i in range(200)}
    assert len(set(policy.act(same).values())) > 1
    # After acting, each agent's label distribution is what its label was drawn from.
    assert list(policy.label_distributions) == list(same)
    np.testing.assert_allclose(policy.label_distributions["a7"], proba[0])


def test_classifier_policy_errors(fitted_examples):
    with pytest.raises(ValueError, match="features"):
        ClassifierPolicy(SDQC, "everything")
    with pytest.raises(RuntimeError, match="fit"):
        ClassifierPolicy(SDQC).act({"a": {"state": "x", "shares": np.full(4, 0.25)}})
    with pytest.raises(ValueError, match="no reactions"):
        collect_examples([])


def test_policy_mode_must_match_env():
    env = PopulationEnv(synthetic_scenario(seed=1, n_reactions=20), action_mode="text")
    with pytest.raises(ValueError, match="mode"):
        run_episode(env, HerdingPolicy())


class _Returns:
    """A label-mode policy whose act() returns ``make(observations)``."""

    action_mode = "label"

    def __init__(self, make) -> None:
        self.make = make

    def reset(self, seed=None) -> None:
        pass

    def act(self, observations):
        return self.make(observations)


def _label_env() -> PopulationEnv:
    return PopulationEnv(synthetic_scenario(seed=1, n_reactions=20), action_mode="label", warmup=4)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda obs: None, TypeError, "must be a mapping from agent name to action, got NoneType"),
        (lambda obs: [0] * len(obs), TypeError, "got list"),
        # keys without the episode prefix: every action was dropped and counted invalid
        (lambda obs: {k.split("|")[1]: 0 for k in obs}, ValueError, "'reaction_00000', "),
        (lambda obs: {**dict.fromkeys(obs, 0), "x": 0}, ValueError, r"'x' \(acting now: 0\|"),
    ],
)
def test_a_policy_returning_other_agents_or_no_mapping_is_named(make, error, message):
    with pytest.raises(error, match=rf"policy _Returns.act\(\): .*{message}"):
        run_episode(_label_env(), _Returns(make))


def test_play_arguments_are_checked(tmp_path):
    with pytest.raises(TypeError, match=r"policy must have action_mode, reset\(\) and act\(\) "):
        run_episode(_label_env(), object())
    herding = HerdingPolicy()
    env = _label_env()
    with pytest.raises(ValueError, match="episode 1: its env is still playing episode 0"):
        list(play_episodes([(env, 0), (env, 1)], herding, parallel=2))
    scenarios = [synthetic_scenario(seed=1, n_reactions=20)]
    for option, message in [
        ({"parallel": 1.5}, "parallel must be an integer >= 1 .*got 1.5"),
        ({"max_plots": -1}, "max_plots must be an integer >= 0 .*got -1"),  # plotted all but one
        ({"seed": -1}, "seed must be .*an integer >= 0, got -1"),
        ({"seed": None}, "seed must be an integer >= 0, got None"),
    ]:
        with pytest.raises(ValueError, match=message):
            simulate(scenarios, lambda s: env, herding, tmp_path / "run", progress=False, **option)
    assert not (tmp_path / "run").exists()  # checked before the folder is made
    with pytest.raises(TypeError, match="make_env must return a PopulationEnv, got NoneType"):
        simulate(scenarios, lambda s: None, herding, tmp_path / "run", progress=False)


def test_baseline_arguments_are_checked():
    """A None scheme failed at the first act(), a negative seed inside numpy, max_iter=0
    inside scikit-learn's fit."""
    with pytest.raises(TypeError, match="scheme must be a LabelScheme, got NoneType"):
        UniformRandomPolicy(None)
    with pytest.raises(ValueError, match="seed must be None or an integer >= 0, got -1"):
        UniformRandomPolicy(SDQC, seed=-1)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        ClassifierPolicy(SDQC, max_iter=0)
