"""The Bewley-Aiyagari economy of the macro family, vectorised over households.

Equations (one step is one year; arrays hold one entry per household, money in 2022 US
dollars):

1. Abilities move: normal log-ability follows ``x' = rho x + (1 - rho) mu + sigma eps``;
   a household becomes a superstar with probability ``2.2e-6`` a year and stays one with
   probability 0.99; a superstar's ability is ``504.3`` times the mean normal ability; one
   that leaves draws a normal ability uniformly between the current min and max.
2. ``hours = 3893.3 h`` (a year's ``365 * 24 * 2/3 * 2/3`` hours times the labour share
   ``h``); labour ``L = sum(e * hours)``; wage ``W = A (1 - alpha) (K / L) ** alpha``;
   output ``Y = A K ** alpha L ** (1 - alpha)``; spending ``G = (G / Y) Y``.
3. Income ``i = W e hours + r a``.
4. Taxes: income ``T_i = T(i)`` and wealth ``T_a = T(a)`` of the fiscal policy.
5. Consumption ``c = (1 - p) (i - T_i) / (1 + tau_c)`` (``p``: saving share). If
   ``sum(c) + G > Y`` the episode ends and ``c`` is scaled by ``(Y - G) / sum(c)``.
6. ``a' = (i - T_i) + (a - T_a) - c (1 + tau_c)``; ``B' = (1 + r) B + G - taxes``;
   ``K' = (1 + r) (K - sum(a)) - G + taxes + sum(a')`` (taxes: income, wealth and
   consumption taxes). Since ``K0 + B0 = sum(a0)``, ``K + B = sum(a)`` every year.
7. Income and wealth Gini on after-tax income ``i - T_i`` and next wealth ``a'``.

Household reward: ``sigmoid(log(c / 1000) - 10 h ** 3 / 3)``. The year ends the episode
on ``sum(c) + G > Y``, on a Gini >= 1, on a value that is not finite, on negative wealth or
on negative capital.

Starting state: ``K0 = 0.183 GDP0 N`` and ``B0 = 1.2129 GDP0 N`` (``GDP0 = 69,919.5``, 2022
US, per household); wealth is scaled so that ``sum(a0) = K0 + B0`` and normal ability so
that households working a third of their time supply ``L0 = 849.24 N``. The synthetic
population (:func:`synthetic_population`) draws log-normal normal abilities from the
ability process's stationary law and log-normal wealth (log-sd 2.04: a wealth Gini of
0.85) correlated 0.5 with log-ability; :func:`csv_population` samples rows of a user's
CSV instead.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from mfllm_env.checks import check_count, check_number
from mfllm_env.games.macro.fiscal import FiscalPolicy

HOURS_PER_SHARE = 365 * 24 * (2 / 3) * (2 / 3)
"""Hours worked in a year at labour share 1: 3893.3."""
REFERENCE_LABOUR_SHARE = 1 / 3
"""The labour share at which households supply ``L0``: the calibration point."""


@dataclass(frozen=True, slots=True)
class EconomyParameters:
    """The paper's defaults (see the module docstring for where each enters)."""

    alpha: float = 0.7445
    productivity: float = 10.0
    interest_rate: float = 0.04
    consumption_tax: float = 0.065
    ability_rho: float = 0.982
    ability_sigma: float = 0.2
    superstar_entry: float = 2.2e-6
    superstar_stay: float = 0.99
    superstar_multiple: float = 504.3
    gdp0: float = 69_919.5
    debt_to_gdp0: float = 1.2129
    capital_to_gdp0: float = 0.183
    labour0: float = 849.24
    years: int = 300

    def __post_init__(self) -> None:
        check_number("alpha", self.alpha, 0.0, exclusive=True, maximum=0.999)
        for name in ("productivity", "gdp0", "labour0"):
            check_number(name, getattr(self, name), 0.0, exclusive=True)
        for name in ("interest_rate", "consumption_tax", "ability_sigma"):
            check_number(name, getattr(self, name), 0.0, maximum=10.0)
        for name in ("ability_rho", "superstar_entry", "superstar_stay"):
            check_number(name, getattr(self, name), 0.0, maximum=0.999999)
        for name in ("superstar_multiple", "debt_to_gdp0", "capital_to_gdp0"):
            check_number(name, getattr(self, name), 0.0, exclusive=True)
        check_count("years", self.years, 1)

    @property
    def mean_ability(self) -> float:
        """Mean normal ability that makes ``L = L0`` at a third of the time worked."""
        return self.labour0 / (HOURS_PER_SHARE * REFERENCE_LABOUR_SHARE)

    @property
    def log_ability_variance(self) -> float:
        """Variance of the log-ability process's stationary law."""
        return self.ability_sigma**2 / (1.0 - self.ability_rho**2)


