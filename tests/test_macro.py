"""The macro-economy family: API conformance of Macro-v0 and MacroPlanner-v0, seeded
determinism, the economy's equations and accounting identities, fiscal policies, the
text codec and its fallbacks, bad inputs, and the baselines played to the end."""

from __future__ import annotations

import doctest
import math
import pickle

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

import mfllm_env  # noqa: F401  (registers the ids)
from mfllm_env.games.macro import (
    FALLBACK_ACTION,
    FREE_MARKET_ACTION,
    GOVERNMENT,
    GOVERNMENTS,
    MEAN_FIELD_FIELDS,
    US_FEDERAL_2022,
    BracketPolicy,
    Economy,
    EconomyParameters,
    HouseholdTextCodec,
    HSVPolicy,
    MacroEnv,
    MacroMeanField,
    MacroPlannerEnv,
    Population,
    RuleHouseholds,
    gini,
    saez_brackets,
)
from mfllm_env.games.macro import envs as envs_module
from mfllm_env.games.macro.economy import HOURS_PER_SHARE
from mfllm_env.games.macro.fiscal import hsv_tax

STAT = {name: i for i, name in enumerate(MEAN_FIELD_FIELDS)}


def _play(env, households=None, years=None):
    """Play rule households (or ``households``) until the end or ``years`` steps; returns
    the last step's output."""
    households = households or RuleHouseholds()
    observations, _ = env.reset(seed=0)
    result = None
    while env.agents and (years is None or env.stats["years"] < years):
        result = env.step(households.act(observations))
        observations = result[0]
    return result


# -- 1. PettingZoo API -----------------------------------------------------------------------


@pytest.mark.parametrize("action_mode", ["box", "text"])
def test_macro_passes_the_parallel_and_aec_api_tests(action_mode):
    env = pettingzoo.make("parallel", "mfllm/Macro-v0", n_households=10, action_mode=action_mode)
    parallel_api_test(env, num_cycles=40)
    api_test(parallel_to_aec(MacroEnv(10, action_mode=action_mode)), num_cycles=5)


def test_macro_planner_passes_the_parallel_and_aec_api_tests():
    env = pettingzoo.make("parallel", "mfllm/MacroPlanner-v0", n_households=10)
    parallel_api_test(env, num_cycles=40)
    api_test(parallel_to_aec(MacroPlannerEnv(10)), num_cycles=5)


