"""The macro-economy environments: households (``mfllm/Macro-v0``) and their government
(``mfllm/MacroPlanner-v0``).

## Description
A Bewley-Aiyagari economy after the Stackelberg mean-field game of macroeconomic policy
(arXiv 2403.12093, built on the TaxAI simulator): ``n_households`` households choose how
much to save and work each year; a government taxes income and wealth and spends a share
of output. The equations, parameters and starting state are in
:mod:`mfllm_env.games.macro.economy`; everything is vectorised with numpy over households
and every random draw comes from the env's seeded generator (the same seed gives the same
bytes).

| Import            | ``pettingzoo.make("parallel", "mfllm/Macro-v0", n_households=100)``  |
|-------------------|------------------------------------------------------------------------|
| Agents            | ``household_000`` ... (``n_households``: 10 to 100,000), all act every  |
|                   | year                                                                   |
| Action space      | ``Box(0.001, 0.99, (2,), float64)``: (saving share, labour share), or  |
|                   | ``FreeText(max_action_length)`` (``action_mode="text"``)               |
| Observation space | ``Dict(household: Box(2), policy: Box(6), mean_field: Box(15),         |
|                   | mean_field_text: FreeText)``                                           |

| Import            | ``pettingzoo.make("parallel", "mfllm/MacroPlanner-v0", n_households=100)`` |
|-------------------|------------------------------------------------------------------------|
| Agents            | ``["government"]``                                                     |
| Action space      | ``Box(0.001, 0.99, (5,), float64)``: income tax ``tau = 0.2 a0``,      |
|                   | ``xi = 0.05 a1``, wealth tax ``tau_a = 0.2 a2``, ``xi_a = 0.05 a3``,   |
|                   | spending ``G / Y = 0.3 a4`` (HSV taxes)                                |
| Observation space | ``Dict(groups: Box(6), mean_field: Box(15), mean_field_text: FreeText)`` |

## Observation space
A household sees ``household``: its own (ability, wealth) -- the ability it had last year,
before this year's draw (step 1 of the economy moves abilities before anyone works);
``policy`` (:data:`~mfllm_env.games.macro.game.POLICY_FIELDS`): the average income-tax
rate at last year's median and 90th-percentile income, the average wealth-tax rate at the
median and 90th-percentile wealth, the spending share and the consumption tax; and the
mean field: ``mean_field`` (:data:`~mfllm_env.games.macro.mean_field.MEAN_FIELD_FIELDS`:
year, wage, interest, output per household, tax shares, income and wealth quantiles, both
Gini coefficients) and its ``mean_field_text`` (the mean-field model's text; by default a
sentence of the same numbers, :class:`~mfllm_env.games.macro.mean_field.StatisticsMeanField`).
Money is in 2022 dollars and not normalised: capital compounds, and output per household
can reach 1e11 in 300 years. The government sees the six group means
(:data:`~mfllm_env.games.macro.game.GROUP_FIELDS`: mean wealth, pre-tax income and ability
of the top 10% and of the bottom 50%) and the mean field; unlike the paper, not normalised.

## Action space
Households: (saving share ``p``, labour share ``h``); ``hours = 3893.3 h`` a year, and
``p`` is the share of after-tax income saved. In text mode a reply such as "I will work
about 40 hours a week and save a fifth" is parsed by
:class:`~mfllm_env.games.macro.text.HouseholdTextCodec`.

## Bad input: what raises, what is clipped, what falls back
The call is wrong, it raises and changes nothing: ``actions`` not a mapping
(``TypeError``), a key that is not an acting agent (``ValueError`` naming it), ``step``
before ``reset`` or after the end (``RuntimeError``), a seed other than ``None`` or an int
>= 0 (``ValueError``); constructor arguments are checked at once (``ValueError`` naming
the argument). An acting agent's action is wrong, it is answered and counted in
``env.stats`` and ``infos[agent]``:

* a finite number outside ``[0.001, 0.99]`` is **clipped** (``clipped_action``);
* a missing action, a wrong type (a string in ``Box`` mode, a bool array, ``None``) or
  shape, NaN or Inf is **invalid**: a household gets
  :data:`~mfllm_env.games.macro.text.FALLBACK_ACTION` (saving 0.3, labour 1/3), the
  government keeps the current policy (``invalid_action``; ``leader_invalid_action`` in
  ``stats``);
* text mode: a part of a reply the parser cannot read (saving, labour or both) is filled
  from ``FALLBACK_ACTION``, named in ``infos[agent]["fallback"]`` and counted
  (``stats["fallback"]``: replies with an unread part).

## Rewards
Household: ``sigmoid(log(c / 1000) - 10 h ** 3 / 3)``, in (0, 1). Government
(``leader_reward``): ``"gdp"`` (capital growth, percent), ``"gini"``, ``"social_welfare"``
or ``"gdp_gini"`` (:meth:`~mfllm_env.games.macro.game.MacroGame.settle`).

## Starting state
``reset(seed)`` draws the population (the synthetic one, or rows of ``population``, a CSV
path with ``wealth`` and ``ability`` columns) and abilities' superstar states. Year 0's
statistics assume every household works a third of its time under the starting policy.

## Episode end
Terminated when a year ends the economy (``infos[agent]["ended"]``: ``"overconsumption"``
when ``sum(c) + G > Y``, ``"negative_capital"``, ``"negative_wealth"``, ``"gini"``,
``"not_finite"``; a reward that is not finite is then reported as 0); truncated after
``parameters.years`` (300) years.

## Arguments
``MacroEnv``: ``n_households=100``, ``government="free_market"`` (or ``"saez"``,
``"us_federal_2022"``, or a :class:`~mfllm_env.games.macro.fiscal.FiscalPolicy`),
``action_mode="box"`` (or ``"text"``), ``population="synthetic"`` (or a CSV path),
``parameters=None`` (:class:`~mfllm_env.games.macro.economy.EconomyParameters`),
``mean_field=None``, ``max_text_length=2048``, ``max_action_length=1000``,
``render_mode=None`` (or ``"ansi"``). ``MacroPlannerEnv``: ``households=None`` (the frozen
follower policy, in the followers' action mode; default
:class:`~mfllm_env.games.macro.households.RuleHouseholds`), ``leader_reward="gdp"``,
``every=1`` (years per decision), and ``MacroEnv``'s arguments but ``government`` (the
policy starts as the free market until the first decision).

>>> import pettingzoo, mfllm_env
>>> from mfllm_env.games.macro import RuleHouseholds
>>> env = pettingzoo.make("parallel", "mfllm/Macro-v0", n_households=50, government="saez")
>>> observations, infos = env.reset(seed=0)
>>> households = RuleHouseholds()
>>> while env.agents:
...     observations, rewards, terminations, truncations, infos = env.step(
...         households.act(observations))
>>> env.stats["years"], env.unwrapped.statistics()["wealth_gini"] < 1
(300, True)

## Version history
* v0: initial release.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mfllm_env.core.env import GameEnv
from mfllm_env.core.leader import LeaderEnv
from mfllm_env.core.protocols import Policy
from mfllm_env.games.macro.game import MacroGame
from mfllm_env.games.macro.households import RuleHouseholds


class MacroEnv(GameEnv[dict[str, Any], Any]):
    """``mfllm/Macro-v0``: the households of the economy; see the module docstring."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/Macro-v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }
    game: MacroGame

    def __init__(
        self, n_households: int = 100, *, render_mode: str | None = None, **options: Any
    ) -> None:
        super().__init__(MacroGame(n_households, **options), render_mode=render_mode)


class MacroPlannerEnv(LeaderEnv):
    """``mfllm/MacroPlanner-v0``: the government over frozen households; see the module
    docstring."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/MacroPlanner-v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        n_households: int = 100,
        households: Policy | None = None,
        *,
        leader_reward: str = "gdp",
        every: int = 1,
        render_mode: str | None = None,
        **households_env_options: Any,
    ) -> None:
        if "government" in households_env_options:
            raise TypeError("MacroPlannerEnv's government is its agent; do not pass government=")
        super().__init__(
            MacroEnv(n_households, leader_reward=leader_reward, **households_env_options),
            RuleHouseholds() if households is None else households,
            every=every,
            render_mode=render_mode,
        )
