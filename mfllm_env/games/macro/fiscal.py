"""Fiscal policies of the macro-economy: who pays what, and how much the state spends.

A :class:`FiscalPolicy` maps a year's incomes and wealth (arrays, one entry per household,
in US dollars of 2022) to taxes, and says what share of output the government spends.
The consumption tax is a parameter of the economy
(:class:`~mfllm_env.games.macro.economy.EconomyParameters`), not of the policy.

* :class:`HSVPolicy`: the Heathcote-Storesletten-Violante form ``T(x) = x - (1 - tau) /
  (1 - xi) * x ** (1 - xi)`` on income and on wealth; the leader's ``Box(5)`` action
  (:meth:`HSVPolicy.from_action`) is one.
* :class:`BracketPolicy`: marginal rates over brackets on income above an allowance (no
  wealth tax): the Saez-style and US federal 2022 baselines.

The baseline governments (:data:`GOVERNMENTS`), by name:

* ``"free_market"``: the leader's smallest action, 0.001 on all five numbers -- income
  tax ``tau = 0.0002, xi = 0.00005`` and the same on wealth (about 0.07% of a 50,000
  income or wealth), spending 0.03% of output; the economy's 6.5% consumption tax stays.
* ``"saez"``: five income brackets starting at the year-0 income quintiles, each bracket's
  marginal rate from Saez's formula ``(1 - g) / (1 - g + a * e)`` (:func:`saez_brackets`).
* ``"us_federal_2022"``: the 2022 federal brackets 10/12/22/24/32/35/37% from 0 / 10,275 /
  41,775 / 89,075 / 170,050 / 215,950 / 539,900 dollars of income above the 12,950
  standard allowance (single filer).

Both bracket baselines tax income only and spend :data:`BASELINE_SPENDING_SHARE` of output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from mfllm_env.checks import check_number

ACTION_LOW = 0.001
ACTION_HIGH = 0.99
"""The bounds of every share in the economy: the leader's five numbers and the
households' saving and labour shares."""
TAU_MAX = 0.2
XI_MAX = 0.05
SPENDING_MAX = 0.3
"""The leader's action ``a`` in ``[0.001, 0.99]^5`` scales to ``tau = 0.2 a0``,
``xi = 0.05 a1``, ``tau_a = 0.2 a2``, ``xi_a = 0.05 a3`` and ``G / Y = 0.3 a4``."""
BASELINE_SPENDING_SHARE = 0.05
"""Government spending of the bracket baselines, as a share of output."""
LABOUR_ELASTICITY = 0.5
"""Frisch elasticity of labour supply: the inverse of the households' inverse Frisch
elasticity, 2."""


@runtime_checkable
class FiscalPolicy(Protocol):
    """Taxes on income and wealth (arrays of dollars, one per household) and the spending
    share of output. Taxes may be negative (a transfer); both are vectorised."""

    spending_share: float

    def income_tax(self, income: np.ndarray) -> np.ndarray: ...

    def wealth_tax(self, wealth: np.ndarray) -> np.ndarray: ...


def hsv_tax(x: np.ndarray, tau: float, xi: float) -> np.ndarray:
    """``x - (1 - tau) / (1 - xi) * x ** (1 - xi)``, for ``x >= 0``."""
    return x - (1.0 - tau) / (1.0 - xi) * np.power(x, 1.0 - xi)


@dataclass(frozen=True, slots=True)
class HSVPolicy:
    """HSV taxes on income (``tau``, ``xi``) and wealth (``tau_a``, ``xi_a``), spending
    ``spending_share`` of output."""

    tau: float
    xi: float
    tau_a: float
    xi_a: float
    spending_share: float

    def __post_init__(self) -> None:
        check_number("tau", self.tau, 0.0, maximum=1.0)
        check_number("tau_a", self.tau_a, 0.0, maximum=1.0)
        check_number("xi", self.xi, 0.0, maximum=0.5)
        check_number("xi_a", self.xi_a, 0.0, maximum=0.5)
        check_number("spending_share", self.spending_share, 0.0, maximum=1.0)

    @classmethod
    def from_action(cls, action: Sequence[float] | np.ndarray) -> HSVPolicy:
        """The policy of the leader's action: five numbers in ``[0.001, 0.99]``
        (``ValueError`` otherwise) scaled by :data:`TAU_MAX`, :data:`XI_MAX` and
        :data:`SPENDING_MAX`."""
        values = np.asarray(action, dtype=np.float64)
        if (
            values.shape != (5,)
            or not np.isfinite(values).all()
            or (values < ACTION_LOW).any()
            or (values > ACTION_HIGH).any()
        ):
            raise ValueError(
                f"a government action is 5 numbers in [{ACTION_LOW}, {ACTION_HIGH}], "
                f"got {action!r:.100}"
            )
        a0, a1, a2, a3, a4 = values.tolist()
        return cls(TAU_MAX * a0, XI_MAX * a1, TAU_MAX * a2, XI_MAX * a3, SPENDING_MAX * a4)

    def income_tax(self, income: np.ndarray) -> np.ndarray:
        return hsv_tax(income, self.tau, self.xi)

    def wealth_tax(self, wealth: np.ndarray) -> np.ndarray:
        return hsv_tax(wealth, self.tau_a, self.xi_a)