def test_module_docstring_example_runs():
    result = doctest.testmod(envs_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_observations_and_spaces():
    env = MacroEnv(20)
    observations, _ = env.reset(seed=0)
    assert env.agents == [f"household_{i:02d}" for i in range(20)]
    first = observations["household_00"]
    assert all(env.observation_space(agent).contains(obs) for agent, obs in observations.items())
    assert first["mean_field_text"].startswith("Year 0. Wage ")
    assert first["mean_field"][STAT["year"]] == 0 and first["policy"][-1] == 0.065
    # One shared, read-only policy and mean field; each household its own state.
    assert first["mean_field"] is observations["household_19"]["mean_field"]
    with pytest.raises(ValueError):
        first["policy"][0] = 1.0
    assert not np.array_equal(first["household"], observations["household_19"]["household"])
    observations, *_ = env.step(RuleHouseholds().act(observations))
    assert observations["household_00"]["mean_field_text"].startswith("Year 1. ")


# -- 2. Determinism --------------------------------------------------------------------------


def _trajectory_bytes(env, seed: int, steps: int, leader: bool = False) -> bytes:
    observations, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    record = [observations]
    for _ in range(steps):
        if not env.agents:  # a random government can break the economy early
            break
        actions = {agent: rng.uniform(0.001, 0.99, 5 if leader else 2) for agent in env.agents}
        record.append(env.step(actions)[:2])
    return pickle.dumps(record)


@pytest.mark.parametrize("make", [lambda: MacroEnv(30), lambda: MacroPlannerEnv(30)])
def test_same_seed_same_bytes(make):
    leader = isinstance(make(), MacroPlannerEnv)
    first = _trajectory_bytes(make(), 7, 12, leader)
    assert first == _trajectory_bytes(make(), 7, 12, leader)
    assert first != _trajectory_bytes(make(), 8, 12, leader)


# -- 3. The economy's equations and invariants -----------------------------------------------


def test_one_year_by_hand_at_two_households():
    # No ability shocks (sigma 0, rho 0: every ability is the calibrated mean), a flat
    # 10% income tax, a 1% flat wealth tax, spending 5% of output.
    p = EconomyParameters(ability_sigma=0.0, ability_rho=0.0, superstar_entry=0.0)
    rng = np.random.default_rng(0)
    economy = Economy(p)
    economy.start(Population(np.array([1.0, 3.0]), np.array([1.0, 3.0])), rng)
    policy = HSVPolicy(tau=0.1, xi=0.0, tau_a=0.01, xi_a=0.0, spending_share=0.05)
    saving, labour = np.array([0.2, 0.5]), np.array([0.25, 0.75])
    year = economy.advance(saving, labour, policy, rng)

    gdp0 = 69_919.5 * 2
    k, b = 0.183 * gdp0, 1.2129 * gdp0
    a = np.array([0.25, 0.75]) * (k + b)
    e = 849.24 / (3893.3333333333335 / 3)
    hours = labour * 365 * 24 * 4 / 9
    big_l = e * hours.sum()
    wage = 10 * (1 - 0.7445) * (k / big_l) ** 0.7445
    y = 10 * k**0.7445 * big_l**0.2555
    income = wage * e * hours + 0.04 * a
    c = (1 - saving) * 0.9 * income / 1.065
    next_a = 0.9 * income + 0.99 * a - 1.065 * c
    taxes = 0.1 * income.sum() + 0.01 * a.sum() + 0.065 * c.sum()
    assert year.wage == pytest.approx(wage, rel=1e-12)
    assert year.output == pytest.approx(y, rel=1e-12)
    assert year.consumption == pytest.approx(c, rel=1e-12)
    assert year.next_wealth == pytest.approx(next_a, rel=1e-12)
    assert year.next_debt == pytest.approx(1.04 * b + 0.05 * y - taxes, rel=1e-12)
    assert year.next_capital == pytest.approx(
        1.04 * (k - a.sum()) - 0.05 * y + taxes + next_a.sum(), rel=1e-12
    )
    reward = 1 / (1 + np.exp(-(np.log(c / 1000) - 10 * labour**3 / 3)))
    assert year.rewards == pytest.approx(reward, rel=1e-12)
    assert not year.overconsumption and year.ended is None


@pytest.mark.parametrize("n", [10, 100, 1000])
@pytest.mark.parametrize("government", sorted(GOVERNMENTS))
def test_accounting_identities_hold_every_year(n, government):
    env = MacroEnv(n, government=government)
    observations, _ = env.reset(seed=n)
    game = env.game
    rng = np.random.default_rng(0)
    r = game.parameters.interest_rate
    for _ in range(30):
        actions = {agent: rng.uniform(0.05, 0.9, 2) for agent in env.agents}
        observations, rewards, *_ = env.step(actions)
        year = game.last_year
        # Households own the capital and the government's debt: K + B = sum(a).
        assert year.next_capital + year.next_debt == pytest.approx(year.next_wealth.sum(), rel=1e-9)
        # The budget: debt grows by interest and spending, shrinks by every tax.
        taxes = year.income_tax.sum() + year.wealth_tax.sum() + 0.065 * year.consumption.sum()
        assert year.next_debt - (1 + r) * year.debt - year.spending == pytest.approx(
            -taxes, rel=1e-9, abs=1e-6 * abs(year.debt)
        )
        # A household keeps what it earned after tax, less what it consumed and taxes.
        saved = year.saving * (year.income - year.income_tax)
        assert year.next_wealth == pytest.approx(year.wealth - year.wealth_tax + saved, rel=1e-9)
        assert year.consumption.sum() + year.spending <= year.output
        assert year.next_capital >= 0 and (year.next_wealth >= 0).all()
        assert all(0 < value < 1 for value in rewards.values())
        stats = observations[env.agents[0]]["mean_field"]
        quantiles = [stats[STAT[f"wealth_p{q}"]] for q in (10, 50, 90, 99)]
        assert quantiles == sorted(quantiles)
        assert 0 <= stats[STAT["income_gini"]] < 1 and 0 <= stats[STAT["wealth_gini"]] < 1


def test_starting_state_is_calibrated():
    env = MacroEnv(1000)
    env.reset(seed=0)
    economy = env.game.economy
    gdp0 = 69_919.5 * 1000
    assert economy.capital == pytest.approx(0.183 * gdp0)
    assert economy.debt == pytest.approx(1.2129 * gdp0)
    assert economy.wealth.sum() == pytest.approx(economy.capital + economy.debt)
    third = np.full(1000, 1 / 3)
    assert economy.ability @ (HOURS_PER_SHARE * third) == pytest.approx(849.24 * 1000, rel=0.02)
    assert gini(economy.wealth) == pytest.approx(0.85, abs=0.05)


def test_overconsumption_ends_the_episode():
    env = MacroEnv(10, government=HSVPolicy(0.0, 0.0, 0.0, 0.0, spending_share=1.0))
    env.reset(seed=0)
    _, _, terminations, truncations, infos = env.step(
        dict.fromkeys(env.agents, np.array([0.001, 0.5]))
    )
    year = env.game.last_year
    assert year.overconsumption and env.agents == []
    assert year.consumption.sum() + year.spending == pytest.approx(year.output)
    assert all(terminations.values()) and not any(truncations.values())
    assert {info["ended"] for info in infos.values()} == {"overconsumption"}


def test_superstars_appear_and_leave_within_the_normal_range():
    p = EconomyParameters(superstar_entry=0.3, superstar_stay=0.5)
    rng = np.random.default_rng(0)
    economy = Economy(p)
    economy.start(Population(np.ones(200), np.ones(200)), rng)
    was_star = economy.superstar.copy()
    for _ in range(5):
        before = economy.superstar.copy()
        economy.advance(np.full(200, 0.3), np.full(200, 0.3), GOVERNMENTS["free_market"](None), rng)
        left = before & ~economy.superstar
        normal = np.exp(economy.log_ability[~economy.superstar])
        if left.any():
            assert (np.exp(economy.log_ability[left]) <= normal.max() + 1e-9).all()
        was_star |= economy.superstar
    stars = economy.ability[economy.superstar]
    assert was_star.sum() > 20
    assert stars == pytest.approx(504.3 * np.exp(economy.log_ability[~economy.superstar]).mean())


# -- 4. Fiscal policies ----------------------------------------------------------------------


def test_gini_of_known_distributions():
    assert gini(np.ones(4)) == 0.0
    assert gini(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)
    assert gini(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.25)
    assert gini(np.zeros(5)) == 0.0


def test_hsv_and_bracket_taxes():
    x = np.array([0.0, 1_000.0, 50_000.0])
    assert hsv_tax(x, 0.2, 0.0) == pytest.approx(0.2 * x)
    assert hsv_tax(x, 0.0, 0.0) == pytest.approx(0.0)
    free = HSVPolicy.from_action(FREE_MARKET_ACTION)
    assert (free.tau, free.xi, free.spending_share) == pytest.approx((0.0002, 0.00005, 0.0003))
    assert 0 < free.income_tax(np.array([50_000.0]))[0] / 50_000 < 0.001
    # US 2022: 50,000 of income, 37,050 taxable: 10% of 10,275 and 12% of the rest.
    tax = US_FEDERAL_2022.income_tax(np.array([10_000.0, 50_000.0, 1e6]))
    assert tax[:2] == pytest.approx([0.0, 1_027.5 + 0.12 * (37_050 - 10_275)])
    assert tax[2] == pytest.approx(
        1_027.5
        + 0.12 * 31_500
        + 0.22 * 47_300
        + 0.24 * 80_975
        + 0.32 * 45_900
        + 0.35 * 323_950
        + 0.37 * (1e6 - 12_950 - 539_900)
    )
    assert US_FEDERAL_2022.wealth_tax(np.array([1e9])).tolist() == [0.0]
    with pytest.raises(ValueError, match="5 numbers"):
        HSVPolicy.from_action([0.5] * 4)
    with pytest.raises(ValueError, match="increase"):
        BracketPolicy((0.0, 5.0, 5.0), (0.1, 0.2, 0.3))


def test_saez_brackets_follow_the_income_distribution():
    incomes = np.random.default_rng(0).lognormal(10, 1, 5000)
    policy = saez_brackets(incomes)
    assert len(policy.rates) == 5 and policy.rates[0] == 0.0
    assert policy.thresholds[1:] == pytest.approx(np.quantile(incomes, [0.2, 0.4, 0.6, 0.8]))
    assert all(0 <= rate < 1 for rate in policy.rates)
    assert all(rate > 0 for rate in policy.rates[1:])
    # The top bracket by hand: Pareto parameter m / (m - z), welfare weights 1 / income.
    z = policy.thresholds[-1]
    above = incomes[incomes >= z]
    pareto = above.mean() / (above.mean() - z)
    welfare = np.mean(1 / above) / np.mean(1 / incomes)
    assert policy.rates[-1] == pytest.approx((1 - welfare) / (1 - welfare + 0.5 * pareto))
    with pytest.raises(ValueError, match="incomes"):
        saez_brackets(np.array([1.0, 0.0, 2.0, 3.0, 4.0]))


# -- 5. Text mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "saving", "hours_a_year"),
    [
        ("I will work about 40 hours a week and save a fifth of my income", 0.2, 40 * 52),
        ("Work forty-five hours, save 20%.", 0.2, 45 * 52),
        ("save half, part-time", 0.5, 20 * 52),
        ("I spend 70% and work 8 hours a day", 0.3, 8 * 260),
        ("saving rate of 0.25, labour share 0.5", 0.25, 0.5 * HOURS_PER_SHARE),
        ("Save two thirds; 2,000 hours per year", 2 / 3, 2000),
        ("I will work 50% of the time and save about 10 percent", 0.1, 0.5 * HOURS_PER_SHARE),
        ("I don't work and save nothing", 0.001, 0.001 * HOURS_PER_SHARE),
        ("spend everything, overtime", 0.001, 50 * 52),
    ],
)
def test_text_codec_reads_replies(text, saving, hours_a_year):
    decoded = HouseholdTextCodec().decode_texts([text])
    assert decoded.fallbacks == [()]
    assert decoded.actions[0] == pytest.approx([saving, hours_a_year / HOURS_PER_SHARE])


