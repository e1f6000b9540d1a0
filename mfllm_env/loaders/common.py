"""What every loader shares: the error type, the ``on_error`` policy, record-reading helpers.

A loader reports bad input as a :class:`ScenarioFormatError` naming the file, the record
and the field. With ``on_error="raise"`` (the default) the first one propagates; with
``on_error="skip"`` the bad record (or the bad file, where the file itself cannot be read)
is left out, the load goes on, and one :class:`ScenarioFormatWarning` per load says how
many were skipped and shows the first few reasons.

Bad input includes files that cannot be read (a folder, a symlink loop, no permission),
empty files, bytes that are not UTF-8 JSON, JSON nested too deeply or with numbers too
long to convert, values of the wrong JSON type, and numbers out of range: counts must be
whole, non-negative and fit in 64 bits; times must be finite unix seconds within the
years 1..9999. Two scenarios with the same ``scenario_id`` in one load are refused too
(:func:`finish`): the second is a bad record naming where the first came from. A post that
an event file lists twice (the same id, author, text and time; the Weibo crawls do) is
kept once, and one :class:`RepeatedPostWarning` per load counts the repeats
(:func:`without_repeats`); two different posts under one id are a bad record.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from mfllm_env.scenario import Reaction, Scenario

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")
SHOWN_REASONS = 3
"""How many skip reasons the end-of-load warning quotes."""

API_DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"
"""Dates as the Twitter v1.1 and Weibo APIs write them: ``Wed Jan 07 11:07:51 +0000 2015``."""
UNIX_TIME_RANGE = (
    datetime(1, 1, 1, tzinfo=UTC).timestamp(),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp(),
)
"""The unix seconds a time field may hold: the years 1..9999 (what a date can show)."""
INTEGER_RANGE = (-(2**63), 2**63 - 1)
"""The values an integer field may hold: those of a 64-bit integer (what numpy can hold)."""


class ScenarioFormatError(ValueError):
    """A record of a data file that cannot be read as the format says.

    ``path`` is the file (an archive member is written ``archive:member``), ``record`` the
    record within it (a post id, ``"line 3"``, ``"element 2"``; ``None`` where the whole
    file is unreadable) and ``field`` the offending field (``None`` where no single field
    is to blame). ``reason`` says what is wrong. The message names all of them.
    """

    def __init__(
        self, path: str | os.PathLike[str], record: str | None, field: str | None, reason: str
    ) -> None:
        self.path = str(path)
        self.record = record
        self.field = field
        self.reason = reason
        parts = [self.path]
        if record is not None:
            parts.append(f"record {record}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(": ".join([*parts, reason]))


class ScenarioFormatWarning(UserWarning):
    """Emitted once per load run with ``on_error="skip"`` that skipped something."""


class MissingLabelWarning(ScenarioFormatWarning):
    """Emitted once per load where posts that should carry a human label have none
    (a RumourEval post the key files do not label); the warning gives the count."""


class RepeatedPostWarning(ScenarioFormatWarning):
    """Emitted once per load where event files list a post more than once (kept once);
    the warning gives the count and the first one."""


class Located(NamedTuple):
    """A scenario and where it was read: the file (or folder) and the record within it."""

    scenario: Scenario
    path: str | os.PathLike[str]
    record: str | None


class ErrorPolicy:
    """Applies ``on_error`` to the format errors of one load.

    ``handle(error)`` raises the error under ``"raise"`` and records it under ``"skip"``;
    ``repeated_post`` counts a post listed again (kept once, see :func:`without_repeats`);
    ``warn()`` emits the end-of-load warnings: one when something was skipped, one when
    posts were listed again.
    """

    def __init__(self, on_error: str, source: str) -> None:
        check_choice("on_error", on_error, ON_ERROR_CHOICES)
        self.on_error = on_error
        self.source = source
        self.skipped = 0
        self.reasons: list[str] = []
        self.repeated = 0
        self.first_repeat: str | None = None

    def handle(self, error: ScenarioFormatError) -> None:
        if self.on_error == "raise":
            raise error
        self.skipped += 1
        if len(self.reasons) < SHOWN_REASONS:
            self.reasons.append(str(error))

    def repeated_post(self, where: str | os.PathLike[str], post_id: str) -> None:
        """Count a post that ``where`` lists again (see :func:`without_repeats`)."""
        self.repeated += 1
        if self.first_repeat is None:
            self.first_repeat = f"{where}: post {post_id!r}"

    def warn(self) -> None:
        """The end-of-load warnings: what was skipped, then what was listed twice."""
        if self.skipped:
            shown = "; ".join(self.reasons)
            more = (
                f"; and {self.skipped - len(self.reasons)} more"
                if self.skipped > len(self.reasons)
                else ""
            )
            warnings.warn(
                f"{self.source}: skipped {self.skipped} bad record(s) or file(s): {shown}{more}",
                ScenarioFormatWarning,
                stacklevel=3,
            )
        if self.repeated:
            warnings.warn(
                f"{self.source}: kept once {self.repeated} post(s) that an event file lists "
                f"more than once (first: {self.first_repeat})",
                RepeatedPostWarning,
                stacklevel=3,
            )


def finish(
    scenarios: Iterator[Located], policy: ErrorPolicy, limit: int | None
) -> Iterator[Scenario]:
    """Yield the scenarios of ``scenarios`` up to ``limit``, then close it and emit the skip
    warning. A scenario whose id an earlier one had is a bad record (handed to ``policy``)."""
    first_seen: dict[str, str] = {}
    count = 0
    try:
        if limit == 0:
            return
        for scenario, path, record in scenarios:
            if not is_unicode(scenario.scenario_id):
                policy.handle(
                    ScenarioFormatError(
                        path, record, "file name", "not valid UTF-8 (it names the scenario)"
                    )
                )
                continue
            earlier = first_seen.get(scenario.scenario_id)
            if earlier is not None:
                policy.handle(
                    ScenarioFormatError(
                        path,
                        record,
                        "scenario_id",
                        f"duplicate scenario id {scenario.scenario_id!r}: {earlier} has it too",
                    )
                )
                continue
            first_seen[scenario.scenario_id] = (
                str(path) if record is None else f"{path}: record {record}"
            )
            yield scenario
            count += 1
            if limit is not None and count >= limit:
                return
    finally:
        close = getattr(scenarios, "close", None)
        if close is not None:
            close()
        policy.warn()


def check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def existing_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path`, or a ``FileNotFoundError`` naming it where it does not
    exist (a broken symlink included), a :class:`ScenarioFormatError` where it cannot be
    looked at (a symlink loop, no permission) and a ``ValueError`` if it is not a path."""
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"expected a file or folder path, got {type_name(path)} {path!r:.60}")
    resolved = Path(path)
    try:
        resolved.stat()
    except (FileNotFoundError, NotADirectoryError):
        what = "a symlink to nothing" if resolved.is_symlink() else "no such file or folder"
        raise FileNotFoundError(f"{what}: {resolved}") from None
    except OSError as error:
        raise unreadable(resolved, error) from None
    return resolved