@dataclass(frozen=True, slots=True)
class BracketPolicy:
    """Marginal ``rates`` on income above ``allowance``, bracket ``k`` starting at
    ``thresholds[k]`` (dollars of taxable income, the first 0, increasing); no wealth tax."""

    thresholds: tuple[float, ...]
    rates: tuple[float, ...]
    allowance: float = 0.0
    spending_share: float = BASELINE_SPENDING_SHARE

    def __post_init__(self) -> None:
        thresholds = np.asarray(self.thresholds, dtype=np.float64)
        rates = np.asarray(self.rates, dtype=np.float64)
        if not thresholds.size or thresholds.shape != rates.shape:
            raise ValueError(
                f"a bracket policy needs one rate per threshold, got {len(self.thresholds)} "
                f"thresholds and {len(self.rates)} rates"
            )
        if thresholds[0] != 0 or not (np.diff(thresholds) > 0).all():
            raise ValueError(f"thresholds must start at 0 and increase, got {self.thresholds}")
        if not (np.isfinite(rates).all() and (rates >= 0).all() and (rates <= 1).all()):
            raise ValueError(f"rates must be in [0, 1], got {self.rates}")
        check_number("allowance", self.allowance, 0.0)
        check_number("spending_share", self.spending_share, 0.0, maximum=1.0)

    def income_tax(self, income: np.ndarray) -> np.ndarray:
        taxable = np.maximum(income - self.allowance, 0.0)
        thresholds = np.asarray(self.thresholds)
        widths = np.append(np.diff(thresholds), np.inf)
        in_bracket = np.clip(taxable[:, None] - thresholds, 0.0, widths)
        return in_bracket @ np.asarray(self.rates)

    def wealth_tax(self, wealth: np.ndarray) -> np.ndarray:
        return np.zeros_like(wealth)


FREE_MARKET_ACTION = np.full(5, ACTION_LOW)
"""The leader's smallest action: the free market baseline."""

US_FEDERAL_2022 = BracketPolicy(
    thresholds=(0.0, 10_275.0, 41_775.0, 89_075.0, 170_050.0, 215_950.0, 539_900.0),
    rates=(0.10, 0.12, 0.22, 0.24, 0.32, 0.35, 0.37),
    allowance=12_950.0,
)


def saez_brackets(
    incomes: np.ndarray,
    *,
    brackets: int = 5,
    elasticity: float = LABOUR_ELASTICITY,
    spending_share: float = BASELINE_SPENDING_SHARE,
) -> BracketPolicy:
    """Saez-style linear brackets fitted to an income sample (pre-tax, dollars).

    Bracket ``k`` starts at the ``k / brackets`` quantile ``z`` of ``incomes`` and taxes at
    ``(1 - g) / (1 - g + a * e)`` (Saez 2001), where ``a = m / (m - z)`` is the Pareto
    parameter of the incomes above ``z`` (``m``: their mean), ``g`` the mean welfare weight
    above ``z`` (log utility: weights ``1 / income``, scaled to mean 1 over everyone) and
    ``e`` the labour ``elasticity``. The first bracket, from 0, has ``g >= 1`` and rate 0.
    """
    z = np.sort(np.asarray(incomes, dtype=np.float64))
    if z.size < brackets or not (np.isfinite(z).all() and z[0] > 0):
        raise ValueError(
            f"saez_brackets needs at least {brackets} finite incomes > 0, got {z.size}"
        )
    weights = (1.0 / z) / np.mean(1.0 / z)
    starts = [0.0]
    rates = [0.0]
    for k in range(1, brackets):
        start = float(np.quantile(z, k / brackets))
        above = z >= start
        mean_above = float(z[above].mean())
        pareto = mean_above / (mean_above - start)
        welfare = float(weights[above].mean())
        starts.append(start)
        rates.append(max(0.0, (1.0 - welfare) / (1.0 - welfare + pareto * elasticity)))
    return BracketPolicy(tuple(starts), tuple(rates), spending_share=spending_share)


GOVERNMENTS: dict[str, Callable[[np.ndarray], FiscalPolicy]] = {
    "free_market": lambda incomes: HSVPolicy.from_action(FREE_MARKET_ACTION),
    "saez": saez_brackets,
    "us_federal_2022": lambda incomes: US_FEDERAL_2022,
}
"""Baseline governments by name, each built from the year-0 pre-tax incomes (only Saez's
brackets depend on them)."""
