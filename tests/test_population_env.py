"""PopulationEnv: PettingZoo API conformance, determinism, warm-up, bad actions, rewards."""

from __future__ import annotations

import doctest
import re

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils import parallel_to_aec

import mfllm_env
from mfllm_env import (
    SDQC,
    HistogramMeanField,
    LabelMatchReward,
    MeanField,
    PopulationEnv,
    StepOutcome,
    synthetic_scenario,
)
from mfllm_env import population_env as population_env_module
from tests.conftest import plain


@pytest.fixture(scope="module")
def scenario():
    return synthetic_scenario(seed=3, n_reactions=90)


@pytest.mark.parametrize("action_mode", ["text", "label"])
def test_parallel_api(scenario, action_mode):
    env = PopulationEnv(scenario, action_mode=action_mode, warmup=20)
    parallel_api_test(env, num_cycles=100)


@pytest.mark.parametrize("action_mode", ["text", "label"])
def test_aec_api_through_parallel_to_aec(scenario, action_mode):
    env = parallel_to_aec(PopulationEnv(scenario, action_mode=action_mode, warmup=20))
    api_test(env, num_cycles=100)


def test_registered_with_pettingzoo(scenario):
    env = pettingzoo.make("parallel", "mfllm/Population-v0", scenario=scenario, agents_per_step=8)
    assert isinstance(env, PopulationEnv)
    observations, _ = env.reset(seed=0)
    assert len(observations) == 8


