"""The macro family's mean field: the economy's statistics as numbers and a short text.

The numbers (:data:`MEAN_FIELD_FIELDS`) are computed by the game from the households'
arrays, never parsed from text, so the numeric signal does not depend on a model's
wording. A mean-field model (:class:`~mfllm_env.core.protocols.MeanFieldModel`) turns
one :class:`EconomyBatch` into a :class:`MacroMeanField`; the default,
:class:`StatisticsMeanField`, writes the numbers out as a sentence (no LLM). An LLM
summary (in ``agents``) would read the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MEAN_FIELD_FIELDS = (
    "year",
    "wage",
    "interest_rate",
    "gdp_per_household",
    "income_tax_share",
    "wealth_tax_share",
    "income_p10",
    "income_p50",
    "income_p90",
    "wealth_p10",
    "wealth_p50",
    "wealth_p90",
    "wealth_p99",
    "income_gini",
    "wealth_gini",
)
"""The mean-field numbers, in order: the year, the wage per effective hour, the interest
rate, output per household, the shares of pre-tax income taken by income tax and of
wealth taken by wealth tax, after-tax income quantiles, wealth quantiles (wealth at the
start of the next year) and the Gini coefficients of after-tax income and of wealth."""


@dataclass(frozen=True, slots=True)
class EconomyBatch:
    """What the mean-field model sees at one step: the statistics (``statistics[k]`` is
    :data:`MEAN_FIELD_FIELDS` ``[k]``), and the households' arrays of the year (after-tax
    ``income``, ``wealth`` at the start of next year, ``consumption``; ``saving`` and
    ``labour`` shares, ``None`` in the opening batch, before anyone acted)."""

    statistics: np.ndarray
    income: np.ndarray
    wealth: np.ndarray
    consumption: np.ndarray | None = None
    saving: np.ndarray | None = None
    labour: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class MacroMeanField:
    """The signal every household sees: ``text`` and the read-only ``values``
    (:data:`MEAN_FIELD_FIELDS`)."""

    text: str
    values: np.ndarray


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) < 1e9 else f"{x:.3g}"


class StatisticsMeanField:
    """The statistics written as one paragraph (English, no LLM)."""

    def reset(self, batch: EconomyBatch) -> MacroMeanField:
        return self.update(batch)

    def update(self, batch: EconomyBatch) -> MacroMeanField:
        s = dict(zip(MEAN_FIELD_FIELDS, batch.statistics.tolist(), strict=True))
        text = (
            f"Year {s['year']:.0f}. Wage {s['wage']:.3g} per effective hour, interest "
            f"{100 * s['interest_rate']:.1f}%, output {_money(s['gdp_per_household'])} per "
            f"household. After-tax income: median {_money(s['income_p50'])}, bottom 10% below "
            f"{_money(s['income_p10'])}, top 10% above {_money(s['income_p90'])}. Wealth: "
            f"median {_money(s['wealth_p50'])}, top 10% above {_money(s['wealth_p90'])}, top "
            f"1% above {_money(s['wealth_p99'])}. Income tax takes "
            f"{100 * s['income_tax_share']:.1f}% of income, wealth tax "
            f"{100 * s['wealth_tax_share']:.2f}% of wealth. Gini: income "
            f"{s['income_gini']:.2f}, wealth {s['wealth_gini']:.2f}."
        )
        values = batch.statistics.copy()
        values.flags.writeable = False
        return MacroMeanField(text, values)