@dataclass(frozen=True, slots=True)
class Population:
    """Initial households: normal ``ability`` (> 0) and ``wealth`` (>= 0), dollars."""

    ability: np.ndarray
    wealth: np.ndarray

    def __post_init__(self) -> None:
        if self.ability.shape != self.wealth.shape or self.ability.ndim != 1:
            raise ValueError("a population needs one ability and one wealth per household")
        if not (np.isfinite(self.ability).all() and (self.ability > 0).all()):
            raise ValueError("abilities must be finite and > 0")
        if not (np.isfinite(self.wealth).all() and (self.wealth >= 0).all()):
            raise ValueError("wealth must be finite and >= 0")
        if not self.wealth.sum() > 0:
            raise ValueError("the population's total wealth must be > 0")


WEALTH_LOG_SD = 2.04
"""Log-sd of the synthetic wealth: a log-normal's Gini ``2 Phi(s / sqrt(2)) - 1`` is 0.85."""
WEALTH_ABILITY_CORRELATION = 0.5
"""Correlation of log-wealth and log-ability in the synthetic population."""


def synthetic_population(
    n: int, rng: np.random.Generator, parameters: EconomyParameters
) -> Population:
    """``n`` households: log-abilities from the ability process's stationary law, wealth
    log-normal (:data:`WEALTH_LOG_SD`) correlated :data:`WEALTH_ABILITY_CORRELATION` with
    log-ability; scaled later by :class:`Economy` (only shapes matter here)."""
    z = rng.standard_normal((2, n))
    rho = WEALTH_ABILITY_CORRELATION
    log_ability = math.sqrt(parameters.log_ability_variance) * z[0]
    log_wealth = WEALTH_LOG_SD * (rho * z[0] + math.sqrt(1 - rho**2) * z[1])
    return Population(np.exp(log_ability), np.exp(log_wealth))