def test_module_docstring_example_runs():
    result = doctest.testmod(population_env_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def _rollout(env: PopulationEnv, seed: int) -> list:
    """Every observation and info from reset to the end, with actions sampled from the
    env's own (seeded) action space."""
    observations, infos = env.reset(seed=seed)
    trace = [(observations, infos)]
    while env.agents:
        actions = {agent: env.action_space(agent).sample() for agent in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(actions)
        trace.append(
            (observations, rewards, terminations, truncations, infos, env.state().tolist())
        )
    return trace


@pytest.mark.parametrize("action_mode", ["text", "label"])
def test_same_seed_same_trajectory(scenario, action_mode):
    env = PopulationEnv(scenario, action_mode=action_mode, warmup=20)
    first = plain(_rollout(env, seed=42))
    second = plain(_rollout(PopulationEnv(scenario, action_mode=action_mode, warmup=20), seed=42))
    assert first == second
    assert len(first) == env.num_steps + 1
    # A different seed gives different random actions, hence different labels.
    third = plain(_rollout(env, seed=7))
    assert first != third


def test_observations_are_in_their_spaces(scenario):
    env = PopulationEnv(scenario, warmup=20)
    observations, _ = env.reset(seed=0)
    space = env.observation_space(env.agents[0])
    while env.agents:
        for agent in env.agents:
            assert space.contains(observations[agent])
            np.testing.assert_allclose(observations[agent]["shares"].sum(), 1.0, rtol=1e-5)
        observations, *_ = env.step({agent: "This is fake news." for agent in env.agents})
        assert env.state_space.contains(env.state())


def test_each_reaction_is_one_agent_acting_once(scenario):
    env = PopulationEnv(scenario, agents_per_step=16, action_mode="label")
    env.reset(seed=0)
    seen = []
    while env.agents:
        seen.extend(env.agents)
        env.step(dict.fromkeys(env.agents, 0))
    assert seen == env.possible_agents
    assert len(seen) == len(scenario.reactions) == env.stats["actions"]
    assert env.num_steps == int(np.ceil(90 / 16))


def test_warmup_mean_field_follows_real_reactions(scenario):
    """During warm-up the mean field counts the real labels, whatever the agents do."""
    env = PopulationEnv(scenario, warmup=48, action_mode="label", agents_per_step=16)
    env.reset(seed=0)
    for _ in range(3):  # 48 reactions = 3 steps of warm-up
        env.step(dict.fromkeys(env.agents, SDQC.index("deny")))
    real = env.real_label_ids[:48]
    np.testing.assert_allclose(env.mean_field.shares, np.bincount(real, minlength=4) / 48)
    # After warm-up the agents' own actions drive it: all-deny pushes deny up.
    before = env.mean_field.shares[SDQC.index("deny")]
    env.step(dict.fromkeys(env.agents, SDQC.index("deny")))
    assert env.mean_field.shares[SDQC.index("deny")] > before
    np.testing.assert_array_equal(env.world_label_ids[:48], real)


def test_text_actions_are_labelled_and_infos_carry_the_real_reaction(scenario):
    env = PopulationEnv(scenario, warmup=0)
    env.reset(seed=0)
    acting = list(env.agents)
    _, _, _, _, infos = env.step({agent: "This is fake, a hoax, not true." for agent in acting})
    for agent, reaction in zip(acting, scenario.reactions, strict=False):
        info = infos[agent]
        assert info["sim_label"] == "deny" and info["fallback"] is False
        assert info["real_text"] == reaction.text
        assert info["real_label"] == reaction.labels["stance"]
        assert info["real_label_source"] == "human"


def test_bad_text_actions_fall_back_and_are_counted(scenario):
    env = PopulationEnv(scenario, warmup=0)
    env.reset(seed=0)
    agents = list(env.agents)
    actions = {
        agents[0]: "",
        agents[1]: "   ",
        agents[2]: None,
        agents[3]: 12345,
        agents[4]: "x" * 100_000,
        agents[5]: "\x00\x01\ufffd",
        agents[6]: "这是假的",
    }  # the rest of the agents give no action at all
    _, _, _, _, infos = env.step(actions)
    fallback_id = SDQC.fallback_id
    for agent in agents[:4] + agents[7:]:
        assert infos[agent]["fallback"] is True
        assert infos[agent]["sim_label_id"] == fallback_id
    assert infos[agents[0]]["empty_action"] and infos[agents[1]]["empty_action"]
    assert infos[agents[2]]["invalid_action"] and infos[agents[3]]["invalid_action"]
    assert infos[agents[7]]["invalid_action"]  # missing action
    assert env.stats["actions"] == 16
    assert env.stats["fallback"] == sum(
        info["fallback"] for info in infos.values() if "fallback" in info
    )
    assert env.stats["invalid_action"] == 2 + len(agents[7:])
    # Only strings can be empty; missing and non-string actions are invalid instead.
    assert env.stats["empty_action"] == 2
    assert not infos[agents[2]]["empty_action"] and not infos[agents[7]]["empty_action"]


@pytest.mark.parametrize(
    "bad",
    [
        -1,
        4,
        10**30,
        2.0,
        float("nan"),
        np.float32(1.0),
        True,
        "support",
        b"1",
        None,
        np.array([1, 2]),
        np.array(1),
        [1],
        {"label": 1},
    ],
)
def test_bad_label_actions_fall_back(scenario, bad):
    env = PopulationEnv(scenario, action_mode="label")
    env.reset(seed=0)
    agent = env.agents[0]
    _, _, _, _, infos = env.step({**dict.fromkeys(env.agents, 0), agent: bad})
    assert infos[agent]["fallback"] and infos[agent]["invalid_action"]
    assert infos[agent]["sim_label"] == SDQC.fallback
    assert env.stats["fallback"] == 1


def test_default_reward_is_match_minus_step_kl(scenario):
    env = PopulationEnv(scenario, action_mode="label", warmup=0)
    env.reset(seed=0)
    acting = list(env.agents)
    real = [SDQC.index(r.labels["stance"]) for r in scenario.reactions[:16]]
    _, rewards, _, _, _ = env.step(dict(zip(acting, real, strict=True)))
    # Every agent matched its real label and the step shares are identical: reward 1.
    assert all(rewards[a] == pytest.approx(1.0) for a in acting)
    # New agents start with reward 0.
    assert all(rewards[a] == 0.0 for a in env.agents)
    acting = list(env.agents)
    real = [SDQC.index(r.labels["stance"]) for r in scenario.reactions[16:32]]
    wrong = [(r + 1) % 4 for r in real]
    _, rewards, _, _, _ = env.step(dict(zip(acting, wrong, strict=True)))
    assert all(rewards[a] < 0 for a in acting)


def test_custom_reward_function(scenario):
    def population_only(outcome: StepOutcome) -> np.ndarray:
        return -np.abs(outcome.real_counts - outcome.sim_counts).sum() * np.ones(
            len(outcome.agents)
        )

    env = PopulationEnv(scenario, action_mode="label", reward_fn=population_only)
    env.reset(seed=0)
    acting = list(env.agents)
    _, rewards, _, _, _ = env.step(dict.fromkeys(acting, 0))
    assert len({rewards[a] for a in acting}) == 1 and rewards[acting[0]] <= 0


def test_custom_mean_field_model_is_used(scenario):
    class Recorder(HistogramMeanField):
        calls = 0

        def update(self, batch):
            Recorder.calls += 1
            assert len(batch.states) == len(batch.actions) == len(batch.labels)
            assert len(batch.labels) == len(batch.authors)
            return super().update(batch)

    env = PopulationEnv(scenario, action_mode="label", mean_field=Recorder(window=20))
    env.reset(seed=0)
    while env.agents:
        env.step(dict.fromkeys(env.agents, 1))
    assert Recorder.calls == env.num_steps
    assert env.mean_field.count == 20


@pytest.mark.parametrize("bad", ["\ud800 a lone surrogate", b"This is fake", 1.5, ["x"]])
def test_text_actions_that_cannot_be_written_fall_back(scenario, bad):
    env = PopulationEnv(scenario, warmup=0)
    env.reset(seed=0)
    agent = env.agents[0]
    _, _, _, _, infos = env.step({**dict.fromkeys(env.agents, "Is this true?"), agent: bad})
    assert infos[agent]["invalid_action"] and infos[agent]["fallback"]
    assert env.stats["invalid_action"] == 1
    assert env.mean_field.text.encode("utf-8")  # nothing unwritable reached the world


@pytest.mark.parametrize(
    ("actions", "error", "message"),
    [
        (None, TypeError, "actions must be a mapping from agent name to action, got NoneType"),
        ([0, 1], TypeError, "got list"),
        ("support", TypeError, "got str"),
        ({"reaction_99999": 0}, ValueError, "do not act this step: 'reaction_99999'"),
        ({"reaction_00016": 0}, ValueError, r"'reaction_00016' \(acting now: reaction_00000\.\."),
        ({3: 0}, ValueError, "do not act this step: 3 "),
        ({f"x{i}": 0 for i in range(9)}, ValueError, "'x4' and 4 more"),
    ],
)
def test_a_wrong_step_call_raises_and_changes_nothing(scenario, actions, error, message):
    env = PopulationEnv(scenario, action_mode="label", warmup=0)
    env.reset(seed=0)
    acting = list(env.agents)
    with pytest.raises(error, match=message):
        env.step(actions)
    assert env.agents == acting and env.stats["actions"] == 0
    with pytest.raises(error, match=message):
        env.begin_step(actions)
    _, _, terminations, _, _ = env.step(dict.fromkeys(acting, 1))  # still works
    assert all(terminations[agent] for agent in acting) and env.stats["invalid_action"] == 0
    with pytest.raises(ValueError, match="'reaction_00000'"):  # acted: not acting any more
        env.step({acting[0]: 1})


def test_step_before_reset_says_so(scenario):
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\)"):
        PopulationEnv(scenario).step({})


@pytest.mark.parametrize("seed", [-1, 1.5, float("nan"), "3", True, [3]])
def test_bad_seeds_are_rejected(scenario, seed):
    env = PopulationEnv(scenario, action_mode="label")
    message = f"seed must be None or an integer >= 0, got {seed!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        env.reset(seed=seed)


def test_numpy_and_huge_seeds_are_seeds(scenario):
    env = PopulationEnv(scenario, action_mode="label")
    assert plain(_rollout(env, np.int64(7))) == plain(_rollout(env, 7))
    _rollout(env, 2**70)


def test_episode_end_and_step_after_end(scenario):
    env = PopulationEnv(scenario, action_mode="label", max_reactions=20)
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 0))
    _, _, terminations, _, _ = env.step(dict.fromkeys(env.agents, 0))
    assert env.agents == [] and all(terminations.values())
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"agents_per_step": 0}, "agents_per_step"),
        ({"agents_per_step": 2.5}, "agents_per_step"),
        ({"warmup": -1}, "warmup"),
        ({"warmup": "50"}, "warmup"),
        ({"warmup": float("nan")}, "warmup must be an integer >= 0 and <= 2147483647, got nan"),
        ({"warmup": float("inf")}, "warmup"),
        ({"warmup": 10**20}, "warmup"),
        ({"agents_per_step": 2**31}, "agents_per_step"),
        ({"history_length": 10**20}, "history_length"),
        ({"max_text_length": -5}, "max_text_length"),
        ({"max_reactions": float("nan")}, "max_reactions"),
        ({"max_reactions": True}, "max_reactions"),
        ({"history_length": -1}, "history_length"),
        ({"max_action_length": 0}, "max_action_length"),
        ({"action_mode": "tokens"}, "action_mode"),
        ({"max_reactions": 0}, "max_reactions"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_are_rejected(scenario, options, message):
    with pytest.raises(ValueError, match=message):
        PopulationEnv(scenario, **options)


def test_labeller_output_is_checked(scenario):
    class Broken:
        scheme = SDQC

        def label(self, texts):
            return np.full(len(texts), 7)

    env = PopulationEnv(scenario, labeler=Broken(), warmup=0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Broken must return one id in"):
        env.step(dict.fromkeys(env.agents, "hello"))


def test_observed_shares_are_read_only(scenario):
    env = PopulationEnv(scenario, action_mode="label")
    observations, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="read-only"):
        next(iter(observations.values()))["shares"][0] = 1.0


def test_state_reports_the_fraction_done(scenario):
    env = PopulationEnv(scenario, action_mode="label", agents_per_step=30)
    env.reset(seed=0)
    assert env.state()[-1] == 0.0
    env.step(dict.fromkeys(env.agents, 0))
    assert env.state()[-1] == pytest.approx(30 / 90)


def test_label_mode_speaks_in_label_names():
    """Label mode has no texts: histories show label names, in warm-up and after, so a
    policy sees the same kind of state whether the real or its own actions drove it."""
    sc = synthetic_scenario(seed=1, n_reactions=120, n_users=10)
    env = PopulationEnv(sc, action_mode="label", warmup=60)
    observations, _ = env.reset(seed=0)
    states = []
    while env.agents:
        states += [observations[a]["state"] for a in env.agents]
        observations, *_ = env.step(dict.fromkeys(env.agents, 1))
    histories = [s.split("Your earlier posts: ")[1] for s in states if "earlier posts" in s]
    assert histories and all(set(h.split(" | ")) <= set(SDQC.labels) for h in histories)


def test_not_a_scenario_is_rejected():
    with pytest.raises(TypeError, match="Scenario"):
        PopulationEnv("synthetic")


def test_unknown_dimension_without_labeller(scenario):
    with pytest.raises(ValueError, match="certainty"):
        PopulationEnv(scenario, label_dimension="certainty")


def test_state_history_shows_own_earlier_posts():
    sc = synthetic_scenario(seed=1, n_reactions=200, n_users=20)
    env = PopulationEnv(sc, action_mode="label", warmup=200)
    observations, _ = env.reset(seed=0)
    with_history = 0
    while env.agents:
        with_history += sum("earlier posts" in observations[a]["state"] for a in env.agents)
        observations, *_ = env.step(dict.fromkeys(env.agents, 0))
    assert with_history > 100  # 20 users share 200 reactions


def test_render_ansi(scenario):
    env = PopulationEnv(scenario, action_mode="label", render_mode="ansi")
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 0))
    assert env.render().startswith("step 1/")


