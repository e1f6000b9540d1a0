"""CED Weibo (Song et al. 2018): 3,387 Chinese Weibo events, rumour or not.

``path`` is the archive ``CED_Dataset.tar.xz`` (any tar compression), an unpacked copy
(the folder holding ``original-microblog/``, ``rumor-repost/`` and ``non-rumor-repost/``, or
its parent holding ``CED_Dataset/``), or a partial copy such as the data set's ``sample/``.

One scenario per event ``<idx>_<mid>_<uid>``, named ``"ced/<idx>_<mid>_<uid>"``:

* the source post is ``original-microblog/<event>.json``: ``text``; ``time`` in unix
  seconds (in 87 files a Weibo API date such as ``Sat Jun 29 12:40:09 +0800 2013``);
  ``reposts``, ``comments``, ``likes``, ``pics``, ``has_url`` and the ``source`` client
  (as ``"client"``) kept in the source's metadata. Its id and author id come from the file
  name. The author profile maps ``followers``, ``friends``, ``messages`` -> ``statuses``,
  ``verified``, ``verified_type``, ``gender``, ``location`` and ``time`` (account creation,
  unix) -> ``created_at`` (ISO 8601, UTC); CED's ``description`` is only a flag (whether
  the user wrote one), kept as ``has_description``. The 87 files with ``"user": "empty"``
  give an empty profile;
* the reactions are ``rumor-repost/<event>.json`` or ``non-rumor-repost/<event>.json`` (which
  one gives ``metadata["veracity"]``: ``"rumor"`` or ``"non-rumor"``): a list of ``{mid, uid,
  parent, kids, text, date}``. ``text`` ``""`` is a plain repost and is kept as ``""``.
  ``parent`` ``""`` means the reaction answers the source post (``parent_id`` is then the
  source's mid). ``date`` (``YYYY-MM-DD HH:MM:SS``) is China Standard Time (UTC+8) and is
  turned into unix seconds on that basis. 74 reactions carry Weibo's year-less form
  ``MM月DD日 HH:MM`` (Weibo omits the year of the current year at crawl time): they are
  dated in ``undated_year`` (default 2016, the year after the newest full date in CED,
  2015-12-31) and carry ``metadata["year_inferred"] = True``. Reactions have no profile
  (``Author.profile`` is empty) and no labels; ``language`` is ``"zh"`` and
  ``default_label_dimension`` ``"weibo"``. ``metadata["reaction_count"]`` is the event's
  number of reactions before ``max_reactions`` cuts it.

Streaming: the archive stores the non-rumour reposts before the source posts, so an archive
is read in two streaming passes: the first keeps only the (small) source posts, the second
builds and yields one event at a time, in archive order. A folder is read event by event,
in order of the index ``idx``. At most one event's reactions are held at any time.

A repost listed twice (346 events of CED list 724 reposts twice, the same post with
other ``kids`` or ``parent``) is kept once, its first listing, and counted in
``metadata["repeated_posts"]`` (see :func:`mfllm_env.loaders.common.without_repeats`).
A bad reaction record is one record; an unreadable repost file, a bad source post, a
source post without a repost file (or the reverse), or an event with a repost file in both
``rumor-repost/`` and ``non-rumor-repost/`` (its veracity cannot be told) is one bad file,
and its event is left out. A damaged or truncated archive is one bad file: nothing of it
loads.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from mfllm_env.loaders.common import (
    ErrorPolicy,
    Located,
    RecordReader,
    ScenarioFormatError,
    check_limit,
    drop_none,
    existing_path,
    finish,
    parse_api_date,
    parse_json,
    read_file,
    time_sorted,
    unix_to_iso,
    without_repeats,
)
from mfllm_env.scenario import Author, Reaction, Scenario

SOURCE_FOLDER = "original-microblog"
REPOST_FOLDERS = {"rumor-repost": "rumor", "non-rumor-repost": "non-rumor"}
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
YEARLESS_DATE_FORMAT = "%Y年%m月%d日 %H:%M"
MISSING_USER = "empty"
Where = TypeVar("Where", str, Path)
"""Where a file is: a path, or ``archive:member`` for an archive member."""
CHINA_EPOCH = datetime(1970, 1, 1, 8)
"""The unix epoch as a naive China Standard Time (UTC+8) date."""
CRAWL_YEAR = 2016
"""The year CED was crawled: its newest full date is 2015-12-31 15:57:39, and Weibo writes
dates of the current year without the year."""


def load_ced(
    path: str | os.PathLike[str],
    *,
    max_reactions: int | None = None,
    undated_year: int = CRAWL_YEAR,
    on_error: str = "raise",
    limit: int | None = None,
) -> Iterator[Scenario]:
    """Stream CED Weibo events from the archive or folder ``path``, one scenario per event.

    ``max_reactions`` keeps the first N reactions of each event in time order (``None``:
    all). ``undated_year`` dates the reactions whose date omits the year.
    ``on_error``/``limit``: see :mod:`mfllm_env.loaders`. A missing path gives
    ``FileNotFoundError``; a folder without ``original-microblog/`` gives ``ValueError``.
    """
    check_limit("max_reactions", max_reactions)
    check_limit("limit", limit)
    if isinstance(undated_year, bool) or not isinstance(undated_year, int):
        raise ValueError(f"undated_year must be an int, got {undated_year!r}")
    if not 1 <= undated_year <= 9999:
        raise ValueError(f"undated_year must be a year in 1..9999, got {undated_year}")
    policy = ErrorPolicy(on_error, "ced")
    builder = _Builder(max_reactions, undated_year, policy)
    root = existing_path(path)
    if root.is_dir():
        events = _folder_events(_data_folder(root), builder)
    else:
        if not _is_archive(root):
            raise ValueError(f"{root}: not a tar archive nor a folder of the CED data set")
        events = _archive_events(root, builder)
    return finish(events, policy, limit)


@dataclass(frozen=True)
class _Source:
    """A source post, where it was read and what its file name says."""

    where: str | Path
    event: str
    index: int
    post: Reaction


def _data_folder(root: Path) -> Path:
    for candidate in (root, root / "CED_Dataset"):
        if (candidate / SOURCE_FOLDER).is_dir():
            folders = (SOURCE_FOLDER, *REPOST_FOLDERS)
            if not any(next((candidate / name).glob("*.json"), None) for name in folders):
                raise ValueError(f"{candidate}: no event files (*.json) in {', '.join(folders)}")
            return candidate
    raise ValueError(
        f"{root}: no {SOURCE_FOLDER}/ folder here or in {root / 'CED_Dataset'} "
        "(expected the CED data set: original-microblog/, rumor-repost/, non-rumor-repost/)"
    )


def _folder_events(folder: Path, builder: _Builder) -> Iterator[Located]:
    policy = builder.policy
    repost_files: dict[str, list[tuple[Path, str]]] = {}
    for name, veracity in REPOST_FOLDERS.items():
        for file in sorted((folder / name).glob("*.json")):
            repost_files.setdefault(file.name, []).append((file, veracity))
    sources = []
    for file in (folder / SOURCE_FOLDER).glob("*.json"):
        try:
            sources.append((_event_index(file.stem, file), file))
        except ScenarioFormatError as error:
            policy.handle(error)
    for _, file in sorted(sources):
        try:
            repost_file, veracity = _one_repost_file(file, repost_files.pop(file.name, []))
            source = _source(read_file(file), file)
            data = read_file(repost_file)
            yield Located(builder.scenario(source, data, repost_file, veracity), file, source.event)
        except ScenarioFormatError as error:
            policy.handle(error)
    for reposts in repost_files.values():
        for repost_file, _ in reposts:
            policy.handle(_orphan(repost_file))


def _one_repost_file(
    source_file: str | Path, reposts: Sequence[tuple[Where, str]]
) -> tuple[Where, str]:
    """The one ``(repost file, veracity)`` of the event of ``source_file``; an event with
    none, or with one in each repost folder (its veracity unknowable), is a bad file."""
    event = PurePosixPath(str(source_file)).stem
    if not reposts:
        raise ScenarioFormatError(
            source_file,
            event,
            None,
            f"no repost file for this event in {' or '.join(REPOST_FOLDERS)}/",
        )
    if len(reposts) > 1:
        raise ScenarioFormatError(
            source_file,
            event,
            None,
            f"{len(reposts)} repost files for this event "
            f"({', '.join(sorted(str(where) for where, _ in reposts))}): "
            "whether it is a rumour cannot be told",
        )
    return reposts[0]


ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error)
"""What reading a damaged or truncated archive raises (by compression and by tar)."""


def _damaged(archive: Path, error: Exception) -> ScenarioFormatError:
    return ScenarioFormatError(
        archive,
        None,
        None,
        f"damaged or truncated archive, nothing of it loaded ({type(error).__name__}: {error})",
    )


def _is_archive(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except ARCHIVE_ERRORS:
        return False


@dataclass
class _ArchiveIndex:
    """What the first pass over an archive finds: the source posts by file name, where each
    event's repost files are, and the events already reported bad."""

    sources: dict[str, _Source]
    reposts: dict[str, list[tuple[str, str]]]
    bad: set[str]