def read_population_csv(path: str | Path) -> Population:
    """Every row of a CSV with a header naming ``wealth`` and ``ability`` columns (other
    columns, an ``income`` one say, are ignored: year 0's incomes follow from ability,
    hours and wealth). ``ValueError`` naming the file, row and column for a value that is
    not a number, wealth < 0 or ability <= 0."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read population file {path}: {error.strerror}") from error
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in ("wealth", "ability") if name not in columns]
        if missing:
            raise ValueError(f"{path}: the header must name {missing}; it has {columns}")
        wealth, ability = [], []
        for row_number, row in enumerate(reader, start=2):
            for name, values in (("wealth", wealth), ("ability", ability)):
                try:
                    value = float(row[name])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{path} line {row_number}: {name} {row[name]!r} is not a number"
                    ) from None
                bad = value < 0 if name == "wealth" else value <= 0
                if not math.isfinite(value) or bad:
                    sign = ">= 0" if name == "wealth" else "> 0"
                    raise ValueError(
                        f"{path} line {row_number}: {name} must be finite and {sign}, "
                        f"got {row[name]!r}"
                    )
                values.append(value)
    if not wealth:
        raise ValueError(f"{path}: no households")
    try:
        return Population(np.asarray(ability), np.asarray(wealth))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def csv_population(table: Population, n: int, rng: np.random.Generator) -> Population:
    """``n`` rows of ``table`` sampled with replacement (the paper samples survey rows)."""
    rows = rng.integers(0, table.wealth.size, size=n)
    return Population(table.ability[rows], table.wealth[rows])


def gini(values: np.ndarray) -> float:
    """Gini coefficient of ``values`` (0 for all-zero values); from the sorted values,
    ``sum((2i - n - 1) x_(i)) / (n sum x)`` with ``i = 1..n``."""
    x = np.sort(values)
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    ranks = np.arange(1 - n, n + 1, 2, dtype=np.float64)
    return float(ranks @ x / (n * total))


@dataclass(slots=True)
class Year:
    """One year's accounts (arrays per household), as :meth:`Economy.advance` made them."""

    saving: np.ndarray
    labour: np.ndarray
    hours: np.ndarray
    ability: np.ndarray
    wealth: np.ndarray
    income: np.ndarray
    income_tax: np.ndarray
    wealth_tax: np.ndarray
    consumption: np.ndarray
    next_wealth: np.ndarray
    rewards: np.ndarray
    labour_supply: float
    wage: float
    output: float
    spending: float
    taxes: float
    capital: float
    next_capital: float
    debt: float
    next_debt: float
    overconsumption: bool
    income_gini: float
    wealth_gini: float
    ended: str | None = None
    """Why the year ended the episode (``None``: it did not)."""