def test_package_does_not_import_llm_libraries():
    import subprocess
    import sys

    code = (
        "import sys, mfllm_env, mfllm_env.labelers, mfllm_env.loaders;"
        "heavy = ('torch', 'transformers', 'httpx', 'requests', 'openai');"
        "bad = [m for m in heavy if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert mfllm_env.PopulationEnv is PopulationEnv


def test_chinese_mean_field_text_names_labels_in_chinese():
    from dataclasses import replace

    from mfllm_env import WEIBO
    from mfllm_env.labelers import WeiboRuleLabeler

    sc = replace(synthetic_scenario(seed=2, n_reactions=40), language="zh")
    sc = replace(sc, reactions=[replace(r, labels={}) for r in sc.reactions])
    env = PopulationEnv(sc, label_dimension=WEIBO, labeler=WeiboRuleLabeler(), warmup=0)
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, "这是谣言吧？"))
    assert "评论质疑" in env.mean_field.text and "comment_doubt" not in env.mean_field.text


def test_actions_when_no_agent_acts_are_named():
    from mfllm_env.checks import check_actions

    with pytest.raises(ValueError, match=r"'a' \(acting now: none\)"):
        check_actions({"a": 1}, [])


@pytest.mark.parametrize(
    ("returned", "shown"),
    [
        (float("nan"), "got nan"),
        (None, "got None"),
        ("1.5", "got '1.5'"),
        ([1.0], r"got \[1.0\]"),
        (np.full(16, np.inf), "got array"),
    ],
)
def test_a_reward_fn_returning_no_finite_numbers_is_refused_and_changes_nothing(
    scenario, returned, shown
):
    env = PopulationEnv(scenario, action_mode="label", reward_fn=lambda outcome: returned)
    env.reset(seed=0)
    acting = list(env.agents)
    with pytest.raises(ValueError, match=f"reward_fn must return a finite number or 16 .*{shown}"):
        env.step(dict.fromkeys(acting, 0))
    env.reward_fn = lambda outcome: 1.0  # nothing changed: the same step plays as if new
    env.step(dict.fromkeys(acting, 0))
    assert env.stats["actions"] == 16 and env.mean_field.count == 16
    assert env.state()[:4].tolist() == env.state()[4:8].tolist()


