"""How households speak: observations as prompt parts, replies as (saving, labour) shares.

:class:`HouseholdTextCodec` reads a free-text reply such as "I will work about 40 hours a
week and save a fifth of my income" into the action ``(saving share, labour share)``:

* **Labour**: a number of hours (digits or words up to ninety-nine: "40 hours", "forty
  hours a week") per week (the default), day (5 working days a week), month or year, as a
  share of :data:`~mfllm_env.games.macro.economy.HOURS_PER_SHARE` hours a year;
  "full-time" (40 hours a week), "part-time" (20), "overtime" (50), "not work" / "stop
  working" (the least labour); or "labour share 0.4" / "work 40% of the time".
* **Saving**: after "save" / "saving(s)" / "put aside" / "set aside", a fraction in words
  ("half", "a fifth", "two thirds"), a percentage ("20%", "20 percent"), a share ("0.2";
  a bare number above 1 is read as a percentage), "nothing" or "everything"; or after
  "spend", the share spent (saving is the rest).

Shares are clipped to ``[0.001, 0.99]``. A part the text does not state is filled from
:data:`FALLBACK_ACTION` and named in :attr:`Decoded.fallbacks` (the env counts them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mfllm_env.core.protocols import Decoded
from mfllm_env.games.macro.economy import HOURS_PER_SHARE
from mfllm_env.games.macro.fiscal import ACTION_HIGH, ACTION_LOW
from mfllm_env.games.macro.mean_field import MEAN_FIELD_FIELDS

FALLBACK_ACTION = (0.3, 1 / 3)
"""``(saving share, labour share)`` for a part of a reply that cannot be read (and for an
invalid ``Box`` action): the rule households' default shares."""

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4,
    "fourth": 4, "fourths": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6,
    "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9,
    "tenth": 10, "tenths": 10,
}  # fmt: skip
_PERIOD_HOURS = {"week": 52.0, "day": 5 * 52.0, "month": 12.0, "year": 1.0}
_WORD_NUMBER = rf"(?:(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_UNITS)}))?|(?:{'|'.join(_UNITS)}))"
_NUMBER = rf"(\d{{1,3}}(?:,\d{{3}})+|\d+(?:[.,]\d+)?|{_WORD_NUMBER})"
_FILLER = r"(?:\s+(?:about|around|roughly|approximately|some|only|maybe|just|exactly|~))*"
_HOURS = re.compile(
    rf"{_NUMBER}\s*(?:hours?|hrs?|h)\b(?:\s*(?:a|an|per|each|every|/)\s*(week|day|month|year))?"
)
_LABOUR_WORDS = (
    (re.compile(r"(?:\bnot|\bnever|n't|\bno longer|\bstop|\bquit)\s+(?:to\s+)?work"), None),
    (re.compile(r"\bover[\s-]?time\b"), 50.0),
    (re.compile(r"\bfull[\s-]?time\b"), 40.0),
    (re.compile(r"\bpart[\s-]?time\b"), 20.0),
)
_LABOUR_SHARE = re.compile(
    rf"\b(?:labou?r share|work(?:ing)? share)\s*(?:of|is|=|:)?\s*{_NUMBER}\s*(%|percent)?"
    rf"|\bwork\w*{_FILLER}\s+{_NUMBER}\s*(?:%|percent)\s+of\s+(?:the|my)\s+time"
)
_NUMERATOR = r"(a|an|one|two|three|four|five|six|seven|eight|nine|\d+)"
_FRACTION = rf"(?:{_NUMERATOR}[\s-]+)?({'|'.join(_DENOMINATORS)})\b"
_AMOUNT = rf"(?:{_FRACTION}|{_NUMBER}\s*(%|percent|per\s*cent)?|(nothing|none|everything|all))"
_SAVE = re.compile(
    rf"\b(save|saving|savings|put aside|set aside|spend|spending)\w*"
    rf"(?:\s+(?:rate|share)\s*(?:of|is|=|:)?)?{_FILLER}\s*(?:of\s+)?{_AMOUNT}"
)


