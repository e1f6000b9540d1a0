"""Fuzzing the environments' API with Hypothesis: any action, any seed, any constructor
number gives either a clear error of the documented type or a counted fallback, never
another exception, and the env keeps working after a refused call.

The rule under test is the one in :mod:`mfllm_env.population_env`'s docstring ("Bad input:
what raises, what falls back"); each test states the rule independently and checks the env
against it. Synthetic scenarios and non-LLM populations keep every case fast.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mfllm_env import SDQC, PlannerEnv, PopulationEnv, synthetic_scenario
from mfllm_env.checks import MAX_COUNT
from mfllm_env.mean_field import PopularReactions, RecentReactions
from mfllm_env.planner import DEBUNK_TARGET, MAX_HISTORY_LENGTH, PLANNER
from mfllm_env.scenario import Author, Reaction, Scenario
from mfllm_env.spaces import AnnotatedText
from mfllm_env.synthetic import MAX_PARAMETER, MAX_REACTIONS

SCENARIO = synthetic_scenario(seed=11, n_reactions=40)
AGENTS_PER_STEP = 8

# -- strategies -------------------------------------------------------------------------

# Text with lone surrogates mixed in (a broken decoder's output), which no file can hold.
texts = st.text(
    st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=30
) | st.just("x" * 5000)
numpy_scalars = st.one_of(
    st.integers(-(2**7), 2**7 - 1).map(np.int8),
    st.integers(-(2**31), 2**31 - 1).map(np.int64),
    st.integers(0, 2**16 - 1).map(np.uint16),
    st.floats(width=32).map(np.float32),
    st.booleans().map(np.bool_),
)
numpy_arrays = hnp.arrays(
    st.sampled_from([np.int64, np.float64, np.int8, np.bool_, np.uint8]),
    hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
)
action_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 6),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities included
    texts,
    texts.map(AnnotatedText),
    st.binary(max_size=8),
    numpy_scalars,
    numpy_arrays,
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
seeds = st.one_of(
    st.none(),
    st.integers(-5, 2**80),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
    st.integers(0, 2**31).map(np.int64),
)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _valid_label(value: Any) -> bool:
    return _is_int(value) and 0 <= value < SDQC.size


def _valid_text(value: Any) -> bool:
    """Written out as UTF-8 without error (after the env's cut to its action length)."""
    if not isinstance(value, str):
        return False
    try:
        value[:1000].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_seed(seed: Any) -> bool:
    return seed is None or (_is_int(seed) and seed >= 0)


def _reset_with_a_drawn_seed(env: Any, data: Any) -> None:
    """Reset ``env`` with a generated seed: one that is not a seed must be refused, and
    the env then resets with seed 0."""
    seed = data.draw(seeds, label="seed")
    if not _valid_seed(seed):
        with pytest.raises(ValueError, match=r"seed must be None or an integer >= 0, got "):
            env.reset(seed=seed)
        seed = 0
    env.reset(seed=seed)


@st.composite
def step_calls(draw: st.DrawFn, agents: list[str]) -> Any:
    """What a caller might pass to ``step``: mostly a mapping over (some of) the active
    agents, sometimes with strangers in it, sometimes not a mapping at all."""
    kind = draw(st.sampled_from(["mapping"] * 6 + ["strangers", "not a mapping"]))
    if kind == "not a mapping":
        return draw(st.one_of(st.none(), st.lists(st.integers(), max_size=3), texts, st.integers()))
    actions: dict[Any, Any] = {
        agent: draw(action_values) for agent in agents if draw(st.integers(0, 5))  # some missing
    }
    if kind == "strangers":
        stranger = draw(
            st.one_of(
                st.text(max_size=12).filter(lambda key: key not in agents),
                st.integers(),
                st.just("reaction_00000"),  # acted in the first step: not acting any more
                st.just(PLANNER),
            ).filter(lambda key: key not in agents)
        )
        actions[stranger] = draw(action_values)
    return actions


# -- PopulationEnv: actions ---------------------------------------------------------------


@pytest.mark.parametrize("action_mode", ["label", "text"])
@settings(max_examples=60)
@given(data=st.data())
def test_population_env_actions_raise_or_fall_back_as_documented(action_mode, data):
    env = PopulationEnv(SCENARIO, action_mode=action_mode, agents_per_step=AGENTS_PER_STEP)
    _reset_with_a_drawn_seed(env, data)
    valid = _valid_label if action_mode == "label" else _valid_text
    invalid_so_far = 0
    while env.agents:
        acting = list(env.agents)
        actions = data.draw(step_calls(acting), label="actions")
        if not isinstance(actions, dict):
            with pytest.raises(TypeError, match="actions must be a mapping from agent name"):
                env.step(actions)
        elif any(key not in acting for key in actions):
            with pytest.raises(ValueError, match="actions name agents that do not act this step"):
                env.step(actions)
        else:
            _, rewards, terminations, _, infos = env.step(actions)
            expected_invalid = [not valid(actions.get(agent)) for agent in acting]
            assert [infos[agent]["invalid_action"] for agent in acting] == expected_invalid
            fallbacks = [infos[agent]["fallback"] for agent in acting]
            assert all(f for f, bad in zip(fallbacks, expected_invalid, strict=True) if bad)
            assert all(terminations[agent] for agent in acting)
            assert all(math.isfinite(rewards[agent]) for agent in acting)
            invalid_so_far += sum(expected_invalid)
            assert env.stats["invalid_action"] == invalid_so_far
            env.mean_field.text.encode("utf-8")  # the world holds only writable text
            continue
        # A refused call changes nothing: the same agents act, with valid actions.
        assert env.agents == acting
        env.step(dict.fromkeys(acting, 0 if action_mode == "label" else "Is this true?"))
    assert env.stats["actions"] == len(SCENARIO.reactions)
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step({})


# -- PopulationEnv: constructor numbers ---------------------------------------------------

count_values = st.one_of(
    st.integers(-3, 40),
    st.integers(-(2**40), 2**40),
    st.just(MAX_COUNT),
    st.just(MAX_COUNT + 1),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.text(max_size=2),
)


def mostly(plausible: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> Any:
    """``plausible`` in 4 cases of 5, else ``anything``: enough valid cases to build envs
    and play episodes, enough odd ones to hit every error."""
    return st.integers(0, 4).flatmap(lambda i: plausible if i else anything)


counts_mostly_valid = mostly(st.integers(1, 40), count_values)
POPULATION_COUNTS = {
    "agents_per_step": 1,
    "warmup": 0,
    "history_length": 0,
    "max_text_length": 1,
    "max_action_length": 1,
    "max_reactions": 1,  # None is valid too
}


@settings(max_examples=120)
@given(
    options=st.dictionaries(
        st.sampled_from(sorted(POPULATION_COUNTS)), counts_mostly_valid, max_size=4
    )
)
def test_population_env_constructor_numbers(options):
    def bad(name: str, value: Any) -> bool:
        if name == "max_reactions" and value is None:
            return False
        return not (_is_int(value) and POPULATION_COUNTS[name] <= value <= MAX_COUNT)

    wrong = [name for name, value in options.items() if bad(name, value)]
    event("refused" if wrong else "built")
    if wrong:
        with pytest.raises(ValueError, match=rf"({'|'.join(wrong)}) must be an integer >= \d"):
            PopulationEnv(SCENARIO, action_mode="label", **options)
        return
    env = PopulationEnv(SCENARIO, action_mode="label", **options)
    env.reset(seed=0)
    while env.agents:  # a whole episode runs
        env.step(dict.fromkeys(env.agents, 1))
    assert env.stats["invalid_action"] == 0


# -- PlannerEnv: actions ------------------------------------------------------------------


class ScriptedLabels:
    """A population acting label 3 for everyone (fast, and independent of the planner)."""

    action_mode = "label"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observations: dict[str, Any]) -> dict[str, int]:
        return dict.fromkeys(observations, 3)


@pytest.mark.parametrize("action_mode", ["menu", "text"])
@settings(max_examples=60)
@given(data=st.data())
def test_planner_env_actions_raise_or_wait_as_documented(action_mode, data):
    env = PlannerEnv(
        SCENARIO, action_mode=action_mode, agents_per_step=AGENTS_PER_STEP, budget=2
    )
    _reset_with_a_drawn_seed(env, data)

    def valid(action: Any) -> bool:
        if action_mode == "menu":
            return _is_int(action) and 0 <= action < len(env.menu)
        return _valid_text(action)

    invalid_so_far = 0
    while env.agents:
        actions = data.draw(step_calls([PLANNER]), label="actions")
        if not isinstance(actions, dict):
            with pytest.raises(TypeError, match="actions must be a mapping from agent name"):
                env.step(actions)
        elif any(key != PLANNER for key in actions):
            with pytest.raises(ValueError, match="do not act this step"):
                env.step(actions)
        else:
            _, rewards, _, _, infos = env.step(actions)
            expected = not valid(actions.get(PLANNER))
            assert infos[PLANNER]["invalid_action"] is expected
            if expected:
                assert infos[PLANNER]["intervention"] is None
            assert math.isfinite(rewards[PLANNER])
            invalid_so_far += expected
            assert env.stats["invalid_action"] == invalid_so_far
            continue
        assert env.agents == [PLANNER]
        env.step({PLANNER: 0 if action_mode == "menu" else ""})  # still works
    summary = env.summary()
    assert summary["interventions"] <= 2 and math.isfinite(summary["return"])


# -- PlannerEnv: constructor numbers ------------------------------------------------------

amount_values = st.one_of(
    st.floats(allow_nan=True),
    st.floats(0, 1e300),
    st.integers(-2, 10**30),
    st.text(max_size=2),
    st.none(),
    st.booleans(),
)
target_values = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from([*DEBUNK_TARGET, "rumour"]), amount_values, max_size=4),
    st.lists(amount_values, min_size=3, max_size=5),
    st.lists(st.floats(0, 1e308), min_size=4, max_size=4),
    st.text(max_size=4),
)
PLANNER_COUNTS = {
    "every": (1, MAX_COUNT),
    "budget": (0, MAX_COUNT),
    "history_length": (1, MAX_HISTORY_LENGTH),
    "horizon": (1, MAX_COUNT),  # None is valid too
    "warmup": (0, MAX_COUNT),
    "agents_per_step": (1, MAX_COUNT),
}