def test_text_codec_falls_back_on_what_it_cannot_read():
    decoded = HouseholdTextCodec().decode_texts(["hello", "work 40 hours", "save 30%"])
    assert decoded.fallbacks == [("saving", "labour"), ("saving",), ("labour",)]
    assert decoded.actions[0].tolist() == list(FALLBACK_ACTION)
    assert decoded.actions[1, 0] == FALLBACK_ACTION[0]
    assert decoded.actions[2, 1] == FALLBACK_ACTION[1]
    # Beyond the box: clipped to it.
    assert HouseholdTextCodec().decode_texts(["work 100 hours a week"]).actions[0, 1] == 0.99


def test_text_mode_counts_fallbacks_and_invalid_actions():
    env = MacroEnv(10, action_mode="text")
    observations, _ = env.reset(seed=0)
    parts = HouseholdTextCodec().prompt_parts(observations["household_0"])
    assert set(parts) == {"state", "policy", "mean_field", "question"}
    assert parts["mean_field"] == observations["household_0"]["mean_field_text"]
    actions = dict.fromkeys(env.agents, "I work 40 hours a week and save a fifth")
    actions.update(household_0="no idea", household_1=3, household_2="save 10%")
    del actions["household_3"]
    _, _, _, _, infos = env.step(actions)
    assert infos["household_0"] == {"fallback": ("saving", "labour")}
    assert infos["household_1"] == {"invalid_action": True, "fallback": ("saving", "labour")}
    assert infos["household_2"] == {"fallback": ("labour",)}
    assert infos["household_3"]["invalid_action"] and infos["household_4"] == {}
    assert env.stats["fallback"] == 2 and env.stats["invalid_action"] == 2
    year = env.game.last_year
    assert year.saving[:5] == pytest.approx([0.3, 0.3, 0.1, 0.3, 0.2])


