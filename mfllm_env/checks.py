"""Checks of arguments and actions shared by the environments: one wording, one rule.

Each raises a ``ValueError`` (``TypeError`` for an argument of the wrong kind altogether)
that names the argument and the value, so that a caller -- the CLI included -- can show
it as is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAX_COUNT = 2**31 - 1
"""Largest value of a count argument (agents per step, warm-up, lengths, budgets)."""
SEED_MAX = 2**32 - 1
"""Largest seed of a run: numpy's global seeding, scikit-learn's ``random_state`` and
transformers' ``set_seed`` (used by the trainers) take no others."""
BOOTSTRAP_MAX = 1_000_000
"""Most bootstrap resamples per comparison: far past where the interval stops moving
(thousands), and scipy holds the resamples in memory."""


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), and not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is a finite number (Python's or numpy's int or float), not a
    bool."""
    number = isinstance(value, int | float | np.integer | np.floating)
    return number and not isinstance(value, bool) and math.isfinite(value)  # type: ignore[arg-type]


def check_count(name: str, value: object, minimum: int, maximum: int = MAX_COUNT) -> None:
    """A clear ``ValueError`` for an argument that must be an int in
    ``[minimum, maximum]``."""
    if not (is_integer(value) and minimum <= value <= maximum):  # type: ignore[operator]
        raise ValueError(
            f"{name} must be an integer >= {minimum} and <= {maximum}, got {value!r}"
        )


def check_number(
    name: str, value: object, minimum: float, *, exclusive: bool = False, maximum: float = math.inf
) -> None:
    """A clear ``ValueError`` for an argument that must be a finite number (not a bool)
    ``>= minimum`` (``> minimum`` when ``exclusive``) and ``<= maximum``."""
    above = is_finite_number(value) and (
        value > minimum if exclusive else value >= minimum  # type: ignore[operator]
    )
    if not (above and value <= maximum):  # type: ignore[operator]
        bounds = [f"{'>' if exclusive else '>='} {minimum:g}"] if minimum > -math.inf else []
        if maximum < math.inf:
            bounds.append(f"<= {maximum:g}")
        bounded = f" {' and '.join(bounds)}" if bounds else ""
        raise ValueError(f"{name} must be a finite number{bounded}, got {value!r}")


def check_seed(seed: object) -> int | None:
    """``seed`` as a plain int (or ``None``); a clear ``ValueError`` for anything else
    (a negative number, a float, a bool, a string)."""
    if seed is None:
        return None
    if is_integer(seed) and seed >= 0:  # type: ignore[operator]
        return int(seed)
    raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")


def check_can_step(agents: Sequence[str], started: bool) -> None:
    """``RuntimeError`` unless an episode runs: some ``agents`` act now (``started``: whether
    ``reset`` was ever called, which says what went wrong)."""
    if not agents:
        raise RuntimeError(
            "step() called on a finished episode; call reset() first"
            if started
            else "step() called before reset()"
        )


def check_actions(
    actions: object, active: Sequence[str], active_set: frozenset[str] | None = None
) -> Mapping[str, Any]:
    """``actions`` if it is a mapping whose keys are all among the ``active`` agents;
    ``TypeError`` / ``ValueError`` naming what is wrong otherwise. Missing agents are
    not an error here (their action is invalid and falls back, counted). ``active_set``,
    the same agents as a set, keeps the check linear for populations of thousands."""
    if not isinstance(actions, Mapping):
        raise TypeError(
            f"actions must be a mapping from agent name to action, got {type(actions).__name__}"
        )
    members = frozenset(active) if active_set is None else active_set
    if not members.issuperset(actions):
        strangers = [key for key in actions if key not in members]
        shown = ", ".join(repr(key)[:40] for key in strangers[:5])
        more = f" and {len(strangers) - 5} more" if len(strangers) > 5 else ""
        acting = f"{active[0]}..{active[-1]}" if len(active) > 1 else ", ".join(active) or "none"
        raise ValueError(
            f"actions name agents that do not act this step: {shown}{more} "
            f"(acting now: {acting})"
        )
    return actions


def is_text(action: object) -> bool:
    """Whether ``action`` is a string that can be written out (as UTF-8: no lone
    surrogates, which a broken decoder or a JSON ``\\ud800`` escape can produce)."""
    if not isinstance(action, str):
        return False
    if action.isascii():
        return True
    try:
        action.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_methods(name: str, value: object, methods: Sequence[str]) -> None:
    """A clear ``TypeError`` for an argument that is neither ``None`` nor an object with
    the ``methods`` a protocol needs (a labeller's ``label``, a mean field's ``reset`` and
    ``update``)."""
    missing = [method for method in methods if not callable(getattr(value, method, None))]
    if value is not None and missing:
        raise TypeError(
            f"{name} must be None or an object with method(s) {', '.join(missing)}, "
            f"got {type(value).__name__}"
        )
