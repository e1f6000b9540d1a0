"""Loaders: real data sets as :class:`~mfllm_env.scenario.Scenario` streams.

``iter_scenarios(source, path, **options)`` streams the scenarios of one data set;
``load_scenarios`` returns them as a list. ``source`` names a loader of :data:`LOADERS`:

* ``"rumoureval"`` (:mod:`.rumoureval`): RumourEval 2019 threads, SDQC stance labels;
  options ``split``, ``episode``, ``platform``, ``keys``, ``pheme``;
* ``"ced"`` (:mod:`.ced`): CED Weibo events from the archive or a folder; options
  ``max_reactions``, ``undated_year``;
* ``"rumdect"`` (:mod:`.rumdect`): the MF-LLM paper's Weibo JSON (one list per event);
* ``"jsonl"`` (:mod:`.jsonl`): this package's own format, written by
  :func:`write_scenarios_jsonl`.

Every loader also takes ``on_error`` and ``limit``:

* ``on_error="raise"`` (default): the first bad record raises a :class:`ScenarioFormatError`
  (a ``ValueError``) naming the file, the record and the field. ``on_error="skip"``: bad
  records (or files that cannot be read at all) are left out, the rest loads, and one
  :class:`ScenarioFormatWarning` per load says how many were skipped and quotes the first
  few reasons. :mod:`.common` lists what counts as bad; among it, a scenario whose
  ``scenario_id`` an earlier scenario of the same load had (a RumourEval thread copied
  into two release folders, a JSONL line repeated), which is refused naming both places.
* ``limit``: at most this many scenarios (``None``: all).

Where human labels are expected but missing (a RumourEval folder without key files, or
with the keys of other data), the load is refused; posts the keys leave unlabelled are
counted in one :class:`MissingLabelWarning` (see :mod:`.rumoureval`). A post that an event
file lists twice (the Weibo crawls do) is kept once, counted in one
:class:`RepeatedPostWarning`; reaction ids are unique within every scenario.

In every scenario the reactions are in time order (a stable sort on ``timestamp``, so ties
keep the data's order), labels, metadata and profiles are plain dicts, timestamps floats,
and author profiles use the keys :class:`~mfllm_env.scenario.Author` documents where the
data has them. Options are checked when the loader is called, before the first scenario is
read: an unknown source or option, or a bad option value, raises ``ValueError`` naming the
valid ones; a missing path raises ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

from mfllm_env.loaders.ced import load_ced
from mfllm_env.loaders.common import (
    MissingLabelWarning,
    RepeatedPostWarning,
    ScenarioFormatError,
    ScenarioFormatWarning,
)
from mfllm_env.loaders.jsonl import load_jsonl, write_scenarios_jsonl
from mfllm_env.loaders.rumdect import load_rumdect
from mfllm_env.loaders.rumoureval import load_rumoureval
from mfllm_env.scenario import Scenario

Loader = Callable[..., Iterator[Scenario]]

LOADERS: dict[str, Loader] = {
    "rumoureval": load_rumoureval,
    "ced": load_ced,
    "rumdect": load_rumdect,
    "jsonl": load_jsonl,
}
"""Loader functions by source name: ``loader(path, **options) -> Iterator[Scenario]``."""


def loader_options(source: str) -> tuple[str, ...]:
    """The option names the loader of ``source`` accepts (``ValueError`` if unknown)."""
    parameters = inspect.signature(_loader(source)).parameters
    return tuple(name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY)


def iter_scenarios(source: str, path: str | os.PathLike[str], **options: Any) -> Iterator[Scenario]:
    """Stream the scenarios of data set ``source`` found at ``path``.

    ``options`` are the loader's keyword options (see the module docstring); an unknown one
    raises ``ValueError`` listing the valid ones. Scenarios are read lazily, one at a time.
    """
    valid = loader_options(source)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for source {source!r}; "
            f"valid: {', '.join(valid)}"
        )
    return LOADERS[source](path, **options)


def load_scenarios(source: str, path: str | os.PathLike[str], **options: Any) -> list[Scenario]:
    """All scenarios of :func:`iter_scenarios` as a list (mind memory for large data sets)."""
    return list(iter_scenarios(source, path, **options))


def _loader(source: str) -> Loader:
    try:
        return LOADERS[source]
    except (KeyError, TypeError):  # TypeError: an unhashable source (a list)
        raise ValueError(
            f"unknown scenario source {source!r}; valid: {', '.join(LOADERS)}"
        ) from None


__all__ = [
    "LOADERS",
    "MissingLabelWarning",
    "RepeatedPostWarning",
    "ScenarioFormatError",
    "ScenarioFormatWarning",
    "iter_scenarios",
    "load_ced",
    "load_jsonl",
    "load_rumdect",
    "load_rumoureval",
    "load_scenarios",
    "loader_options",
    "write_scenarios_jsonl",
]