# -- 6. Bad input ------------------------------------------------------------------------------


def test_bad_box_actions_are_clipped_or_fall_back_counted():
    env = MacroEnv(10)
    env.reset(seed=0)
    good = np.array([0.3, 0.4])
    actions = dict.fromkeys(env.agents, good)
    actions.update(
        household_0=np.array([np.nan, 0.5]),
        household_1=np.array([2.0, -1.0]),
        household_2="0.3 0.4",
        household_3=np.array([True, False]),
        household_4=np.array([0.1, 0.2, 0.3]),
        household_5=[0.5, 0.6],
    )
    del actions["household_6"]
    _, rewards, _, _, infos = env.step(actions)
    invalid = [f"household_{i}" for i in (0, 2, 3, 4, 6)]
    assert all(infos[agent] == {"invalid_action": True} for agent in invalid)
    assert infos["household_1"] == {"clipped_action": True}
    assert infos["household_5"] == infos["household_7"] == {}
    assert env.stats["invalid_action"] == 5 and env.stats["clipped_action"] == 1
    year = env.game.last_year
    assert year.saving[:8].tolist() == [0.3, 0.99, 0.3, 0.3, 0.3, 0.5, 0.3, 0.3]
    assert year.labour[:2].tolist() == [1 / 3, 0.001]
    assert all(math.isfinite(value) for value in rewards.values())