def existing_paths(
    name: str, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
) -> list[Path]:
    """One path (a string or path object) or a sequence of them, each checked by
    :func:`existing_path`; ``name`` is the option named in errors."""
    if isinstance(paths, str | os.PathLike):
        return [existing_path(paths)]
    if isinstance(paths, bytes | Mapping) or not isinstance(paths, Iterable):
        raise ValueError(f"{name} must be a path or a list of paths, got {paths!r:.60}")
    return [existing_path(path) for path in paths]


def data_files(root: Path, pattern: str, what: str) -> list[Path]:
    """``root`` itself if it is a file, else its files matching ``pattern`` in name order;
    ``ValueError`` for a folder with none (``what`` names the files in the message)."""
    files = sorted(root.glob(pattern)) if root.is_dir() else [root]
    if not files:
        raise ValueError(f"{root}: no {what} in this folder")
    return files


def parse_json(data: bytes, path: str | os.PathLike[str], record: str | None = None) -> Any:
    """Decode JSON text (a UTF-8 byte-order mark is allowed), or raise a
    :class:`ScenarioFormatError` saying where and why it breaks. A string with an unpaired
    surrogate escape (``"\\ud83d"`` alone, half an emoji) is refused: it is not text that
    can be written, printed or tokenised."""
    if not data.strip():
        raise ScenarioFormatError(path, record, None, "empty: no JSON value")
    try:
        value = json.loads(data)
    except UnicodeDecodeError as error:
        raise ScenarioFormatError(path, record, None, f"not UTF-8 text ({error})") from None
    except json.JSONDecodeError as error:
        raise ScenarioFormatError(
            path,
            record,
            None,
            f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}",
        ) from None
    except RecursionError:
        raise ScenarioFormatError(path, record, None, "JSON nested too deeply to read") from None
    except ValueError as error:  # an integer with more digits than Python converts
        raise ScenarioFormatError(path, record, None, f"unreadable JSON number: {error}") from None
    if SURROGATE_ESCAPE.search(data):
        field = lone_surrogate_field(value)
        if field is not None:
            raise ScenarioFormatError(
                path,
                record,
                field or None,
                "an unpaired UTF-16 surrogate escape: not valid Unicode text",
            )
    return value


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""What JSON text holding a surrogate (paired or not) must contain."""


def lone_surrogate_field(value: Any, path: str = "") -> str | None:
    """Where in ``value`` the first string holding an unpaired surrogate is: a field path
    such as ``"reactions[2].text"`` (``"<key>"`` for an object key, ``""`` for ``value``
    itself); ``None`` where there is none."""
    if isinstance(value, str):
        return None if is_unicode(value) else path
    if isinstance(value, list):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    elif isinstance(value, dict):
        if not all(is_unicode(key) for key in value):
            return f"{path}.<key>" if path else "<key>"
        children = [(f"{path}.{key}" if path else key, item) for key, item in value.items()]
    else:
        return None
    for name, item in children:
        found = lone_surrogate_field(item, name)
        if found is not None:
            return found
    return None


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no unpaired surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_file(path: Path) -> bytes:
    """The bytes of a data file, or a :class:`ScenarioFormatError` naming it where it cannot
    be read (a folder, a symlink loop, no permission, ...)."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise unreadable(path, error) from None


