"""Scenario specifications on the command line: ``SOURCE[:PATH[:SELECTOR]]``.

- ``synthetic``, ``synthetic:SEED`` or ``synthetic:FIRST-LAST`` -- the embedded synthetic
  event (seed 0 by default; a range gives one episode per seed; seeds are written in ASCII
  digits, nothing else: no sign, space, ``_`` or other script's digits);
- ``rumoureval:PATH`` -- RumourEval events (one episode per event), ``rumoureval:PATH:EVENT``
  for one event (e.g. ``charliehebdo``), a ``train``/``dev``/``test`` split, or splits
  joined by ``+`` (``train+dev``: each event's threads of both splits merged);
- ``ced:PATH``, ``rumdect:PATH``, ``jsonl:PATH`` -- every scenario those loaders find.

``min_reactions`` keeps only the scenarios with at least that many reactions (the
long-horizon benchmark's events); ``limit`` counts the scenarios kept.

:func:`fit_scenarios` derives the scenarios classifier policies are fitted on: a given
spec, or the source's default (:data:`FIT_DEFAULTS`), less any scenario that shares a
reaction with the evaluated ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from mfllm_env.loaders import LOADERS, iter_scenarios
from mfllm_env.scenario import Scenario
from mfllm_env.synthetic import synthetic_scenario

SPLITS = ("train", "dev", "test")
SYNTHETIC_SEEDS = re.compile(r"([0-9]+)(?:-([0-9]+))?")
"""``SEED`` or ``FIRST-LAST`` in ASCII digits (``int`` alone would also take ``"٣"``,
``" 3"``, ``"+3"`` or ``"1_0"``)."""


def path_and_selector(rest: str) -> tuple[Path, str | None]:
    """Split the ``PATH[:SELECTOR]`` part of a spec (a path may itself hold a colon; a
    leading ``~`` is the home folder, which the shell does not expand after ``SOURCE:``)."""
    path = Path(rest).expanduser()
    if not path.exists() and ":" in rest:
        head, _, selector = rest.rpartition(":")
        return Path(head).expanduser(), selector
    return path, None


def is_split_selector(selector: str | None) -> bool:
    """Whether a rumoureval spec's ``SELECTOR`` names splits (``dev``, ``train+dev``)
    rather than an event."""
    return selector is not None and all(part in SPLITS for part in selector.split("+"))


def iter_spec(
    spec: str, *, limit: int | None = None, min_reactions: int | None = None
) -> Iterator[Scenario]:
    """The scenarios a spec names (see the module docstring) with at least
    ``min_reactions`` reactions, at most ``limit`` (>= 1) of them; errors say what is
    wrong."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if min_reactions is not None and min_reactions < 1:
        raise ValueError(f"min_reactions must be >= 1, got {min_reactions}")
    kept = (
        scenario
        for scenario in _spec_scenarios(spec)
        if min_reactions is None or len(scenario.reactions) >= min_reactions
    )
    count = 0
    for scenario in kept:
        if limit is not None and count >= limit:
            return
        yield scenario
        count += 1
    if count == 0:
        raise ValueError(
            f"{spec!r}: no scenarios found"
            + (f" with at least {min_reactions} reactions" if min_reactions else "")
        )


def _spec_scenarios(spec: str) -> Iterator[Scenario]:
    """Every scenario ``spec`` names, lazily; at least one (``ValueError`` otherwise)."""
    source, _, rest = spec.partition(":")
    if source == "synthetic":
        match = SYNTHETIC_SEEDS.fullmatch(rest or "0")
        if match is None:
            raise ValueError(
                f"synthetic seeds must be SEED or FIRST-LAST in ASCII digits, got {rest!r}"
            )
        first, last = match.groups()
        seeds = range(int(first), int(last or first) + 1)
        if not seeds:
            raise ValueError(f"empty synthetic seed range {rest!r}")
        for seed in seeds:
            yield synthetic_scenario(seed=seed)
        return
    if source not in LOADERS:
        raise ValueError(
            f"unknown scenario source {source!r} in {spec!r}; "
            f"use synthetic[:SEED] or one of {sorted(LOADERS)} followed by :PATH"
        )
    if not rest:
        raise ValueError(f"{spec!r}: give a path, as in {source}:PATH")
    path, selector = path_and_selector(rest)
    if selector == "":
        raise ValueError(f"{spec!r}: nothing after the last ':'; give an event or a split")
    if not path.exists():
        raise FileNotFoundError(f"{spec!r}: no such file or folder: {path}")
    options: dict[str, object] = {}
    if source == "rumoureval":
        options["episode"] = "event"
        if is_split_selector(selector):
            options["split"] = selector
    elif selector is not None:
        raise ValueError(f"{spec!r}: only rumoureval specs take a :SELECTOR")
    count = 0
    for scenario in iter_scenarios(source, path, **options):
        if selector and "split" not in options and scenario.metadata.get("event") != selector:
            continue
        yield scenario
        count += 1
    if count == 0:
        raise ValueError(
            f"{spec!r}: no scenarios found" + (f" for {selector!r}" if selector else "")
        )


SYNTHETIC_FIT_SEEDS = range(1000, 1020)
"""The synthetic seeds classifier policies are fitted on by default."""
FIT_DEFAULTS = ("synthetic", "rumoureval")
"""Sources whose classifier policies have a default fit set."""


def has_fit_set(spec: str, fit: str | None = None) -> bool:
    """Whether classifier policies evaluated on ``spec`` have a fit set: ``fit`` given, or
    the source of ``spec`` has a default one."""
    return bool(fit) or spec.partition(":")[0] in FIT_DEFAULTS


def fit_scenarios(
    spec: str, evaluated: list[Scenario], fit: str | None = None
) -> tuple[list[Scenario], str]:
    """The scenarios classifier policies are fitted on when evaluated on ``spec``'s
    ``evaluated`` scenarios, and a description of them: those of the ``fit`` spec, or by
    default 20 other synthetic seeds for ``synthetic`` and the train split for
    ``rumoureval`` (``ValueError`` for another source without ``fit``).

    Any fit scenario that shares a reaction with an evaluated one is left out, so that a
    policy is never scored on reactions it was fitted on (for RumourEval events, the
    default fit is the train split less the evaluated events: leave-event-out).
    """
    if fit:
        fitted, described = list(iter_spec(fit)), fit
    else:
        source, _, rest = spec.partition(":")
        if source == "synthetic":
            seeds = SYNTHETIC_FIT_SEEDS
            described = f"synthetic:{seeds.start}-{seeds.stop - 1}"
        elif source == "rumoureval":
            described = f"rumoureval:{path_and_selector(rest)[0]}:train"
        else:
            raise ValueError(f"classifier policies need a fit spec for {source!r} scenarios")
        fitted = list(iter_spec(described))
    seen = {r.reaction_id for scenario in evaluated for r in scenario.reactions}
    kept = [s for s in fitted if seen.isdisjoint(r.reaction_id for r in s.reactions)]
    if len(kept) < len(fitted):
        left_out = len(fitted) - len(kept)
        described += f", less {left_out} scenario(s) sharing reactions with the evaluated ones"
    if not kept:
        raise ValueError(f"nothing left to fit on: every scenario of {described!r} is evaluated")
    return kept, described