class _Labeller:
    scheme = SDQC

    def __init__(self, ids) -> None:
        self.ids = ids

    def label(self, texts):
        return [self.ids] * len(texts)


@pytest.mark.parametrize("ids", [1.7, float("nan"), "1", "support", True, None, 2**70])
def test_a_labeller_returning_other_than_integer_ids_is_named(scenario, ids):
    env = PopulationEnv(scenario, labeler=_Labeller(ids))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"labeler _Labeller must return one id in \[-1, 4\) per"):
        env.step(dict.fromkeys(env.agents, "Is this true?"))


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("labeler", 3, "labeler must be None or an object with method.s. label, got int"),
        ("labeler", type("NoScheme", (), {"label": list}), "labeler must have a LabelScheme"),
        ("mean_field", object(), "mean_field must be None or an object with .* reset, update"),
        ("reward_fn", 3, "reward_fn must be callable, got int"),
    ],
)
def test_components_without_their_methods_are_refused(scenario, argument, value, message):
    with pytest.raises(TypeError, match=message):
        PopulationEnv(scenario, **{argument: value() if isinstance(value, type) else value})


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        (None, TypeError, "a MeanField, got NoneType"),
        ("summary", TypeError, "a MeanField, got str"),
        (MeanField(None, np.full(4, 0.25), 1), ValueError, "text of type NoneType"),
        (MeanField("x", np.full(3, 1 / 3), 1), ValueError, "shares array"),
        (MeanField("x", np.full(4, np.nan), 1), ValueError, "shares array"),
        (MeanField("x", np.array([-1.0, 1, 1, 0]), 1), ValueError, "shares array"),
        (MeanField("x", np.full((2, 2), 0.25), 1), ValueError, "shares array"),
        (MeanField("x", ["a", "b", "c", "d"], 1), ValueError, "shares \\['a'"),
    ],
)
def test_a_mean_field_model_returning_garbage_is_named(scenario, returned, error, message):
    class Garbage(HistogramMeanField):
        def update(self, batch):
            return returned

    env = PopulationEnv(scenario, action_mode="label", mean_field=Garbage())
    env.reset(seed=0)
    with pytest.raises(error, match=f"mean-field model Garbage.update.. .*{message}"):
        env.step(dict.fromkeys(env.agents, 0))


