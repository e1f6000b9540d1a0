"""The package's own scenario format: JSON Lines, one scenario per line.

Each line is one JSON object (UTF-8; blank lines are ignored) with these fields, named as
in :mod:`mfllm_env.scenario`:

* ``scenario_id`` (string, required): unique within the file (or folder): a second line
  with an id already read is a bad record;
* ``language`` (string, default ``"en"``): the event's main language;
* ``default_label_dimension`` (string, default ``"stance"``);
* ``metadata`` (object, default ``{}``): event-level facts;
* ``source`` (reaction object, required): the source post;
* ``reactions`` (list of reaction objects, default ``[]``): in time order (non-decreasing
  ``timestamp``).

A reaction object has:

* ``reaction_id`` (string, required);
* ``author`` (object, required): ``author_id`` (string, required) and ``profile`` (object,
  default ``{}``; see :class:`~mfllm_env.scenario.Author` for the normalised keys, whose
  values are checked: ``followers``, ``friends``, ``statuses`` whole numbers >= 0,
  ``verified`` a boolean, the others strings; any of them may be null);
* ``text`` (string, required; ``""`` for a plain repost);
* ``timestamp`` (number, required): unix seconds (of the years 1..9999);
* ``parent_id`` (string or null, default null): the post it answers;
* ``language`` (string, default: the scenario's ``language``);
* ``labels`` (object of string to string, default ``{}``): label dimension -> label;
* ``metadata`` (object, default ``{}``).

:func:`write_scenarios_jsonl` writes every field, so any scenario whose metadata and
profiles hold JSON values (dicts with string keys, lists, strings, numbers, booleans, null)
reads back equal (``==``) to what was written. Tuples would come back as lists.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mfllm_env.loaders.common import (
    ErrorPolicy,
    Located,
    RecordReader,
    ScenarioFormatError,
    check_limit,
    data_files,
    existing_path,
    finish,
    parse_json,
    unreadable,
)
from mfllm_env.runs import PARTIAL
from mfllm_env.scenario import Author, Reaction, Scenario

PROFILE_COUNTS = ("followers", "friends", "statuses")
PROFILE_TEXTS = ("description", "location", "name", "gender", "created_at")
"""The normalised profile keys (see :class:`~mfllm_env.scenario.Author`) checked on load."""


def load_jsonl(
    path: str | os.PathLike[str], *, on_error: str = "raise", limit: int | None = None
) -> Iterator[Scenario]:
    """Stream scenarios from a JSONL file, or from every ``*.jsonl`` of a folder (name order).

    A bad line is one bad record (its scenario is left out under ``on_error="skip"``); the
    error names the file, ``"line N"`` and the field path (``"reactions[3].timestamp"``).
    A file that cannot be read, or holds no scenario at all, is one bad file.
    ``on_error``/``limit``: see :mod:`mfllm_env.loaders`.
    """
    check_limit("limit", limit)
    policy = ErrorPolicy(on_error, "jsonl")
    root = existing_path(path)
    return finish(_lines(data_files(root, "*.jsonl", "*.jsonl files"), policy), policy, limit)


def write_scenarios_jsonl(scenarios: Iterable[Scenario], path: str | os.PathLike[str]) -> int:
    """Write ``scenarios`` to ``path`` as JSONL (one per line, UTF-8); return how many.

    Streams: scenarios are written as they come, into ``PATH.partial``, which replaces
    ``path`` once the last one is written (an interrupted write leaves the old file, or
    none). A value that JSON cannot hold (a set, an object) raises ``TypeError`` naming the
    scenario, an item that is not a :class:`Scenario` one naming its position; a ``path``
    that is a folder raises ``IsADirectoryError`` before anything is written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a JSONL file", str(path))
    partial = path.with_name(path.name + PARTIAL)
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as out:
            for scenario in scenarios:
                if not isinstance(scenario, Scenario):
                    raise TypeError(
                        f"item {count} to write is not a Scenario: {scenario!r:.80}"
                    )
                try:
                    line = json.dumps(scenario_to_json(scenario), ensure_ascii=False)
                except TypeError as error:
                    raise TypeError(f"scenario {scenario.scenario_id!r}: {error}") from None
                out.write(line + "\n")
                count += 1
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def scenario_to_json(scenario: Scenario) -> dict[str, Any]:
    """The JSON object of one scenario (the line :func:`write_scenarios_jsonl` writes)."""
    return {
        "scenario_id": scenario.scenario_id,
        "language": scenario.language,
        "default_label_dimension": scenario.default_label_dimension,
        "metadata": dict(scenario.metadata),
        "source": _reaction_to_json(scenario.source),
        "reactions": [_reaction_to_json(reaction) for reaction in scenario.reactions],
    }


