"""MacroGame: the economy of :mod:`mfllm_env.games.macro.economy` as a core game.

It is both a :class:`~mfllm_env.core.protocols.Game` (the households act) and a
:class:`~mfllm_env.core.protocols.LeaderRole` (the government sets taxes first); the
environments of :mod:`mfllm_env.games.macro.envs` document what agents see and do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from mfllm_env.checks import check_count, check_methods, is_text
from mfllm_env.core.protocols import MISSING, MeanFieldModel, Transition
from mfllm_env.games.macro.economy import (
    REFERENCE_LABOUR_SHARE,
    Economy,
    EconomyParameters,
    Population,
    Year,
    csv_population,
    gini,
    read_population_csv,
    synthetic_population,
)
from mfllm_env.games.macro.fiscal import (
    ACTION_HIGH,
    ACTION_LOW,
    GOVERNMENTS,
    FiscalPolicy,
    HSVPolicy,
)
from mfllm_env.games.macro.mean_field import (
    MEAN_FIELD_FIELDS,
    EconomyBatch,
    MacroMeanField,
    StatisticsMeanField,
)
from mfllm_env.games.macro.text import FALLBACK_ACTION, HouseholdTextCodec
from mfllm_env.spaces import FreeText

MAX_HOUSEHOLDS = 100_000
GOVERNMENT = "government"
POLICY_FIELDS = (
    "income_tax_at_p50",
    "income_tax_at_p90",
    "wealth_tax_at_p50",
    "wealth_tax_at_p90",
    "spending_share",
    "consumption_tax",
)
"""What households see of the policy: the average income-tax rate at last year's median
and 90th-percentile pre-tax income, the average wealth-tax rate at the median and
90th-percentile wealth, the spending share of output and the consumption tax rate."""
GROUP_FIELDS = (
    "top10_wealth",
    "top10_income",
    "top10_ability",
    "bottom50_wealth",
    "bottom50_income",
    "bottom50_ability",
)
"""The government's six group means: wealth over the wealth groups, pre-tax income and
ability over the income groups."""
LEADER_REWARDS = ("gdp", "gini", "social_welfare", "gdp_gini")
ActionMode = Literal["box", "text"]


@dataclass(slots=True)
class HouseholdActions:
    """Decoded actions: shares per household and the infos of those with a fallback or
    clip, by position."""

    saving: np.ndarray
    labour: np.ndarray
    infos: dict[int, dict[str, Any]] = field(default_factory=dict)


def _numeric_row(value: Any, size: int) -> np.ndarray | None:
    """``value`` as ``size`` finite floats, or ``None`` (wrong type, shape, NaN, Inf)."""
    if not isinstance(value, np.ndarray | list | tuple):
        return None
    try:
        row = np.asarray(value)
    except (ValueError, TypeError):
        return None
    if row.dtype.kind not in "iuf" or row.shape != (size,):
        return None
    row = row.astype(np.float64)
    return row if np.isfinite(row).all() else None


class MacroGame:
    """The macro-economy as a game (see :class:`~mfllm_env.games.macro.envs.MacroEnv`
    for the arguments)."""

    def __init__(
        self,
        n_households: int = 100,
        *,
        government: str | FiscalPolicy = "free_market",
        action_mode: ActionMode = "box",
        population: str | Path | Population = "synthetic",
        parameters: EconomyParameters | None = None,
        mean_field: MeanFieldModel[EconomyBatch, MacroMeanField] | None = None,
        leader_reward: str = "gdp",
        max_text_length: int = 2048,
        max_action_length: int = 1000,
    ) -> None:
        check_count("n_households", n_households, 10, MAX_HOUSEHOLDS)
        check_count("max_text_length", max_text_length, 1)
        check_count("max_action_length", max_action_length, 1)
        if action_mode not in ("box", "text"):
            raise ValueError(f"action_mode must be 'box' or 'text', got {action_mode!r}")
        if leader_reward not in LEADER_REWARDS:
            raise ValueError(
                f"leader_reward must be one of {LEADER_REWARDS}, got {leader_reward!r}"
            )
        if isinstance(government, str):
            if government not in GOVERNMENTS:
                raise ValueError(
                    f"government must be one of {sorted(GOVERNMENTS)} or a FiscalPolicy, "
                    f"got {government!r}"
                )
        elif not (
            callable(getattr(government, "income_tax", None))
            and callable(getattr(government, "wealth_tax", None))
            and hasattr(government, "spending_share")
        ):
            raise TypeError(
                "government must be a name or a FiscalPolicy (income_tax, wealth_tax, "
                f"spending_share), got {type(government).__name__}"
            )
        if parameters is not None and not isinstance(parameters, EconomyParameters):
            raise TypeError(
                f"parameters must be EconomyParameters, got {type(parameters).__name__}"
            )
        check_methods("mean_field", mean_field, ("reset", "update"))
        if isinstance(population, Population):
            self._table: Population | None = population
        elif population == "synthetic":
            self._table = None
        elif isinstance(population, str | Path):
            self._table = read_population_csv(population)
        else:
            raise TypeError(
                f"population must be 'synthetic', a CSV path or a Population, got "
                f"{type(population).__name__}"
            )
        self.n = n_households
        self.government = government
        self.action_mode = action_mode
        self.parameters = parameters or EconomyParameters()
        self.mean_field_model = mean_field or StatisticsMeanField()
        self.leader_reward = leader_reward
        self.max_text_length = max_text_length
        self.max_action_length = max_action_length
        self.codec = HouseholdTextCodec()
        width = len(str(n_households - 1))
        self.agent_ids = [f"household_{i:0{width}d}" for i in range(n_households)]
        self._everyone = list(range(n_households))
        self.observation_space = spaces.Dict(
            {
                "household": spaces.Box(-np.inf, np.inf, (2,), np.float64),
                "policy": spaces.Box(-np.inf, np.inf, (len(POLICY_FIELDS),), np.float64),
                "mean_field": spaces.Box(-np.inf, np.inf, (len(MEAN_FIELD_FIELDS),), np.float64),
                "mean_field_text": FreeText(max_text_length),
            }
        )
        self.action_space: spaces.Space[Any] = (
            spaces.Box(ACTION_LOW, ACTION_HIGH, (2,), np.float64)
            if action_mode == "box"
            else FreeText(max_action_length)
        )
        self.leader_id = GOVERNMENT
        self.leader_action_space = spaces.Box(ACTION_LOW, ACTION_HIGH, (5,), np.float64)
        self.leader_observation_space = spaces.Dict(
            {
                "groups": spaces.Box(-np.inf, np.inf, (len(GROUP_FIELDS),), np.float64),
                "mean_field": spaces.Box(-np.inf, np.inf, (len(MEAN_FIELD_FIELDS),), np.float64),
                "mean_field_text": FreeText(max_text_length),
            }
        )
        self.economy = Economy(self.parameters)
        self.stats: dict[str, int] = {}
        self._done = True
        self._rng = np.random.default_rng(0)
        self.last_year: Year | None = None
        self._policy_seen: np.ndarray | None = None
        self._led_years: list[float] | None = None
        """The government's reward of each year since its last move (``None``: no
        government leads)."""

    # -- Game ---------------------------------------------------------------------------

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng
        if self._table is None:
            population = synthetic_population(self.n, rng, self.parameters)
        else:
            population = csv_population(self._table, self.n, rng)
        economy = self.economy
        economy.start(population, rng)
        labour = np.full(self.n, REFERENCE_LABOUR_SHARE)
        ability, income, _, wage, output = economy.incomes(labour)
        self.policy: FiscalPolicy = (
            GOVERNMENTS[self.government](income)
            if isinstance(self.government, str)
            else self.government
        )
        after_tax = income - self.policy.income_tax(income)
        self._income = income
        self._ability = ability
        self._previous_output = output
        self.last_year = None
        self._led_years = None
        self.stats = dict.fromkeys(
            (
                "years",
                "actions",
                "invalid_action",
                "clipped_action",
                "fallback",
                "leader_invalid_action",
                "leader_clipped_action",
            ),
            0,
        )
        statistics = self._statistics(wage, output, income, after_tax, economy.wealth)
        batch = EconomyBatch(statistics, after_tax, economy.wealth)
        self._signal = self._checked_signal(self.mean_field_model.reset(batch), "reset")
        self._own = np.column_stack((ability, economy.wealth))
        self._policy_seen = None
        self._done = False

    def acting(self) -> Sequence[int]:
        return [] if self._done else self._everyone

    def _statistics(
        self,
        wage: float,
        output: float,
        income: np.ndarray,
        after_tax: np.ndarray,
        wealth: np.ndarray,
        income_tax: float | None = None,
        wealth_tax: float | None = None,
    ) -> np.ndarray:
        n = self.n
        if income_tax is None:
            income_tax = float(income.sum() - after_tax.sum())
        if wealth_tax is None:
            wealth_tax = float(self.policy.wealth_tax(wealth).sum())
        incomes = np.sort(after_tax)
        wealths = np.sort(wealth)
        at = [int(q * (n - 1)) for q in (0.1, 0.5, 0.9, 0.99)]
        total_wealth = float(wealths.sum())
        return np.array(
            [
                self.economy.year,
                wage,
                self.parameters.interest_rate,
                output / n,
                income_tax / float(income.sum()),
                wealth_tax / total_wealth if total_wealth else 0.0,
                incomes[at[0]],
                incomes[at[1]],
                incomes[at[2]],
                wealths[at[0]],
                wealths[at[1]],
                wealths[at[2]],
                wealths[at[3]],
                gini(incomes),
                gini(wealths),
            ]
        )

    def _checked_signal(self, signal: Any, method: str) -> MacroMeanField:
        values = getattr(signal, "values", None)
        if not (
            isinstance(getattr(signal, "text", None), str)
            and isinstance(values, np.ndarray)
            and values.shape == (len(MEAN_FIELD_FIELDS),)
        ):
            raise ValueError(
                f"mean_field.{method}() must return a MacroMeanField with a text and "
                f"{len(MEAN_FIELD_FIELDS)} values, got {signal!r:.100}"
            )
        return MacroMeanField(signal.text[: self.max_text_length], values)

    def _policy_vector(self) -> np.ndarray:
        """:data:`POLICY_FIELDS` under the current policy (kept until the policy or the
        year changes)."""
        if self._policy_seen is not None:
            return self._policy_seen
        incomes = np.quantile(self._income, (0.5, 0.9))
        wealths = np.quantile(self.economy.wealth, (0.5, 0.9))
        with np.errstate(divide="ignore", invalid="ignore"):
            income_rates = np.nan_to_num(self.policy.income_tax(incomes) / incomes)
            wealth_rates = np.nan_to_num(self.policy.wealth_tax(wealths) / wealths)
        vector = np.array(
            [
                *income_rates.tolist(),
                *wealth_rates.tolist(),
                self.policy.spending_share,
                self.parameters.consumption_tax,
            ]
        )
        vector.flags.writeable = False
        self._policy_seen = vector
        return vector

    def observe(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Each household's ``household`` (ability, wealth), the ``policy``
        (:data:`POLICY_FIELDS`) and the mean field (numbers and text); the last three are
        one read-only object shared by all."""
        policy = self._policy_vector()
        values, text = self._signal.values, self._signal.text
        rows = self._own if len(indices) == self.n else self._own[list(indices)]
        return [
            {"household": row, "policy": policy, "mean_field": values, "mean_field_text": text}
            for row in rows
        ]

    def statistics(self) -> dict[str, float]:
        """The mean-field numbers, capital and debt per household."""
        numbers = dict(zip(MEAN_FIELD_FIELDS, self._signal.values.tolist(), strict=True))
        numbers["capital_per_household"] = self.economy.capital / self.n
        numbers["debt_per_household"] = self.economy.debt / self.n
        return numbers

    def decode(self, actions: Sequence[Any]) -> HouseholdActions:
        """Box mode: a finite value outside ``[0.001, 0.99]`` is clipped
        (``clipped_action``); a missing one, a value of the wrong type or shape, NaN or
        Inf is invalid and replaced by :data:`FALLBACK_ACTION` (``invalid_action``).
        Text mode: a non-string (or unwritable string) is invalid; a part the codec cannot
        read is filled from :data:`FALLBACK_ACTION` (``fallback``)."""
        if self.action_mode == "text":
            return self._decode_texts(actions)
        n = len(actions)
        shares: np.ndarray | None = None
        try:  # the common case, all arrays of two numbers, in one call
            stacked = np.asarray(actions)
        except (ValueError, TypeError):  # ragged, or objects numpy refuses
            stacked = None
        if stacked is not None and stacked.dtype.kind in "iuf" and stacked.shape == (n, 2):
            shares = stacked.astype(np.float64)
            invalid = ~np.isfinite(shares).all(axis=1)
        if shares is None:
            shares = np.empty((n, 2))
            invalid = np.zeros(n, dtype=bool)
            for position, value in enumerate(actions):
                row = _numeric_row(value, 2)
                if row is None:
                    invalid[position] = True
                else:
                    shares[position] = row
        infos: dict[int, dict[str, Any]] = {}
        if invalid.any():
            shares[invalid] = FALLBACK_ACTION
            for position in np.flatnonzero(invalid).tolist():
                infos[position] = {"invalid_action": True}
        outside = ((shares < ACTION_LOW) | (shares > ACTION_HIGH)).any(axis=1)
        if outside.any():
            np.clip(shares, ACTION_LOW, ACTION_HIGH, out=shares)
            for position in np.flatnonzero(outside).tolist():
                infos[position] = {"clipped_action": True}
        self.stats["invalid_action"] += int(invalid.sum())
        self.stats["clipped_action"] += int(outside.sum())
        return HouseholdActions(shares[:, 0], shares[:, 1], infos)

    def _decode_texts(self, actions: Sequence[Any]) -> HouseholdActions:
        limit = self.max_action_length
        texts = [value[:limit] if is_text(value) else "" for value in actions]
        decoded = self.codec.decode_texts(texts)
        shares = decoded.actions
        infos: dict[int, dict[str, Any]] = {}
        for position, (value, unread) in enumerate(zip(actions, decoded.fallbacks, strict=True)):
            if not is_text(value):
                infos[position] = {"invalid_action": True, "fallback": unread}
                self.stats["invalid_action"] += 1
            elif unread:
                infos[position] = {"fallback": unread}
                self.stats["fallback"] += 1
        return HouseholdActions(shares[:, 0].copy(), shares[:, 1].copy(), infos)

    def transition(self, batch: HouseholdActions) -> Transition:
        if self._done:
            raise RuntimeError("transition() on a finished episode; reset the game first")
        year = self.economy.advance(batch.saving, batch.labour, self.policy, self._rng)
        self.last_year = year
        if self._led_years is not None:  # a government leads: score its year
            self._led_years.append(self._leader_reward(year))
        self._previous_output = year.output
        after_tax = year.income - year.income_tax
        statistics = self._statistics(
            year.wage,
            year.output,
            year.income,
            after_tax,
            year.next_wealth,
            float(year.income_tax.sum()),
            float(year.wealth_tax.sum()),
        )
        self._signal = self._checked_signal(
            self.mean_field_model.update(
                EconomyBatch(
                    statistics,
                    after_tax,
                    year.next_wealth,
                    year.consumption,
                    batch.saving,
                    batch.labour,
                )
            ),
            "update",
        )
        self._income = year.income
        self._ability = year.ability
        self._own = np.column_stack((self.economy.ability, year.next_wealth))
        self._policy_seen = None
        self.stats["years"] += 1
        self.stats["actions"] += self.n
        terminated = year.ended is not None
        truncated = not terminated and self.economy.year >= self.parameters.years
        self._done = terminated or truncated
        rewards = year.rewards
        infos = batch.infos
        if terminated:
            rewards = np.nan_to_num(rewards, nan=0.0, posinf=0.0, neginf=0.0)
            infos = {i: {**infos.get(i, {}), "ended": year.ended} for i in self._everyone}
        return Transition(rewards, terminated, truncated, infos)

    # -- LeaderRole ---------------------------------------------------------------------

    def lead(self, action: Any) -> dict[str, Any]:
        """The government's five numbers become this year's :class:`HSVPolicy`; a finite
        value outside ``[0.001, 0.99]`` is clipped (``leader_clipped_action``); a missing
        action, a wrong type or shape, NaN or Inf keeps the current policy
        (``leader_invalid_action``)."""
        self._led_years = []
        row = None if action is MISSING else _numeric_row(action, 5)
        info: dict[str, Any] = {"invalid_action": row is None, "clipped_action": False}
        if row is None:
            self.stats["leader_invalid_action"] += 1
        else:
            clipped = np.clip(row, ACTION_LOW, ACTION_HIGH)
            info["clipped_action"] = bool((clipped != row).any())
            self.stats["leader_clipped_action"] += info["clipped_action"]
            self.policy = HSVPolicy.from_action(clipped)
            self._policy_seen = None
        if isinstance(self.policy, HSVPolicy):
            p = self.policy
            info["policy"] = [p.tau, p.xi, p.tau_a, p.xi_a, p.spending_share]
        return info

    def leader_observation(self) -> dict[str, Any]:
        """:data:`GROUP_FIELDS` and the mean field."""
        n = self.n
        top, bottom = max(1, n // 10), n // 2
        wealth = self.economy.wealth
        by_wealth = np.argsort(wealth)
        by_income = np.argsort(self._income)
        groups = np.array(
            [
                wealth[by_wealth[-top:]].mean(),
                self._income[by_income[-top:]].mean(),
                self._ability[by_income[-top:]].mean(),
                wealth[by_wealth[:bottom]].mean(),
                self._income[by_income[:bottom]].mean(),
                self._ability[by_income[:bottom]].mean(),
            ]
        )
        return {
            "groups": groups,
            "mean_field": self._signal.values,
            "mean_field_text": self._signal.text,
        }

    def _leader_reward(self, year: Year) -> float:
        """The government's reward for one year (:meth:`settle`)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.leader_reward == "gdp":
                return 100.0 * (year.next_capital - year.capital) / year.capital
            if self.leader_reward == "gini":
                pre_income = gini(year.income)
                pre_wealth = gini(year.wealth)
                post_wealth = gini(year.wealth - year.wealth_tax)
                return 100.0 * (
                    (pre_income - year.income_gini) / pre_income
                    + (pre_wealth - post_wealth) / pre_wealth
                )
            if self.leader_reward == "social_welfare":
                return float(year.rewards.sum())
            growth = (year.output - self._previous_output) / self._previous_output
            return growth - year.wealth_gini * year.income_gini

    def settle(self) -> tuple[float, dict[str, Any]]:
        """The government's reward for the years the households played since its last
        move (one, unless ``every`` > 1: then the sum over them), by ``leader_reward``:
        ``gdp``: capital growth ``100 (K' - K) / K``; ``gini``: the relative reduction by
        taxation of the income Gini (pre- vs after-tax income) plus that of the wealth Gini
        (wealth before vs after the wealth tax), x100; ``social_welfare``: the sum of the
        household rewards; ``gdp_gini``: output growth per household minus wealth Gini x
        income Gini. A reward that is not finite (an economy that broke down) is reported
        as 0, with ``reward_not_finite``. The info describes the last year."""
        year = self.last_year
        if year is None or not self._led_years:
            raise RuntimeError("settle() before the households played a year after lead()")
        reward = float(sum(self._led_years))
        self._led_years = []
        info: dict[str, Any] = {
            "year": self.economy.year,
            "output_per_household": year.output / self.n,
            "capital_per_household": year.next_capital / self.n,
            "income_gini": year.income_gini,
            "wealth_gini": year.wealth_gini,
            "welfare": float(np.nan_to_num(year.rewards).sum()),
            "ended": year.ended,
        }
        if not math.isfinite(reward):
            info["reward_not_finite"] = True
            reward = 0.0
        return reward, info
