"""Checked ``type=`` functions for the ``mfllm`` options.

Each turns an option's text into its value or raises :class:`argparse.ArgumentTypeError`,
which argparse reports with the option's name and exit code 2, before any work starts::

    mfllm simulate: error: argument --seed: must be an integer >= 0, got '-1'

Numbers are written in ASCII (``12``, ``-3``, ``0.5``, ``1e-4``); floats must be finite
(``nan``, ``inf`` and overflowing values such as ``1e400`` are refused) and integers fit
in 64 bits. Seeds lie in ``[0, 2**32 - 1]``: numpy's global seeding, scikit-learn's
``random_state`` and transformers' ``set_seed`` (used by the trainers) take no others.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _integer(text: str) -> int:
    """``text`` as an int written in ASCII digits, within 64 bits."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
    # Checked on the digits first: int() of thousands of digits is slow, or refused.
    digits = stripped.lstrip("+-").lstrip("0")
    if len(digits) > len(str(INT64_MAX)) or not -INT64_MAX - 1 <= int(stripped) <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"must fit in 64 bits, got {text!r}")
    return int(stripped)


def _finite_float(text: str) -> float:
    """``text`` as a finite float written in ASCII."""
    stripped = text.strip()
    try:
        if not stripped.isascii():
            raise ValueError
        value = float(stripped)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value + 0.0  # -0.0 as 0.0


def int_at_least(least: int) -> Callable[[str], int]:
    """The type of an integer option that must be ``>= least`` (a count, a length)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{least}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def seed(text: str) -> int:
    """A random seed: an integer in ``[0, 2**32 - 1]``."""
    try:
        value = _integer(text)
    except argparse.ArgumentTypeError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 0 and <= 2**32 - 1 ({SEED_MAX}), got {text!r}"
        )
    return value


def float_in(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """The type of a finite float option within ``low .. high``; ``low_open`` and
    ``high_open`` leave that end out (``float_in(0, low_open=True)``: ``> 0``)."""
    lower = f"> {low:g}" if low_open else f">= {low:g}"
    upper = "" if math.isinf(high) else (f" and < {high:g}" if high_open else f" and <= {high:g}")

    def parse(text: str) -> float:
        value = _finite_float(text)
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if below or above:
            raise argparse.ArgumentTypeError(f"must be a number {lower}{upper}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


positive_float = float_in(0, low_open=True)
non_negative_float = float_in(0)
probability = float_in(0, 1)


def unique_list(item: Callable[[str], int]) -> Callable[[str], list[int]]:
    """The type of a comma-separated list of distinct ``item`` values (``0,1,2``); empty
    parts are refused, not skipped, so ``0,,1`` is a mistake, not two seeds."""

    def parse(text: str) -> list[int]:
        values = []
        for position, part in enumerate(text.split(","), 1):
            try:
                values.append(item(part))
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(
                    f"item {position} of {text!r} {error}; give comma-separated values, "
                    "as in 0,1,2"
                ) from None
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(
                f"lists {', '.join(map(str, repeated))} more than once in {text!r}; "
                "give each value once"
            )
        return values

    parse.__name__ = "list"
    return parse


seed_list = unique_list(seed)
positive_int_list = unique_list(positive_int)
