"""Reinforcement-learned agents of the macro-economy: mean-field RL households (one shared
policy for every household) and a trained government (the leader).

Both are a :class:`GaussianPolicy`: a small torch network that maps features of an
observation to a Gaussian over unbounded actions ``u``, played as shares
``0.001 + 0.989 sigmoid(u)`` (the economy's bounds), plus a critic (the value of the
features) used in training (:mod:`training.macro`). Features are numbers of the
observation put on a common scale (money as ``log(1 + x) / 10``, since capital compounds
to 1e13 in 300 years):

* a household (:func:`household_features`): its own log-ability and wealth, the six policy
  numbers and -- unless ``mean_field=False``, the "without mean field" ablation -- the
  mean field's 15 numbers and its wealth relative to the median;
* the government (:func:`leader_features`): the six group means and the mean field.

:class:`RLHouseholds` and :class:`RLGovernment` are the core's
:class:`~mfllm_env.core.protocols.Policy` (``reset(seed)``, ``act(observations)``):
greedy (the mean action) by default, or sampled from a generator seeded by ``reset``.
A policy file (:func:`save_policy`) is one ``torch.save`` of the weights and the few
settings needed to rebuild the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mfllm_env.games.macro.fiscal import ACTION_HIGH, ACTION_LOW
from mfllm_env.games.macro.game import GOVERNMENT, GROUP_FIELDS, POLICY_FIELDS
from mfllm_env.games.macro.mean_field import MEAN_FIELD_FIELDS

KINDS = ("households", "government")
MONEY_SCALE = 10.0
"""Money enters the features as ``log(1 + x) / MONEY_SCALE``."""
YEAR_SCALE = 300.0
_MONEY_FIELDS = [
    MEAN_FIELD_FIELDS.index(name)
    for name in MEAN_FIELD_FIELDS
    if name.startswith(("income_p", "wealth_p")) or name in ("wage", "gdp_per_household")
]
_SHARE_FIELDS = [
    MEAN_FIELD_FIELDS.index(name)
    for name in ("interest_rate", "income_tax_share", "wealth_tax_share", "income_gini",
                 "wealth_gini")
]  # fmt: skip
_YEAR = MEAN_FIELD_FIELDS.index("year")
_MEDIAN_WEALTH = MEAN_FIELD_FIELDS.index("wealth_p50")


def _money(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(x, 0.0)) / MONEY_SCALE


def mean_field_features(values: np.ndarray) -> np.ndarray:
    """The mean field's 15 numbers (:data:`MEAN_FIELD_FIELDS`) on the features' scale:
    the year over 300, money fields as ``log(1 + x) / 10``, rates and Gini as they are."""
    values = np.asarray(values, dtype=np.float64)
    return np.concatenate(
        [values[[_YEAR]] / YEAR_SCALE, _money(values[_MONEY_FIELDS]), values[_SHARE_FIELDS]]
    )


def household_feature_count(mean_field: bool) -> int:
    return 2 + len(POLICY_FIELDS) + (len(MEAN_FIELD_FIELDS) + 1 if mean_field else 0)


LEADER_FEATURE_COUNT = len(GROUP_FIELDS) + len(MEAN_FIELD_FIELDS)


def household_features(
    observations: Sequence[Mapping[str, Any]], *, mean_field: bool = True
) -> np.ndarray:
    """One row per household observation of ``mfllm/Macro-v0`` (all of one year: they
    share the policy and the mean field): log-ability, wealth, the policy, and with
    ``mean_field`` the mean field's numbers and ``(log(1 + wealth) - log(1 + median
    wealth)) / 10``."""
    own = np.stack([np.asarray(o["household"], dtype=np.float64) for o in observations])
    first = observations[0]
    n = own.shape[0]
    ability = np.log(np.maximum(own[:, 0], 1e-12))
    wealth = _money(own[:, 1])
    columns = [ability[:, None], wealth[:, None]]
    columns.append(
        np.broadcast_to(np.asarray(first["policy"], np.float64), (n, len(POLICY_FIELDS)))
    )
    if mean_field:
        values = np.asarray(first["mean_field"], dtype=np.float64)
        columns.append(np.broadcast_to(mean_field_features(values), (n, len(MEAN_FIELD_FIELDS))))
        columns.append((wealth - _money(values[[_MEDIAN_WEALTH]]))[:, None])
    return np.concatenate(columns, axis=1)


def leader_features(observation: Mapping[str, Any]) -> np.ndarray:
    """The government's observation (``MacroPlanner-v0``): the six group means as money
    and the mean field's features."""
    return np.concatenate(
        [
            _money(np.asarray(observation["groups"], dtype=np.float64)),
            mean_field_features(observation["mean_field"]),
        ]
    )


def shares(u: torch.Tensor) -> torch.Tensor:
    """Unbounded actions as shares in ``[0.001, 0.99]``."""
    return ACTION_LOW + (ACTION_HIGH - ACTION_LOW) * torch.sigmoid(u)


def unbounded(share: float) -> float:
    """The ``u`` whose share is ``share`` (the inverse of :func:`shares`)."""
    q = (share - ACTION_LOW) / (ACTION_HIGH - ACTION_LOW)
    return math.log(q / (1.0 - q))


def _network(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, outputs),
    )  # fmt: skip