def test_a_wrong_call_raises_and_the_env_keeps_working():
    env = MacroEnv(10)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step({})
    observations, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="'household_99'"):
        env.step({"household_99": np.array([0.3, 0.3])})
    with pytest.raises(TypeError, match="mapping"):
        env.step(None)  # type: ignore[arg-type]
    assert env.game.economy.year == 0
    env.step(RuleHouseholds().act(observations))
    assert env.game.economy.year == 1


def test_households_respond_to_the_policy_the_government_just_set():
    env = MacroPlannerEnv(50)
    env.reset(seed=0)
    env.step({GOVERNMENT: np.array([0.99, 0.001, 0.001, 0.001, 0.1])})
    year = env.followers_env.game.last_year
    # The rule households worked under the new income tax (about 19.8% at every income:
    # xi is nearly 0), not under the free market's, in force before the government moved.
    assert year.labour == pytest.approx(np.full(50, (1 - 0.198) ** 0.5 / 3), rel=1e-3)


def test_a_decision_of_several_years_sums_their_rewards():
    yearly = MacroPlannerEnv(20, leader_reward="social_welfare")
    yearly.reset(seed=3)
    welfare = [yearly.step({GOVERNMENT: np.full(5, 0.3)})[1][GOVERNMENT] for _ in range(4)]
    every_two = MacroPlannerEnv(20, leader_reward="social_welfare", every=2)
    every_two.reset(seed=3)
    for first in (0, 2):
        _, rewards, *_, infos = every_two.step({GOVERNMENT: np.full(5, 0.3)})
        assert rewards[GOVERNMENT] == pytest.approx(welfare[first] + welfare[first + 1])
    assert infos[GOVERNMENT]["year"] == 4


