"""Checked ``type=`` functions for the ``mfllm`` options.

Each turns an option's text into its value or raises :class:`argparse.ArgumentTypeError`,
which argparse reports with the option's name and exit code 2, before any work starts::

    mfllm simulate: error: argument --seed: must be an integer >= 0 and <= 4294967295, got '-1'

Numbers are written in ASCII (``12``, ``-3``, ``0.5``, ``1e-4``); floats must be finite
(``nan``, ``inf`` and overflowing values such as ``1e400`` are refused). Counts are at
most ``2**31 - 1``, the environments' limit (:data:`mfllm_env.checks.MAX_COUNT`). Seeds
lie in ``[0, 2**32 - 1]``: numpy's global seeding, scikit-learn's ``random_state`` and
transformers' ``set_seed`` (used by the trainers) take no others. Options whose huge values
would pass and then fail or run for hours have bounds of their own: generated tokens
(:data:`TOKENS_MAX`), LoRA ranks (:data:`LORA_RANK_MAX`) and bootstrap resamples
(:data:`mfllm_env.checks.BOOTSTRAP_MAX`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from mfllm_env.checks import BOOTSTRAP_MAX, MAX_COUNT, SEED_MAX

TOKENS_MAX = 32_768
"""Most tokens one generation may ask for (per action, summary or message): the context
of the models this project uses (SmolLM2: 8,192 tokens) and of most others is smaller;
far beyond it a request fails or generates for hours."""
LORA_RANK_MAX = 1024
"""Largest LoRA rank: already the width of a small model's layers (SmolLM2-135M: 576);
beyond it the adapter is larger than the layers it adapts and soon exhausts memory."""
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _integer(text: str) -> int | None:
    """``text`` as an int written in ASCII digits; ``None`` if it is not one, or has so
    many digits that it is far out of any range (``int()`` of thousands of digits is slow,
    or refused)."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped) or len(stripped.lstrip("+-0")) > 30:
        return None
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


def int_in(least: int, most: int = MAX_COUNT) -> Callable[[str], int]:
    """The type of an integer option in ``least .. most`` (a count, a length, a seed)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value is None or not least <= value <= most:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {least} and <= {most}, got {text!r}"
            )
        return value

    parse.__name__ = "integer"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)
seed = int_in(0, SEED_MAX)
token_count = int_in(1, TOKENS_MAX)
lora_rank = int_in(1, LORA_RANK_MAX)
bootstrap_resamples = int_in(1, BOOTSTRAP_MAX)


def thread_count(text: str) -> int:
    """Torch threads: ``1`` to the number of CPUs of this machine (more only slow torch
    down, and far more crash it)."""
    value = positive_int(text)
    cpus = os.cpu_count() or 1
    if value > cpus:
        raise argparse.ArgumentTypeError(
            f"must be at most the {cpus} CPUs of this machine, got {text!r}"
        )
    return value


def given_path(text: str) -> Path:
    """A path that is not empty: an empty one (from an unset shell variable, say) would
    silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)


def adapter_folder(text: str) -> Path:
    """A PEFT adapter folder (one holding ``adapter_config.json``)."""
    path = Path(text)
    if not (path / "adapter_config.json").is_file():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a PEFT adapter folder (no adapter_config.json in it)"
        )
    return path


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