class GaussianPolicy(nn.Module):
    """Features -> a diagonal Gaussian over ``actions`` unbounded actions (mean from an
    MLP, a learned log-std per action), and a critic MLP (features -> value). The mean
    starts near ``initial`` (shares): the last layer's weights are scaled down and its
    bias set to their unbounded values."""

    def __init__(
        self,
        inputs: int,
        actions: int,
        *,
        hidden: int = 64,
        initial: Sequence[float] | None = None,
        log_std: float = -0.7,
    ) -> None:
        super().__init__()
        self.inputs, self.actions, self.hidden = inputs, actions, hidden
        self.actor = _network(inputs, hidden, actions)
        self.critic = _network(inputs, hidden, 1)
        self.log_std = nn.Parameter(torch.full((actions,), float(log_std)))
        last = self.actor[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            if initial is not None:
                last.bias.copy_(torch.tensor([unbounded(float(s)) for s in initial]))

    def distribution(self, features: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(features), self.log_std.exp())

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features).squeeze(-1)

    @torch.no_grad()
    def draw(
        self, features: np.ndarray, generator: torch.Generator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(u, shares)`` for each row of ``features``: the mean when ``generator`` is
        ``None`` (greedy), else a draw from it."""
        x = torch.as_tensor(features, dtype=torch.float32)
        mean = self.actor(x)
        if generator is None:
            u = mean
        else:
            noise = torch.randn(mean.shape, generator=generator)
            u = mean + noise * self.log_std.exp()
        return u.numpy(), shares(u).double().numpy()


def save_policy(path: str | Path, model: GaussianPolicy, kind: str, *, mean_field: bool) -> None:
    """Write ``model`` (a ``kind`` policy, :data:`KINDS`) to ``path``, written to
    ``path.partial`` and renamed (a kill leaves the old file or the new one)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    torch.save(
        {
            "kind": kind,
            "mean_field": mean_field,
            "inputs": model.inputs,
            "actions": model.actions,
            "hidden": model.hidden,
            "state": model.state_dict(),
        },
        partial,
    )
    partial.replace(path)


def load_policy(path: str | Path, kind: str) -> tuple[GaussianPolicy, bool]:
    """``(model, mean_field)`` of the ``kind`` policy file ``path``; ``ValueError``
    naming the file when it cannot be read, holds another kind or does not fit its
    settings."""
    path = Path(path)
    try:
        data = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"policy file {path} does not exist") from None
    except Exception as error:  # torch raises many types for a file that is not its own
        raise ValueError(f"policy file {path}: not a saved policy ({error})"[:300]) from None
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"policy file {path} holds {found!r}, not a {kind} policy")
    try:
        model = GaussianPolicy(data["inputs"], data["actions"], hidden=data["hidden"])
        model.load_state_dict(data["state"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"policy file {path}: {error}"[:300]) from None
    return model.eval(), bool(data["mean_field"])


class _Sampled:
    """Greedy or seeded sampling, shared by both policies. With ``trace`` a list, each
    :meth:`act` appends its ``(features, u)`` to it (what training learns from)."""

    def __init__(self, model: GaussianPolicy, greedy: bool) -> None:
        self.model = model
        self.greedy = greedy
        self.trace: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._generator: torch.Generator | None = None
        self.reset(0)

    def _draw(self, features: np.ndarray) -> np.ndarray:
        u, actions = self.model.draw(features, self._generator)
        if self.trace is not None:
            self.trace.append((features, u))
        return actions

    def reset(self, seed: int | None = None) -> None:
        if self.greedy:
            self._generator = None
        else:
            self._generator = torch.Generator()
            self._generator.manual_seed(0 if seed is None else int(seed))


class RLHouseholds(_Sampled):
    """Every household acts with one shared :class:`GaussianPolicy` over
    :func:`household_features` (``Box`` mode), in one batched forward pass."""

    def __init__(
        self, model: GaussianPolicy, *, mean_field: bool = True, greedy: bool = True
    ) -> None:
        expected = household_feature_count(mean_field)
        if model.inputs != expected or model.actions != 2:
            raise ValueError(
                f"a household policy{'' if mean_field else ' without mean field'} takes "
                f"{expected} features to 2 actions; this one takes {model.inputs} to "
                f"{model.actions}"
            )
        super().__init__(model, greedy)
        self.mean_field = mean_field

    @classmethod
    def load(cls, path: str | Path, *, greedy: bool = True) -> RLHouseholds:
        model, mean_field = load_policy(path, "households")
        return cls(model, mean_field=mean_field, greedy=greedy)

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
        if not observations:
            return {}
        features = household_features(list(observations.values()), mean_field=self.mean_field)
        return dict(zip(observations, self._draw(features), strict=True))


class RLGovernment(_Sampled):
    """The government as a :class:`GaussianPolicy` over :func:`leader_features`: five
    numbers in ``[0.001, 0.99]`` (``MacroPlanner-v0``'s action)."""

    def __init__(self, model: GaussianPolicy, *, greedy: bool = True) -> None:
        if model.inputs != LEADER_FEATURE_COUNT or model.actions != 5:
            raise ValueError(
                f"a government policy takes {LEADER_FEATURE_COUNT} features to 5 actions; "
                f"this one takes {model.inputs} to {model.actions}"
            )
        super().__init__(model, greedy)

    @classmethod
    def load(cls, path: str | Path, *, greedy: bool = True) -> RLGovernment:
        model, _ = load_policy(path, "government")
        return cls(model, greedy=greedy)

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
        if GOVERNMENT not in observations:
            return {}
        return {GOVERNMENT: self._draw(leader_features(observations[GOVERNMENT])[None])[0]}