def test_leader_bad_actions_keep_or_clip_the_policy():
    env = MacroPlannerEnv(10)
    env.reset(seed=0)
    *_, infos = env.step({GOVERNMENT: np.full(5, 0.5)})
    assert infos[GOVERNMENT]["policy"] == pytest.approx([0.1, 0.025, 0.1, 0.025, 0.15])
    *_, infos = env.step({GOVERNMENT: np.array([np.nan, 0.5, 0.5, 0.5, 0.5])})
    assert infos[GOVERNMENT]["invalid_action"]
    assert infos[GOVERNMENT]["policy"] == pytest.approx([0.1, 0.025, 0.1, 0.025, 0.15])
    *_, infos = env.step({})
    assert infos[GOVERNMENT]["invalid_action"]
    *_, infos = env.step({GOVERNMENT: np.array([5.0, 0.0, 0.5, 0.5, 0.5])})
    assert infos[GOVERNMENT]["clipped_action"]
    assert infos[GOVERNMENT]["policy"][:2] == pytest.approx([0.2 * 0.99, 0.05 * 0.001])
    stats = env.followers_env.stats
    assert stats["leader_invalid_action"] == 2 and stats["leader_clipped_action"] == 1
    with pytest.raises(ValueError, match="do not act"):
        env.step({"household_0": np.zeros(5)})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_households": 5}, ValueError, "n_households"),
        ({"action_mode": "discrete"}, ValueError, "action_mode"),
        ({"government": "tax everyone"}, ValueError, "government"),
        ({"government": object()}, TypeError, "FiscalPolicy"),
        ({"leader_reward": "happiness"}, ValueError, "leader_reward"),
        ({"population": 3}, TypeError, "population"),
        ({"mean_field": object()}, TypeError, "mean_field"),
        ({"parameters": {"alpha": 0.5}}, TypeError, "EconomyParameters"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        MacroEnv(**{"n_households": 10, **kwargs})


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        EconomyParameters(alpha=1.5)
    with pytest.raises(ValueError, match="years"):
        EconomyParameters(years=0)
    with pytest.raises(TypeError, match="government"):
        MacroPlannerEnv(10, government="saez")


def test_a_population_csv_is_sampled_and_checked(tmp_path):
    path = tmp_path / "households.csv"
    path.write_text("wealth,ability,income\n1000,0.5,20000\n3000,1.5,50000\n")
    env = MacroEnv(10, population=path)
    env.reset(seed=0)
    wealth = env.game.economy.wealth
    assert set(np.round(wealth / wealth.min(), 9).tolist()) <= {1.0, 3.0}
    for text, match in [
        ("wealth,income\n1,2\n", "ability"),
        ("wealth,ability\n-1,1\n", "line 2: wealth must be finite and >= 0"),
        ("wealth,ability\n1,zero\n", "line 2: ability 'zero' is not a number"),
        ("wealth,ability\n", "no households"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            MacroEnv(10, population=path)
    with pytest.raises(ValueError, match="cannot read"):
        MacroEnv(10, population=tmp_path / "missing.csv")


def test_a_mean_field_model_is_used_and_checked():
    class Terse:
        def reset(self, batch):
            return MacroMeanField("start", batch.statistics)

        def update(self, batch):
            assert batch.saving is not None and batch.income.shape == (10,)
            return MacroMeanField(
                f"median wealth {batch.statistics[STAT['wealth_p50']]:.0f}", batch.statistics
            )

    env = MacroEnv(10, mean_field=Terse())
    observations, _ = env.reset(seed=0)
    assert observations["household_0"]["mean_field_text"] == "start"
    observations, *_ = env.step(RuleHouseholds().act(observations))
    assert observations["household_0"]["mean_field_text"].startswith("median wealth ")

    class Broken(Terse):
        def update(self, batch):
            return "a text only"

    env = MacroEnv(10, mean_field=Broken())
    observations, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"mean_field\.update"):
        env.step(RuleHouseholds().act(observations))


# -- 7. Baselines to the end -------------------------------------------------------------------


@pytest.mark.parametrize("government", sorted(GOVERNMENTS))
def test_baseline_governments_with_rule_households_run_to_the_end(government):
    env = MacroEnv(100, government=government)
    _, rewards, terminations, truncations, _ = _play(env)
    assert env.agents == [] and env.stats["years"] == 300
    assert all(truncations.values()) and not any(terminations.values())
    assert env.stats["invalid_action"] == env.stats["clipped_action"] == 0
    assert all(0 < value <= 1 for value in rewards.values())


@pytest.mark.parametrize("leader_reward", ["gdp", "gini", "social_welfare", "gdp_gini"])
def test_the_free_market_government_plays_a_whole_episode(leader_reward):
    env = MacroPlannerEnv(30, leader_reward=leader_reward)
    observations, _ = env.reset(seed=0)
    groups = observations[GOVERNMENT]["groups"]
    assert groups[0] > groups[3] and groups[1] > groups[4]  # top 10% above bottom 50%
    decisions = 0
    while env.agents:
        observations, rewards, terminations, truncations, infos = env.step(
            {GOVERNMENT: FREE_MARKET_ACTION}
        )
        decisions += 1
        assert math.isfinite(rewards[GOVERNMENT])
    assert decisions == 300 and truncations[GOVERNMENT] and not terminations[GOVERNMENT]
    if leader_reward == "social_welfare":
        assert 0 < rewards[GOVERNMENT] <= 30
    assert infos[GOVERNMENT]["ended"] is None


def test_rule_households_respond_to_the_income_tax():
    rule = RuleHouseholds()
    low = rule.act({"h": {"policy": np.array([0.0, 0, 0, 0, 0, 0.065])}})["h"]
    high = rule.act({"h": {"policy": np.array([0.36, 0, 0, 0, 0, 0.065])}})["h"]
    assert low.tolist() == pytest.approx([0.3, 1 / 3])
    assert high[1] == pytest.approx(0.8 / 3)
    with pytest.raises(ValueError, match="saving_share"):
        RuleHouseholds(saving_share=1.5)
