"""Baseline household policies of the macro family (no learning, no LLM)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mfllm_env.checks import check_number
from mfllm_env.games.macro.fiscal import ACTION_HIGH, ACTION_LOW, LABOUR_ELASTICITY
from mfllm_env.games.macro.game import POLICY_FIELDS
from mfllm_env.games.macro.text import FALLBACK_ACTION

_MEDIAN_INCOME_TAX = POLICY_FIELDS.index("income_tax_at_p50")


class RuleHouseholds:
    """The documented rule: every household saves a fixed share of its after-tax income
    (``saving_share``, 0.3) and works ``labour_share`` (a third of its time, the
    calibration point) scaled by ``(1 - t) ** 0.5``, where ``t`` is the average income-tax
    rate at the median income it observes (Frisch elasticity 1/2). Deterministic; acts for
    every household it is given, in ``Box`` mode, vectorised."""

    def __init__(
        self, saving_share: float = FALLBACK_ACTION[0], labour_share: float = FALLBACK_ACTION[1]
    ) -> None:
        check_number("saving_share", saving_share, ACTION_LOW, maximum=ACTION_HIGH)
        check_number("labour_share", labour_share, ACTION_LOW, maximum=ACTION_HIGH)
        self.saving_share = float(saving_share)
        self.labour_share = float(labour_share)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
        if not observations:
            return {}
        # All households see one policy: read it once.
        policy = next(iter(observations.values()))["policy"]
        rate = min(max(float(policy[_MEDIAN_INCOME_TAX]), 0.0), 1.0)
        labour = self.labour_share * (1.0 - rate) ** LABOUR_ELASTICITY
        action = np.array([self.saving_share, max(labour, ACTION_LOW)])
        action.flags.writeable = False
        return dict.fromkeys(observations, action)