def unreadable(path: str | os.PathLike[str], error: OSError) -> ScenarioFormatError:
    """The format error of a data file the system cannot read (``error`` says why)."""
    return ScenarioFormatError(path, None, None, f"cannot read: {error.strerror or error}")


def read_json(path: Path, record: str | None = None) -> Any:
    """Read and decode one JSON file (see :func:`read_file` and :func:`parse_json`)."""
    return parse_json(read_file(path), path, record)


class RecordReader:
    """Typed access to the fields of one JSON object, with errors naming path/record/field."""

    def __init__(self, data: object, path: str | os.PathLike[str], record: str | None) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioFormatError(
                path, record, None, f"expected a JSON object, got {type_name(data)}"
            )
        self.data: Mapping[str, Any] = data
        self.path = str(path)
        self.record = record

    def error(self, field: str | None, reason: str) -> ScenarioFormatError:
        return ScenarioFormatError(self.path, self.record, field, reason)

    def get(self, field: str, kinds: tuple[type, ...], *, required: bool = True) -> Any:
        """The value of ``field`` if it has one of ``kinds`` (``None`` if optional and absent).

        ``bool`` is never accepted where ``int``/``float`` is asked for.
        """
        if field not in self.data or (not required and self.data[field] is None):
            if required:
                raise self.error(field, "missing required field")
            return None
        value = self.data[field]
        if isinstance(value, bool) and bool not in kinds:
            value_ok = False
        else:
            value_ok = isinstance(value, kinds)
        if not value_ok:
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.error(field, f"expected {wanted}, got {type_name(value)} {value!r:.60}")
        return value

    def text(self, field: str, *, required: bool = True) -> str | None:
        return self.get(field, (str,), required=required)

    def ident(self, field: str, *, required: bool = True) -> str | None:
        """An id given as a string or an integer, returned as a string."""
        value = self.get(field, (str, int), required=required)
        return None if value is None else str(value)

    def unix_time(self, field: str, *, required: bool = True) -> float | None:
        """Unix seconds (a number within :data:`UNIX_TIME_RANGE`), as a float."""
        value = self.get(field, (int, float), required=required)
        if value is None:
            return None
        low, high = UNIX_TIME_RANGE
        if not (math.isfinite(value) and low <= value <= high):
            raise self.error(
                field,
                f"expected unix seconds of the years 1..9999 ({low:.0f} .. {high:.0f}), "
                f"got {value!r:.60}",
            )
        return float(value)

    def scalar_text(self, field: str) -> str | None:
        """An optional descriptive field given as a string or a number, as a string."""
        value = self.get(field, (str, int, float), required=False)
        return None if value is None else str(value)

    def integer(self, field: str) -> int | None:
        """An optional whole number within :data:`INTEGER_RANGE`, as an int (integral floats
        accepted)."""
        value = self.get(field, (int, float), required=False)
        if value is None:
            return None
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self.error(field, f"expected a whole number, got {value!r}")
        low, high = INTEGER_RANGE
        if not low <= value <= high:
            raise self.error(field, f"expected a 64-bit integer, got {value!r:.60}")
        return int(value)

    def count(self, field: str) -> int | None:
        """An optional non-negative :meth:`integer`."""
        value = self.integer(field)
        if value is not None and value < 0:
            raise self.error(field, f"expected a count (>= 0), got {value!r}")
        return value

    def flag(self, field: str) -> bool | None:
        """An optional boolean (0/1 accepted)."""
        value = self.get(field, (bool, int), required=False)
        if value is None:
            return None
        if value not in (0, 1):
            raise self.error(field, f"expected a boolean, got {value!r}")
        return bool(value)

    def timestamp(self, field: str, parse: Callable[[str], float], what: str) -> float:
        """A required date string turned into unix seconds by ``parse``."""
        raw = self.text(field)
        try:
            return parse(raw)
        except (ValueError, OverflowError):
            raise self.error(field, f"cannot parse {raw!r} as {what}") from None