def test_a_mean_field_with_shares_in_a_list_is_observed_as_an_array(scenario):
    class Listed(HistogramMeanField):
        def reset(self, scenario, scheme):
            return MeanField("start", [0.25] * 4, 0)

    env = PopulationEnv(scenario, action_mode="label", mean_field=Listed())
    observations, _ = env.reset(seed=0)
    assert observations[env.agents[0]]["shares"].tolist() == [0.25] * 4


@pytest.mark.parametrize(
    ("texts", "label_ids", "error", "message"),
    [
        (["a"], [1.7], ValueError, r"label ids must be a list of integers, got \[1.7\]"),  # was 1
        (["a"], [True], ValueError, r"label ids must be a list of integers, got \[True\]"),
        (["a"], ["support"], ValueError, "label ids must be a list of integers"),
        (["a"], [[0]], ValueError, "label ids must be a list of integers"),
        ("ab", [0, 1], TypeError, "texts must be a list of str, got str"),  # one post per char
    ],
)
def test_inject_refuses_ids_that_are_not_integers(scenario, texts, label_ids, error, message):
    env = PopulationEnv(scenario, action_mode="label")
    env.reset(seed=0)
    with pytest.raises(error, match=message):
        env.inject(texts, label_ids, mfllm_env.Author("bot"))
    assert env.stats["injected"] == 0


@pytest.mark.parametrize("weight", [float("nan"), "1", None])
def test_label_match_reward_weights_are_finite_numbers(weight):
    with pytest.raises(ValueError, match=f"match_weight must be a finite number, got {weight!r}"):
        LabelMatchReward(match_weight=weight)


def test_an_unhashable_label_dimension_is_unknown(scenario):
    with pytest.raises(ValueError, match=r"no built-in label scheme for dimension \['stance'\]"):
        PopulationEnv(scenario, label_dimension=["stance"])
