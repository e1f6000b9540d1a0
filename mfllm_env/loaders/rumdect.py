"""The MF-LLM paper's Weibo format (Rumdect, Ma et al. 2016): one JSON list per event.

``path`` is one event file or a folder of them (``*.json``, read in name order). A file
holds a JSON list whose element 0 is the source post (``"parent": null``) and whose other
elements are its reactions. Every element carries ``mid`` (the post id; ``id`` is used where
``mid`` is absent), ``uid``, ``parent`` (the ``mid`` it reposts or answers; ``null`` on a
reaction means the source post), ``text``, ``t`` (unix seconds) and the counters and user
fields of the Weibo API. A plain repost has ``text`` such as ``"转发微博"`` with the forwarded
chain in ``original_text``; both are kept as given (``original_text`` in the reaction's
metadata).

Author profiles map ``followers_count`` -> ``followers``, ``friends_count`` -> ``friends``,
``statuses_count`` -> ``statuses``, ``verified``, ``user_description`` -> ``description``,
``user_location`` -> ``location``, ``screen_name`` -> ``name``, ``gender`` (``"m"``/``"f"``)
and ``user_created_at`` -> ``created_at`` (unix seconds become ISO 8601 UTC; a string is
kept as given); ``bi_followers_count``, ``favourites_count``, ``verified_type``,
``verified_reason``, ``province``, ``city``, ``username``, ``user_geo_enabled`` and
``user_avatar`` are kept under their own names. The post fields ``id``, ``original_text``,
``reposts_count``, ``comments_count``, ``attitudes_count``, ``geo`` and ``picture`` go to
the reaction's metadata.

One scenario per file, ``"rumdect/<file stem>"``, ``language="zh"``,
``default_label_dimension="weibo"``, no labels. A post listed twice is kept once and
counted in ``metadata["repeated_posts"]`` (:func:`mfllm_env.loaders.common.without_repeats`).
A bad reaction element is one bad record; an unreadable file or a bad source element is one
bad file, and its event is left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mfllm_env.loaders.common import (
    ErrorPolicy,
    Located,
    RecordReader,
    ScenarioFormatError,
    check_limit,
    data_files,
    drop_none,
    existing_path,
    finish,
    read_json,
    time_sorted,
    type_name,
    unix_to_iso,
    without_repeats,
)
from mfllm_env.scenario import Author, Reaction, Scenario

PROFILE_TEXT_FIELDS = ("verified_reason", "province", "city", "username", "user_avatar")
PROFILE_COUNT_FIELDS = ("bi_followers_count", "favourites_count")
METADATA_TEXT_FIELDS = ("id", "original_text", "picture")
METADATA_COUNT_FIELDS = ("reposts_count", "comments_count", "attitudes_count")


def load_rumdect(
    path: str | os.PathLike[str], *, on_error: str = "raise", limit: int | None = None
) -> Iterator[Scenario]:
    """Stream Rumdect/MF-LLM Weibo events from one event file or a folder of them.

    ``on_error``/``limit``: see :mod:`mfllm_env.loaders`. A missing path gives
    ``FileNotFoundError``; a folder without ``*.json`` files gives ``ValueError``.
    """
    check_limit("limit", limit)
    policy = ErrorPolicy(on_error, "rumdect")
    root = existing_path(path)
    files = data_files(root, "*.json", "*.json event files")
    return finish(_events(files, policy), policy, limit)


def _events(files: list[Path], policy: ErrorPolicy) -> Iterator[Located]:
    for file in files:
        try:
            yield Located(_event(file, policy), file, None)
        except ScenarioFormatError as error:
            policy.handle(error)


def _event(file: Path, policy: ErrorPolicy) -> Scenario:
    elements = read_json(file)
    if not isinstance(elements, list) or not elements:
        raise ScenarioFormatError(
            file, None, None, f"expected a non-empty JSON list of posts, got {type_name(elements)}"
        )
    source = _post(elements[0], 0, file, None)
    if elements[0].get("parent") is not None:
        raise ScenarioFormatError(
            file,
            source.reaction_id,
            "parent",
            "element 0 must be the source post, with parent null",
        )
    reactions = []
    for position, element in enumerate(elements[1:], start=1):
        try:
            reactions.append(_post(element, position, file, source.reaction_id))
        except ScenarioFormatError as error:
            policy.handle(error)
    reactions, repeats = without_repeats(source, reactions, file, "mid", policy)
    metadata: dict[str, Any] = {"dataset": "rumdect", "event": file.stem}
    if repeats:
        metadata["repeated_posts"] = repeats
    return Scenario(
        scenario_id=f"rumdect/{file.stem}",
        source=source,
        reactions=time_sorted(reactions),
        language="zh",
        default_label_dimension="weibo",
        metadata=metadata,
    )


def _post(element: object, position: int, file: Path, source_id: str | None) -> Reaction:
    """One list element; ``source_id`` is ``None`` for the source post itself."""
    record = element if isinstance(element, dict) else {}
    name = record.get("mid", record.get("id"))
    reader = RecordReader(
        element, file, str(name) if isinstance(name, str | int) else f"element {position}"
    )
    post_id = reader.ident("mid") if "mid" in record else reader.ident("id")
    parent = reader.ident("parent", required=False)
    created: Any = reader.get("user_created_at", (str, int, float), required=False)
    if isinstance(created, int | float):
        created = unix_to_iso(reader.unix_time("user_created_at"))
    profile = {
        "followers": reader.count("followers_count"),
        "friends": reader.count("friends_count"),
        "statuses": reader.count("statuses_count"),
        "verified": reader.flag("verified"),
        "description": reader.text("user_description", required=False),
        "location": reader.text("user_location", required=False),
        "name": reader.text("screen_name", required=False),
        "gender": reader.text("gender", required=False),
        "created_at": created,
        "user_geo_enabled": reader.flag("user_geo_enabled"),
    }
    profile.update({field: reader.scalar_text(field) for field in PROFILE_TEXT_FIELDS})
    profile.update({field: reader.count(field) for field in PROFILE_COUNT_FIELDS})
    profile["verified_type"] = reader.integer("verified_type")
    metadata: dict[str, Any] = {
        field: reader.ident(field, required=False) for field in METADATA_TEXT_FIELDS
    }
    metadata.update({field: reader.count(field) for field in METADATA_COUNT_FIELDS})
    metadata["geo"] = reader.get("geo", (str, dict, list), required=False)
    return Reaction(
        reaction_id=post_id,
        author=Author(reader.ident("uid"), drop_none(profile)),
        text=reader.text("text"),
        timestamp=reader.unix_time("t"),
        parent_id=None if source_id is None else parent or source_id,
        language="zh",
        metadata=drop_none(metadata),
    )