def parse_api_date(text: str) -> float:
    """Unix seconds of an API date (:data:`API_DATE_FORMAT`); ``ValueError`` if malformed."""
    return datetime.strptime(text, API_DATE_FORMAT).timestamp()


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def unix_to_iso(seconds: float) -> str:
    """Unix seconds as an ISO 8601 UTC string (how loaders normalise ``created_at``)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of the entries whose value is not ``None``."""
    return {key: value for key, value in mapping.items() if value is not None}


def without_repeats(
    source: Reaction,
    reactions: Iterable[Reaction],
    where: str | os.PathLike[str],
    id_field: str,
    policy: ErrorPolicy,
) -> tuple[list[Reaction], int]:
    """``reactions`` with each post once (a :class:`~mfllm_env.scenario.Scenario` refuses
    two posts with one id), and how many were left out. A reaction with the id of
    ``source`` or of an earlier reaction and the same author, text and time is that post
    listed again: left out and counted, also in ``policy`` (its parent may differ: the
    first listing's is kept). One that differs in any of them is a bad record of
    ``where`` (``policy.handle``)."""
    first: dict[str, Reaction] = {source.reaction_id: source}
    kept = []
    repeats = 0
    for reaction in reactions:
        earlier = first.setdefault(reaction.reaction_id, reaction)
        if earlier is reaction:
            kept.append(reaction)
        elif (earlier.author.author_id, earlier.text, earlier.timestamp) == (
            reaction.author.author_id,
            reaction.text,
            reaction.timestamp,
        ):
            policy.repeated_post(where, reaction.reaction_id)
            repeats += 1
        else:
            policy.handle(
                ScenarioFormatError(
                    where,
                    reaction.reaction_id,
                    id_field,
                    "an earlier post of the event has this id, with another author, text or time",
                )
            )
    return kept, repeats


def time_sorted(reactions: Iterable[Reaction]) -> list[Reaction]:
    """Reactions in time order; a stable sort, so ties keep their input order."""
    return sorted(reactions, key=lambda reaction: reaction.timestamp)