@dataclass(slots=True)
class Economy:
    """The economy's state and its year (the module docstring's equations)."""

    parameters: EconomyParameters = field(default_factory=EconomyParameters)
    log_ability: np.ndarray = field(default_factory=lambda: np.zeros(0))
    superstar: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    wealth: np.ndarray = field(default_factory=lambda: np.zeros(0))
    capital: float = 0.0
    debt: float = 0.0
    year: int = 0

    def start(self, population: Population, rng: np.random.Generator) -> None:
        """Year 0 from ``population``: wealth and normal ability rescaled to the
        calibration (module docstring); superstars drawn at their stationary share."""
        p = self.parameters
        n = population.wealth.size
        total = p.gdp0 * n
        self.capital = p.capital_to_gdp0 * total
        self.debt = p.debt_to_gdp0 * total
        self.wealth = population.wealth * ((self.capital + self.debt) / population.wealth.sum())
        ability = population.ability * (p.mean_ability / population.ability.mean())
        self.log_ability = np.log(ability)
        share = p.superstar_entry / (p.superstar_entry + 1.0 - p.superstar_stay)
        self.superstar = rng.random(n) < share
        self.year = 0

    @property
    def ability(self) -> np.ndarray:
        """Effective abilities: a superstar's is a multiple of the mean normal ability."""
        normal = np.exp(self.log_ability)
        if not self.superstar.any():
            return normal
        mean_normal = normal[~self.superstar].mean() if not self.superstar.all() else 1.0
        return np.where(self.superstar, self.parameters.superstar_multiple * mean_normal, normal)

    def _move_abilities(self, rng: np.random.Generator) -> None:
        """Step 1. Every year draws the same three arrays, whatever the state, so that the
        stream of random numbers never depends on the households' choices."""
        p = self.parameters
        n = self.wealth.size
        eps, u_switch, u_draw = rng.standard_normal(n), rng.random(n), rng.random(n)
        mu = math.log(p.mean_ability) - p.log_ability_variance / 2
        x = p.ability_rho * self.log_ability + (1.0 - p.ability_rho) * mu + p.ability_sigma * eps
        star = self.superstar
        enters = ~star & (u_switch < p.superstar_entry)
        leaves = star & (u_switch >= p.superstar_stay)
        if leaves.any():
            normal = x[~star] if not star.all() else x
            low, high = np.exp(normal.min()), np.exp(normal.max())
            x = np.where(leaves, np.log(low + (high - low) * u_draw), x)
        self.log_ability = x
        self.superstar = (star & ~leaves) | enters

    def incomes(self, labour: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float]:
        """``(ability, income, L, W, Y)`` at labour shares ``labour`` (steps 2-3)."""
        p = self.parameters
        ability = self.ability
        hours = HOURS_PER_SHARE * labour
        labour_supply = float(ability @ hours)
        ratio = self.capital / labour_supply
        wage = p.productivity * (1.0 - p.alpha) * ratio**p.alpha
        output = p.productivity * self.capital**p.alpha * labour_supply ** (1.0 - p.alpha)
        income = wage * ability * hours + p.interest_rate * self.wealth
        return ability, income, labour_supply, wage, output

    def advance(
        self,
        saving: np.ndarray,
        labour: np.ndarray,
        policy: FiscalPolicy,
        rng: np.random.Generator,
    ) -> Year:
        """One year (steps 1-7) at saving shares ``saving`` and labour shares ``labour``
        (arrays in ``[0.001, 0.99]``, one per household); the state moves to next year."""
        p = self.parameters
        self._move_abilities(rng)
        ability, income, labour_supply, wage, output = self.incomes(labour)
        spending = policy.spending_share * output
        wealth = self.wealth
        income_tax = policy.income_tax(income)
        wealth_tax = policy.wealth_tax(wealth)
        after_tax = income - income_tax
        consumption = (1.0 - saving) * after_tax / (1.0 + p.consumption_tax)
        total_consumption = float(consumption.sum())
        overconsumption = total_consumption + spending > output
        if overconsumption:
            consumption = consumption * ((output - spending) / total_consumption)
            total_consumption = output - spending
        gross_consumption = consumption * (1.0 + p.consumption_tax)
        next_wealth = after_tax + (wealth - wealth_tax) - gross_consumption
        taxes = float(income_tax.sum() + wealth_tax.sum()) + p.consumption_tax * total_consumption
        r = p.interest_rate
        next_debt = (1.0 + r) * self.debt + spending - taxes
        next_capital = (1.0 + r) * (self.capital - float(wealth.sum())) - spending + taxes
        next_capital += float(next_wealth.sum())
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rewards = expit(np.log(consumption / 1000.0) - 10.0 * labour**3 / 3.0)
        year = Year(
            saving=saving,
            labour=labour,
            hours=HOURS_PER_SHARE * labour,
            ability=ability,
            wealth=wealth,
            income=income,
            income_tax=income_tax,
            wealth_tax=wealth_tax,
            consumption=consumption,
            next_wealth=next_wealth,
            rewards=rewards,
            labour_supply=labour_supply,
            wage=wage,
            output=output,
            spending=spending,
            taxes=taxes,
            capital=self.capital,
            next_capital=next_capital,
            debt=self.debt,
            next_debt=next_debt,
            overconsumption=overconsumption,
            income_gini=gini(after_tax),
            wealth_gini=gini(next_wealth),
        )
        year.ended = self._end_reason(year)
        self.wealth = next_wealth
        self.capital = next_capital
        self.debt = next_debt
        self.year += 1
        return year

    def _end_reason(self, year: Year) -> str | None:
        numbers = (year.next_capital, year.next_debt, year.output, year.wage)
        if not (
            all(math.isfinite(x) for x in numbers)
            and np.isfinite(year.next_wealth).all()
            and np.isfinite(year.rewards).all()
        ):
            return "not_finite"
        if year.overconsumption:
            return "overconsumption"
        if year.next_capital < 0:
            return "negative_capital"
        if (year.next_wealth < 0).any():
            return "negative_wealth"
        if max(year.income_gini, year.wealth_gini) >= 1:
            return "gini"
        return None