def _number(text: str) -> float:
    """A number in digits ("40", "0.2", "2,000"; "1,5" is 1.5) or words ("forty-five")."""
    text = text.strip()
    if text[0].isdigit():
        thousands = re.fullmatch(r"\d{1,3}(?:,\d{3})+", text)
        return float(text.replace(",", "" if thousands else "."))
    parts = re.split(r"[\s-]+", text)
    return float(sum(_TENS.get(part, 0) + _UNITS.get(part, 0) for part in parts))


def _clip(share: float) -> float:
    return min(max(share, ACTION_LOW), ACTION_HIGH)


def read_labour(text: str) -> float | None:
    """The labour share a reply states (``text`` lower-cased), or ``None``."""
    for pattern, hours_a_week in _LABOUR_WORDS:
        if pattern.search(text):
            return (
                ACTION_LOW if hours_a_week is None else _clip(hours_a_week * 52 / HOURS_PER_SHARE)
            )
    match = _HOURS.search(text)
    if match:
        hours = _number(match.group(1)) * _PERIOD_HOURS[match.group(2) or "week"]
        return _clip(hours / HOURS_PER_SHARE)
    match = _LABOUR_SHARE.search(text)
    if match:
        number, percent = (
            (match.group(1), match.group(2)) if match.group(1) else (match.group(3), "%")
        )
        value = _number(number)
        return _clip(value / 100 if percent or value > 1 else value)
    return None


def read_saving(text: str) -> float | None:
    """The saving share a reply states (``text`` lower-cased), or ``None``."""
    for match in _SAVE.finditer(text):
        verb, numerator, denominator, number, percent, word = match.groups()
        if denominator:
            count = 1.0 if numerator in (None, "a", "an") else _number(numerator)
            share = count / _DENOMINATORS[denominator]
        elif number:
            value = _number(number)
            share = value / 100 if percent or value > 1 else value
        else:
            share = 0.0 if word in ("nothing", "none") else 1.0
        return _clip(1.0 - share if verb.startswith("spend") else share)
    return None


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) < 1e9 else f"{x:.3g}"


class HouseholdTextCodec:
    """The households' :class:`~mfllm_env.core.protocols.TextCodec` (module docstring)."""

    parts = ("saving", "labour")

    def prompt_parts(self, observation: Mapping[str, Any]) -> dict[str, str]:
        """``state`` (own ability and wealth), ``policy`` (the tax rates) and
        ``mean_field`` (the economy's text) of a household's observation."""
        ability, wealth = observation["household"].tolist()
        policy = observation["policy"].tolist()
        values = dict(zip(MEAN_FIELD_FIELDS, observation["mean_field"].tolist(), strict=True))
        return {
            "state": (
                f"Your ability is {ability:.3g} (a wage of {values['wage'] * ability:.3g} an "
                f"hour); your wealth is {_money(wealth)}."
            ),
            "policy": (
                f"Income tax: {100 * policy[0]:.1f}% of a median income, {100 * policy[1]:.1f}% "
                f"of a top-10% one. Wealth tax: {100 * policy[2]:.2f}% of a median wealth, "
                f"{100 * policy[3]:.2f}% of a top-10% one. The state spends "
                f"{100 * policy[4]:.1f}% of output; consumption tax {100 * policy[5]:.1f}%."
            ),
            "mean_field": observation["mean_field_text"],
            "question": (
                "How many hours a week will you work, and what share of your after-tax "
                "income will you save?"
            ),
        }

    def decode_texts(self, texts: Sequence[str]) -> Decoded:
        """One ``(saving, labour)`` row per text; unread parts from
        :data:`FALLBACK_ACTION`, named in ``fallbacks``."""
        actions = np.empty((len(texts), 2))
        fallbacks = []
        for row, text in enumerate(texts):
            lowered = text.lower()
            saving, labour = read_saving(lowered), read_labour(lowered)
            missing = tuple(
                name
                for name, value in zip(self.parts, (saving, labour), strict=True)
                if value is None
            )
            actions[row] = (
                FALLBACK_ACTION[0] if saving is None else saving,
                FALLBACK_ACTION[1] if labour is None else labour,
            )
            fallbacks.append(missing)
        return Decoded(actions, fallbacks)