def _archive_events(archive: Path, builder: _Builder) -> Iterator[Located]:
    policy = builder.policy
    try:
        index = _index_archive(archive, policy)
    except ARCHIVE_ERRORS as error:
        policy.handle(_damaged(archive, error))
        return
    if not index.sources and not index.reposts and not index.bad:
        raise ScenarioFormatError(archive, None, None, "no CED event files in this archive")
    for name, source in list(index.sources.items()):
        try:
            _one_repost_file(source.where, index.reposts.get(name, []))
        except ScenarioFormatError as error:
            del index.sources[name]
            index.bad.add(name)
            policy.handle(error)
    for name, reposts in index.reposts.items():
        if name not in index.sources and name not in index.bad:
            index.bad.add(name)
            for where, _ in reposts:
                policy.handle(_orphan(where))
    try:
        with tarfile.open(archive, "r|*") as members:
            for member, folder, name in _json_members(members):
                veracity = REPOST_FOLDERS.get(folder)
                if veracity is None or name in index.bad:
                    continue
                where = f"{archive}:{member.name}"
                source = index.sources.pop(name)
                try:
                    data = _member_bytes(members, member)
                    yield Located(
                        builder.scenario(source, data, where, veracity), where, source.event
                    )
                except ScenarioFormatError as error:
                    policy.handle(error)
    except ARCHIVE_ERRORS as error:
        policy.handle(_damaged(archive, error))