def _amount(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


def _target_ok(target: Any) -> bool:
    if target is None:
        return True
    if isinstance(target, dict):
        values = list(target.values())
        known = all(name in DEBUNK_TARGET for name in target)
    elif isinstance(target, list):
        values, known = target, len(target) == SDQC.size
    else:
        return False
    return known and all(_amount(v) for v in values) and any(values)


@settings(max_examples=120)
@given(
    counts=st.dictionaries(
        st.sampled_from(sorted(PLANNER_COUNTS)), counts_mostly_valid, max_size=3
    ),
    cost=st.one_of(st.just(0.05), st.floats(0, 1e300), amount_values),
    target=st.one_of(st.none(), target_values),
)
def test_planner_env_constructor_numbers(counts, cost, target):
    def bad_count(name: str, value: Any) -> bool:
        if name == "horizon" and value is None:
            return False
        low, high = PLANNER_COUNTS[name]
        return not (_is_int(value) and low <= value <= high)

    problems = [
        rf"{name} must be an integer >= \d"
        for name, value in counts.items()
        if bad_count(name, value)
    ]
    if not problems and counts.get("warmup", 16) >= len(SCENARIO.reactions):
        problems.append("none left to plan for")
    if not _amount(cost):
        problems.append("cost must be a finite number >= 0")
    if not _target_ok(target):
        problems.append("target")
    build = dict(counts, cost=cost, target=target, population=ScriptedLabels())
    if problems:
        event("refused")
        with pytest.raises((ValueError, TypeError), match="|".join(problems)):
            PlannerEnv(SCENARIO, **build)
    else:
        event("built")
        env = PlannerEnv(SCENARIO, **build)
        assert np.isclose(env.target.sum(), 1.0) and np.all(np.isfinite(env.target))
        env.reset(seed=0)
        while env.agents:
            _, rewards, _, _, _ = env.step({PLANNER: 1})
            assert not math.isnan(rewards[PLANNER])


# -- synthetic generator and follower counts ----------------------------------------------

parameter_values = st.one_of(
    st.floats(allow_nan=True),
    st.floats(-2 * MAX_PARAMETER, 2 * MAX_PARAMETER),
    st.sampled_from([0.0, 1e-7, 1e-6, MAX_PARAMETER]),
    st.integers(-10, 10),
)
POPULATION_PARAMETERS = {
    "feedback_strength": -MAX_PARAMETER,
    "prior_weight": 1 / MAX_PARAMETER,
    "framing_noise": 0.0,
    "personal_noise": 0.0,
    "query_decay": -MAX_PARAMETER,
    "half_life": 1 / MAX_PARAMETER,
    "profile_clarity": -MAX_PARAMETER,
}


@settings(max_examples=80)
@given(
    parameters=st.dictionaries(
        st.sampled_from(sorted(POPULATION_PARAMETERS)),
        mostly(st.floats(0.01, 10), parameter_values),
        max_size=4,
    ),
    n_reactions=mostly(st.integers(1, 24), st.one_of(st.integers(-2, 0), st.floats())),
    seed=mostly(st.integers(0, 2**32), seeds),
)
def test_synthetic_generator_numbers(parameters, n_reactions, seed):
    wrong = [
        name
        for name, value in parameters.items()
        if not POPULATION_PARAMETERS[name] <= value <= MAX_PARAMETER  # NaN fails too
    ]
    if not (_is_int(n_reactions) and 1 <= n_reactions <= MAX_REACTIONS):
        wrong.append("n_reactions")
    if not _valid_seed(seed):
        wrong.append("seed")
    event("refused" if wrong else "built")
    if wrong:
        with pytest.raises(ValueError, match=rf"({'|'.join(wrong)}) must be"):
            synthetic_scenario(seed, n_reactions=n_reactions, **parameters)
        return
    scenario = synthetic_scenario(seed, n_reactions=n_reactions, **parameters)
    from mfllm_env.synthetic import SyntheticResponse

    # The ground truth plays (as the env's transition) without NaN probabilities.
    response = SyntheticResponse(scenario)
    env = PopulationEnv(scenario, action_mode="label", warmup=0, response=response)
    env.reset(seed=0)
    while env.agents:
        env.step({})
    assert env.stats["invalid_action"] == 0


follower_values = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.booleans(),
)


@settings(max_examples=60)
@given(followers=st.lists(follower_values, min_size=1, max_size=12))
def test_reaction_lists_take_any_follower_count(followers):
    reactions = [
        Reaction(
            f"r{i}",
            Author(f"u{i}", {"name": f"u{i}", "followers": f}),
            f"post {i}",
            float(i),
            "src",
            labels={"stance": "comment"},
        )
        for i, f in enumerate(followers)
    ]
    source = Reaction("src", Author("src"), "Event", -1.0)
    scenario = Scenario("followers", source, reactions)
    for model in (PopularReactions(k=3), RecentReactions(k=3)):
        env = PopulationEnv(scenario, action_mode="label", agents_per_step=4, mean_field=model)
        env.reset(seed=0)
        while env.agents:
            env.step(dict.fromkeys(env.agents, 1))
        assert env.mean_field.text.startswith("- u")