def _reaction_to_json(reaction: Reaction) -> dict[str, Any]:
    return {
        "reaction_id": reaction.reaction_id,
        "author": {
            "author_id": reaction.author.author_id,
            "profile": dict(reaction.author.profile),
        },
        "text": reaction.text,
        "timestamp": float(reaction.timestamp),
        "parent_id": reaction.parent_id,
        "language": reaction.language,
        "labels": dict(reaction.labels),
        "metadata": dict(reaction.metadata),
    }


def _lines(files: list[Path], policy: ErrorPolicy) -> Iterator[Located]:
    for file in files:
        try:
            lines = file.open("rb")
        except OSError as error:
            policy.handle(unreadable(file, error))
            continue
        with lines:
            empty = True
            for number, line in enumerate(lines, start=1):
                line = line.strip()
                if not line:
                    continue
                empty = False
                record = f"line {number}"
                try:
                    data = parse_json(line, file, record)
                    yield Located(_scenario(data, file, number), file, record)
                except ScenarioFormatError as error:
                    policy.handle(error)
        if empty:
            policy.handle(ScenarioFormatError(file, None, None, "empty: no scenario lines"))


def _scenario(data: object, file: Path, number: int) -> Scenario:
    record = f"line {number}"
    reader = _Reader(data, file, record, "")
    language = reader.get("language", (str,), required=False) or "en"
    source = _reaction(reader.get("source", (dict,)), file, record, "source", language)
    reactions = [
        _reaction(item, file, record, f"reactions[{index}]", language)
        for index, item in enumerate(reader.get("reactions", (list,), required=False) or [])
    ]
    scenario_id = reader.get("scenario_id", (str,))
    try:
        return Scenario(
            scenario_id=scenario_id,
            source=source,
            reactions=reactions,
            language=language,
            default_label_dimension=reader.get("default_label_dimension", (str,), required=False)
            or "stance",
            metadata=reader.get("metadata", (dict,), required=False) or {},
        )
    except ValueError as error:
        raise ScenarioFormatError(file, record, "reactions", str(error)) from None


def _reaction(data: object, file: Path, record: str, prefix: str, language: str) -> Reaction:
    reader = _Reader(data, file, record, prefix)
    author = _Reader(reader.get("author", (dict,)), file, record, f"{prefix}.author")
    profile = author.get("profile", (dict,), required=False) or {}
    labels = reader.get("labels", (dict,), required=False) or {}
    for dimension, label in labels.items():
        if not isinstance(label, str):
            raise reader.error(f"labels.{dimension}", f"expected str, got {label!r:.60}")
    return Reaction(
        reaction_id=reader.get("reaction_id", (str,)),
        author=Author(
            author.get("author_id", (str,)),
            _checked_profile(_Reader(profile, file, record, f"{prefix}.author.profile")),
        ),
        text=reader.get("text", (str,)),
        timestamp=reader.unix_time("timestamp"),
        parent_id=reader.get("parent_id", (str,), required=False),
        language=reader.get("language", (str,), required=False) or language,
        labels=labels,
        metadata=reader.get("metadata", (dict,), required=False) or {},
    )


def _checked_profile(profile: RecordReader) -> dict[str, Any]:
    """The profile as given, once its normalised keys hold values of their types."""
    for field in PROFILE_TEXTS:
        profile.text(field, required=False)
    profile.get("verified", (bool,), required=False)
    counts = {field: profile.count(field) for field in PROFILE_COUNTS}
    return {
        **profile.data,
        **{field: count for field, count in counts.items() if count is not None},
    }


class _Reader(RecordReader):
    """A :class:`RecordReader` whose field names carry their path in the line's object."""

    def __init__(self, data: object, file: Path, record: str, prefix: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioFormatError(file, record, prefix or None, "expected a JSON object")
        super().__init__(data, file, record)
        self.prefix = prefix

    def error(self, field: str | None, reason: str) -> ScenarioFormatError:
        path = f"{self.prefix}.{field}" if self.prefix and field else field or self.prefix
        return super().error(path or None, reason)