def _index_archive(archive: Path, policy: ErrorPolicy) -> _ArchiveIndex:
    """The first pass: read the source posts, note where the repost files are."""
    index = _ArchiveIndex({}, {}, set())
    with tarfile.open(archive, "r|*") as members:
        for member, folder, name in _json_members(members):
            where = f"{archive}:{member.name}"
            if folder in REPOST_FOLDERS:
                index.reposts.setdefault(name, []).append((where, REPOST_FOLDERS[folder]))
                continue
            if folder != SOURCE_FOLDER:
                continue
            try:
                if name in index.sources or name in index.bad:
                    raise ScenarioFormatError(
                        where, PurePosixPath(name).stem, None, "a second source post file"
                    )
                index.sources[name] = _source(_member_bytes(members, member), where)
            except ScenarioFormatError as error:
                index.sources.pop(name, None)
                index.bad.add(name)
                policy.handle(error)
    return index


def _json_members(members: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """``(member, parent folder name, file name)`` of each ``.json`` file, in archive order."""
    for member in members:
        member_path = PurePosixPath(member.name)
        if member.isfile() and member_path.suffix == ".json":
            yield member, member_path.parent.name, member_path.name


def _member_bytes(members: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = members.extractfile(member)
    assert stream is not None  # a regular file always has a stream
    return stream.read()


def _orphan(where: str | Path) -> ScenarioFormatError:
    return ScenarioFormatError(
        where, PurePosixPath(str(where)).stem, None, f"no source post in {SOURCE_FOLDER}/"
    )


def _event_index(event: str, where: str | Path) -> int:
    parts = event.split("_")
    if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()) or not all(parts):
        raise ScenarioFormatError(where, event, "file name", "expected <idx>_<mid>_<uid>.json")
    return int(parts[0])


def _source(data: bytes, where: str | Path) -> _Source:
    event = PurePosixPath(str(where)).stem
    index = _event_index(event, where)
    _, mid, uid = event.split("_")
    post = RecordReader(parse_json(data, where, event), where, event)
    raw_user = post.get("user", (dict, str))
    if isinstance(raw_user, str) and raw_user != MISSING_USER:
        raise post.error("user", f"expected an object or {MISSING_USER!r}, got {raw_user!r:.60}")
    user = RecordReader(raw_user if isinstance(raw_user, dict) else {}, where, event)
    created = user.unix_time("time", required=False)
    profile = drop_none(
        {
            "followers": user.count("followers"),
            "friends": user.count("friends"),
            "statuses": user.count("messages"),
            "verified": user.flag("verified"),
            "verified_type": user.integer("verified_type"),
            "gender": user.text("gender", required=False),
            "location": user.text("location", required=False),
            "created_at": None if created is None else unix_to_iso(created),
            "has_description": user.flag("description"),
        }
    )
    metadata = drop_none(
        {
            "reposts": post.count("reposts"),
            "comments": post.count("comments"),
            "likes": post.count("likes"),
            "pics": post.count("pics"),
            "has_url": post.flag("has_url"),
            "client": post.text("source", required=False),
        }
    )
    source = Reaction(
        reaction_id=mid,
        author=Author(uid, profile),
        text=post.text("text"),
        timestamp=_source_time(post),
        parent_id=None,
        language="zh",
        metadata=metadata,
    )
    return _Source(where, event, index, source)


def _source_time(post: RecordReader) -> float:
    """Unix seconds, or (87 events) a Weibo API date such as ``Sat Jun 29 12:40:09 +0800 2013``."""
    if isinstance(post.data.get("time"), str):
        return post.timestamp("time", parse_api_date, "a Weibo API date")
    return post.unix_time("time")


@dataclass(frozen=True)
class _Builder:
    """Turns a source post and its repost file into a scenario, under the load's options."""

    max_reactions: int | None
    undated_year: int
    policy: ErrorPolicy

    def scenario(self, source: _Source, data: bytes, where: str | Path, veracity: str) -> Scenario:
        records = parse_json(data, where)
        if not isinstance(records, list):
            raise ScenarioFormatError(where, None, None, "expected a JSON list of reposts")
        reactions = []
        for position, record in enumerate(records):
            try:
                reactions.append(self.reaction(record, position, where, source.post.reaction_id))
            except ScenarioFormatError as error:
                self.policy.handle(error)
        reactions, repeats = without_repeats(source.post, reactions, where, "mid", self.policy)
        reactions = time_sorted(reactions)
        metadata: dict[str, Any] = {
            "dataset": "ced",
            "event": source.event,
            "index": source.index,
            "veracity": veracity,
            "reaction_count": len(reactions),
        }
        if repeats:
            metadata["repeated_posts"] = repeats
        if self.max_reactions is not None:
            reactions = reactions[: self.max_reactions]
        return Scenario(
            scenario_id=f"ced/{source.event}",
            source=source.post,
            reactions=reactions,
            language="zh",
            default_label_dimension="weibo",
            metadata=metadata,
        )

    def reaction(
        self, record: object, position: int, where: str | Path, source_id: str
    ) -> Reaction:
        """One reaction record; the common all-strings case skips the per-field checks."""
        fields = record if isinstance(record, dict) else {}
        mid, uid, text = fields.get("mid"), fields.get("uid"), fields.get("text")
        date, parent = fields.get("date"), fields.get("parent")
        if not (
            type(mid) is str
            and type(uid) is str
            and type(text) is str
            and type(date) is str
            and (parent is None or type(parent) is str)
        ):
            reader = RecordReader(
                record, where, mid if isinstance(mid, str) and mid else f"element {position}"
            )
            mid, uid, text = reader.ident("mid"), reader.ident("uid"), reader.text("text")
            parent, date = reader.ident("parent", required=False), reader.text("date")
        try:
            timestamp = self.china_time(date)
        except ValueError:
            raise ScenarioFormatError(
                where,
                mid,
                "date",
                f"cannot parse {date!r} as a date 'YYYY-MM-DD HH:MM:SS' or 'MM月DD日 HH:MM'",
            ) from None
        return Reaction(
            reaction_id=mid,
            author=Author(uid),
            text=text,
            timestamp=timestamp,
            parent_id=parent or source_id,
            language="zh",
            metadata={"year_inferred": True} if "月" in date else {},
        )

    def china_time(self, text: str) -> float:
        """Unix seconds of a CST date; a year-less ``MM月DD日 HH:MM`` is in ``undated_year``."""
        if "月" in text:
            parsed = datetime.strptime(f"{self.undated_year}年{text}", YEARLESS_DATE_FORMAT)
        elif len(text) == len("YYYY-MM-DD HH:MM:SS") and text[10] == " ":
            parsed = datetime.fromisoformat(text)  # much faster than strptime
        else:
            raise ValueError(text)
        return (parsed - CHINA_EPOCH).total_seconds()
