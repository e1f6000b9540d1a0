"""RumourEval 2019 (SemEval-2019 Task 7): Twitter and Reddit threads with SDQC stance.

Layouts read (both official releases; ``path`` is the release folder):

* training release: ``twitter-english/<event>/<thread>/``, ``reddit-training-data/<thread>/``,
  ``reddit-dev-data/<thread>/``, with ``train-key.json`` and ``dev-key.json`` in the folder;
* test release: ``twitter-en-test-data/<event>/<thread>/``, ``reddit-test-data/<thread>/``,
  with the key (e.g. ``final-eval-key.json``) passed in ``keys``.

Any sub-folder named ``twitter-*`` is read as Twitter events and any ``reddit-*`` as Reddit
threads. A thread folder holds ``source-tweet/<id>.json`` (a Twitter v1.1 tweet, or for
Reddit a listing whose first child is the submission) and ``replies/<id>.json`` (one tweet
or Reddit comment per file). The reply tree is taken from each reply's own parent field
(``in_reply_to_status_id_str``, ``parent_id``); ``structure.json`` is not needed.

Labels and splits come from the key files (``{"subtaskaenglish": {post_id: sdqc},
"subtaskbenglish": {thread_id: veracity}}``): the SDQC label of every post a key names,
source posts included, goes to label dimension ``"stance"``; the thread veracity goes to
``Scenario.metadata["veracity"]``. A thread's split is the key file that labels it:
``train-key.json`` -> ``"train"``, ``dev-key.json`` -> ``"dev"``, any other key file ->
``"test"`` (the test keys of the task carry other names). A thread no key labels takes its
split from its folder name where that says ``train``/``dev``/``test``
(``reddit-training-data`` -> ``"train"``, ``reddit-test-data`` -> ``"test"``), else ``None``.

Missing labels are never silent, since whatever scores against human labels would quietly
score against the labeller instead. A folder without key files is refused unless
``keys=[]`` says to load it unlabelled; key files that label none of the threads found are
refused (so are PHEME annotations that label none of them); and where the keys leave
some posts without a stance label, one
:class:`~mfllm_env.loaders.common.MissingLabelWarning` per load gives their count. Every
scenario counts its posts (source included) without a stance label in
``metadata["unlabelled_posts"]``.

With ``pheme`` (PHEME's ``en-scheme-annotations.json``) the PHEME ``certainty`` of a post
joins as label dimension ``"certainty"`` and the PHEME ``support`` of a source post as
``"pheme_support"`` (supporting / denying / underspecified), joined on the tweet id.

Reddit specifics: users have no profiles (``Author.profile`` is empty; the author id is the
user name, ``"[deleted]"`` where the account is gone). Deleted or removed comments (body
``"[deleted]"``/``"[removed]"``) keep their text and label and carry
``metadata["deleted"] = True``. Reply files of kind ``"more"`` are stubs for comments the
crawl did not expand: they have no text and no time but the keys label them, so they are
kept with text ``""``, author ``"[unavailable]"``, the timestamp of their parent (or of the
source post) and ``metadata["unavailable"] = True``. Each Reddit scenario counts both in
its metadata (``deleted_posts``, ``unavailable_posts``). Reddit threads have no event folder, so a
Reddit thread is its own event (``metadata["event"]`` is the thread id).

``split`` keeps the threads of one split or of several joined by ``+`` (``"train+dev"``:
the whole training release, the long-horizon benchmark's events; see :func:`parse_splits`).

Episodes: ``episode="thread"`` gives one scenario per thread; ``episode="event"`` merges
all threads of a Twitter event (after the ``split`` filter) into one scenario in time
order: the earliest source post is the scenario's source, the other threads' source posts
are reactions (with ``parent_id=None``). Every reaction carries ``metadata["thread_id"]``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfllm_env.labels import CERTAINTY, SDQC
from mfllm_env.loaders.common import (
    ErrorPolicy,
    Located,
    MissingLabelWarning,
    RecordReader,
    ScenarioFormatError,
    check_choice,
    check_limit,
    drop_none,
    existing_path,
    existing_paths,
    finish,
    parse_api_date,
    read_json,
    time_sorted,
    unix_to_iso,
)
from mfllm_env.scenario import Author, Reaction, Scenario

SPLITS = ("train", "dev", "test")
EPISODES = ("thread", "event")
PLATFORMS = ("twitter", "reddit", "all")
VERACITY = ("true", "false", "unverified")
PHEME_SUPPORT = ("supporting", "denying", "underspecified")
DATASET = "rumoureval2019"
DELETED_BODIES = ("[deleted]", "[removed]")
KEY_SPLITS = {"train-key.json": "train", "dev-key.json": "dev"}
SHOWN_THREADS = 5
"""How many threads the missing-label warning names."""


def load_rumoureval(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    episode: str = "thread",
    platform: str = "all",
    keys: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    pheme: str | os.PathLike[str] | None = None,
    on_error: str = "raise",
    limit: int | None = None,
) -> Iterator[Scenario]:
    """Stream RumourEval 2019 scenarios from the release folder ``path``.

    ``split``: ``"train"``, ``"dev"``, ``"test"``, several joined by ``+`` (``"train+dev"``)
    or ``None`` (all threads).
    ``episode``: ``"thread"`` (one scenario per thread) or ``"event"`` (a Twitter event's
    threads merged). ``platform``: ``"twitter"``, ``"reddit"`` or ``"all"``. ``keys``: the
    key files (one path or a list); by default every ``*-key.json`` in ``path`` (there must
    be one); ``[]`` loads the threads without stance labels. ``pheme``: PHEME's
    ``en-scheme-annotations.json`` to join ``certainty``. ``on_error``/``limit``: see
    :mod:`mfllm_env.loaders`. Options, paths and key files are checked before the first
    scenario is asked for; a missing path gives ``FileNotFoundError``.
    """
    splits = None if split is None else parse_splits(split)
    check_choice("episode", episode, EPISODES)
    check_choice("platform", platform, PLATFORMS)
    check_limit("limit", limit)
    policy = ErrorPolicy(on_error, "rumoureval")
    root = existing_path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: expected the RumourEval release folder, not a file")
    groups = _thread_groups(_platform_folders(root, platform))
    if keys is None:
        key_paths = sorted(root.glob("*-key.json"))
        if not key_paths:
            raise ValueError(
                f"{root}: no key files (*-key.json) here, so no post would carry a human "
                "stance label; give the key files (keys=[...], --key FILE) or load the "
                "threads unlabelled on purpose (keys=[], --no-keys)"
            )
    else:
        key_paths = existing_paths("keys", keys)
    annotations = _Annotations.read(key_paths, None if pheme is None else existing_path(pheme))
    if key_paths:
        _check_some_thread_labelled(root, key_paths, groups, annotations, ("stance",))
    if pheme is not None:
        dimensions = ("certainty", "pheme_support")
        _check_some_thread_labelled(root, [Path(pheme)], groups, annotations, dimensions)
    tally = _UnlabelledTally([path.name for path in key_paths])
    threads = _threads(groups, annotations, splits, episode, policy, tally)
    return finish(threads, policy, limit)


@dataclass
class _Annotations:
    """What the key files and PHEME say: labels by post id, and by thread (= source post)
    id the split (``thread_split``, which also holds every key-labelled post) and veracity."""

    labels: dict[str, dict[str, str]]
    thread_split: dict[str, str]
    veracity: dict[str, str]

    @classmethod
    def read(cls, key_paths: Sequence[Path], pheme: Path | None) -> _Annotations:
        """Read key files and PHEME; their format errors always raise (they are options)."""
        labels: dict[str, dict[str, str]] = {}
        thread_split: dict[str, str] = {}
        veracity: dict[str, str] = {}
        for key_path in key_paths:
            split = KEY_SPLITS.get(key_path.name, "test")
            key = RecordReader(read_json(key_path), key_path, None)
            stances = _string_map(key, "subtaskaenglish", SDQC.labels, required=True)
            for post_id, stance in stances.items():
                _set_label(labels, key_path, post_id, "stance", stance)
                thread_split.setdefault(post_id, split)
            for thread_id, value in _string_map(key, "subtaskbenglish", VERACITY).items():
                veracity[thread_id] = value
                thread_split.setdefault(thread_id, split)
        if pheme is not None:
            rows = read_json(pheme)
            if not isinstance(rows, list):
                raise ScenarioFormatError(pheme, None, None, "expected a JSON list of objects")
            for index, row in enumerate(rows):
                reader = RecordReader(row, pheme, f"element {index}")
                tweet_id = reader.ident("tweetid")
                certainty = reader.text("certainty", required=False)
                support = reader.text("support", required=False)
                for dimension, value, allowed in (
                    ("certainty", certainty, CERTAINTY.labels),
                    ("pheme_support", support, PHEME_SUPPORT),
                ):
                    if value is None:
                        continue
                    if value not in allowed:
                        field = "support" if dimension == "pheme_support" else dimension
                        raise reader.error(field, f"{value!r} is not one of {allowed}")
                    _set_label(labels, pheme, tweet_id, dimension, value)
        return cls(labels, thread_split, veracity)


def _string_map(
    key: RecordReader, field: str, allowed: Sequence[str], *, required: bool = False
) -> dict[str, str]:
    table = key.get(field, (dict,), required=required) or {}
    for name, value in table.items():
        if value not in allowed:
            raise ScenarioFormatError(
                key.path, name, field, f"{value!r} is not one of {tuple(allowed)}"
            )
    return table


def _set_label(
    labels: dict[str, dict[str, str]], path: Path, post_id: str, dimension: str, value: str
) -> None:
    post = labels.setdefault(post_id, {})
    if post.get(dimension, value) != value:
        raise ScenarioFormatError(
            path,
            post_id,
            dimension,
            f"label {value!r} conflicts with {post[dimension]!r} "
            "given for the same post by an earlier file",
        )
    post[dimension] = value


@dataclass
class _Group:
    """The thread folders of one episode group: a Twitter event, or one Reddit thread."""

    platform: str
    folder: Path
    event: str
    thread_dirs: list[Path]


def _thread_groups(folders: list[tuple[str, Path]]) -> list[_Group]:
    groups = []
    for platform, folder in folders:
        if platform == "twitter":
            groups += [
                _Group(platform, folder, event.name, _subfolders(event))
                for event in _subfolders(folder)
            ]
        else:
            groups += [_Group(platform, folder, p.name, [p]) for p in _subfolders(folder)]
    if not any(group.thread_dirs for group in groups):
        raise ValueError(
            f"no thread folders in {', '.join(str(folder) for _, folder in folders)} "
            "(expected twitter-*/<event>/<thread>/ or reddit-*/<thread>/)"
        )
    return groups


def _subfolders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir())


def _check_some_thread_labelled(
    root: Path,
    files: list[Path],
    groups: list[_Group],
    annotations: _Annotations,
    dimensions: tuple[str, ...],
) -> None:
    """``ValueError`` if ``files`` (the key files, or PHEME's) give no label of
    ``dimensions`` to the source post of any thread under ``root``: they are of other data."""
    threads = [thread_dir.name for group in groups for thread_dir in group.thread_dirs]
    labels = annotations.labels
    if not any(d in labels.get(thread, {}) for thread in threads for d in dimensions):
        raise ValueError(
            f"{root}: {', '.join(str(path) for path in files)} give(s) no "
            f"{' or '.join(dimensions)} label to the source post of any of the "
            f"{len(threads)} threads here; are they the annotations of this data?"
        )


@dataclass
class _UnlabelledTally:
    """The posts of one load that the key files leave without a stance label."""

    key_names: list[str]
    posts: int = 0
    total: int = 0
    threads: list[str] = field(default_factory=list)

    def add(self, scenario_id: str, unlabelled: int, total: int) -> None:
        self.total += total
        if unlabelled:
            self.posts += unlabelled
            self.threads.append(scenario_id)

    def warn(self) -> None:
        """Emit the :class:`MissingLabelWarning` of the load, if keys were given and some
        post has no stance label from them."""
        if not self.key_names or not self.posts:
            return
        shown = ", ".join(self.threads[:SHOWN_THREADS])
        hidden = len(self.threads) - SHOWN_THREADS
        more = f" and {hidden} more" if hidden > 0 else ""
        warnings.warn(
            f"rumoureval: {self.posts} of {self.total} posts, in {len(self.threads)} thread(s), "
            f"have no stance label in the key files ({', '.join(self.key_names)}); they count "
            "as unlabelled (label-eval leaves them out, the environment gives them the "
            f"labeller's label): {shown}{more}",
            MissingLabelWarning,
            stacklevel=2,
        )


def _platform_folders(root: Path, platform: str) -> list[tuple[str, Path]]:
    """``(platform, folder)`` pairs in load order: Twitter release folders, then Reddit."""
    wanted = ("twitter", "reddit") if platform == "all" else (platform,)
    folders = [
        (name, folder)
        for name in wanted
        for folder in sorted(root.glob(f"{name}-*"))
        if folder.is_dir()
    ]
    if not folders:
        raise ValueError(
            f"{root}: no RumourEval data for platform {platform!r} (expected a twitter-*/ "
            "or reddit-*/ folder such as twitter-english/ or reddit-training-data/)"
        )
    return folders


def _folder_split(folder: Path) -> str | None:
    """The split a release folder's name states (``reddit-dev-data`` -> ``"dev"``)."""
    words = folder.name.replace("_", "-").split("-")
    for split, names in (("train", ("train", "training")), ("dev", ("dev",)), ("test", ("test",))):
        if any(word in names for word in words):
            return split
    return None


@dataclass
class _Thread:
    """One thread as read from disk, before it becomes (part of) a scenario."""

    platform: str
    event: str
    thread_id: str
    split: str | None
    source: Reaction
    replies: list[Reaction]
    deleted: int
    unavailable: int

    @property
    def unlabelled(self) -> int:
        """Its posts (source included) without a stance label."""
        return sum(1 for post in (self.source, *self.replies) if "stance" not in post.labels)


def parse_splits(split: object) -> tuple[str, ...]:
    """The splits a ``split`` option names: one of :data:`SPLITS`, or several joined by
    ``+`` (``"train+dev"``), each once; ``ValueError`` naming what is wrong otherwise."""
    parts = split.split("+") if isinstance(split, str) else []
    if not parts or any(p not in SPLITS for p in parts) or len(set(parts)) < len(parts):
        raise ValueError(
            f"split must be one of {SPLITS} or several of them joined by '+' (e.g. "
            f"'train+dev'), each once; got {split!r}"
        )
    return tuple(parts)


def _threads(
    groups: list[_Group],
    annotations: _Annotations,
    splits: tuple[str, ...] | None,
    episode: str,
    policy: ErrorPolicy,
    tally: _UnlabelledTally,
) -> Iterator[Located]:
    try:
        for group in groups:
            threads: list[_Thread] = []
            for thread_dir in group.thread_dirs:
                thread_split = annotations.thread_split.get(
                    thread_dir.name, _folder_split(group.folder)
                )
                if splits is not None and thread_split not in splits:
                    continue
                try:
                    thread = _read_thread(
                        group.platform, group.event, thread_dir, thread_split, annotations, policy
                    )
                except ScenarioFormatError as error:
                    policy.handle(error)
                    continue
                if episode == "thread":
                    scenario = _thread_scenario(thread, annotations)
                    tally.add(scenario.scenario_id, thread.unlabelled, len(scenario) + 1)
                    yield Located(scenario, thread_dir, thread.thread_id)
                else:
                    threads.append(thread)
            if threads:
                scenario = _event_scenario(group.platform, group.event, threads, annotations)
                for thread in threads:
                    tally.add(thread.thread_id, thread.unlabelled, len(thread.replies) + 1)
                yield Located(scenario, group.folder / group.event, group.event)
    finally:
        tally.warn()


def _thread_scenario(thread: _Thread, annotations: _Annotations) -> Scenario:
    meta: dict[str, Any] = {
        "dataset": DATASET,
        "platform": thread.platform,
        "event": thread.event,
        "thread_id": thread.thread_id,
        "split": thread.split,
        "veracity": annotations.veracity.get(thread.thread_id),
        "unlabelled_posts": thread.unlabelled,
    }
    if thread.platform == "reddit":
        meta["deleted_posts"] = thread.deleted
        meta["unavailable_posts"] = thread.unavailable
    scenario_id = "/".join(
        ["rumoureval", thread.platform]
        + ([thread.event] if thread.platform == "twitter" else [])
        + [thread.thread_id]
    )
    return Scenario(
        scenario_id=scenario_id,
        source=thread.source,
        reactions=time_sorted(thread.replies),
        language="en",
        default_label_dimension="stance",
        metadata=meta,
    )


def _event_scenario(
    platform: str, event: str, threads: list[_Thread], annotations: _Annotations
) -> Scenario:
    threads = sorted(threads, key=lambda t: (t.source.timestamp, _id_order(t.thread_id)))
    first = threads[0]
    posts = [t.source for t in threads[1:]] + [reply for t in threads for reply in t.replies]
    splits = {t.split for t in threads}
    meta: dict[str, Any] = {
        "dataset": DATASET,
        "platform": platform,
        "event": event,
        "thread_ids": [t.thread_id for t in threads],
        "split": splits.pop() if len(splits) == 1 else "mixed",
        "thread_splits": {t.thread_id: t.split for t in threads},
        "thread_veracity": {t.thread_id: annotations.veracity.get(t.thread_id) for t in threads},
        "unlabelled_posts": sum(t.unlabelled for t in threads),
    }
    if platform == "reddit":
        meta["deleted_posts"] = sum(t.deleted for t in threads)
        meta["unavailable_posts"] = sum(t.unavailable for t in threads)
    return Scenario(
        scenario_id=f"rumoureval/{platform}/{event}",
        source=first.source,
        reactions=time_sorted(posts),
        language="en",
        default_label_dimension="stance",
        metadata=meta,
    )


def _id_order(post_id: str) -> tuple[int, str]:
    """Sort key putting ids of equal length in lexical order (numeric ids by value)."""
    return len(post_id), post_id


def _read_thread(
    platform: str,
    event: str,
    thread_dir: Path,
    split: str | None,
    annotations: _Annotations,
    policy: ErrorPolicy,
) -> _Thread:
    """Read one thread folder; a bad reply is handed to ``policy``, a bad source raises."""
    thread_id = thread_dir.name
    source_files = sorted((thread_dir / "source-tweet").glob("*.json"))
    if len(source_files) != 1:
        raise ScenarioFormatError(
            thread_dir / "source-tweet",
            thread_id,
            None,
            f"expected one source post file, found {len(source_files)}",
        )
    reply_files = sorted((thread_dir / "replies").glob("*.json"), key=lambda p: _id_order(p.stem))
    replies: list[Reaction] = []
    if platform == "twitter":
        source = _tweet(source_files[0], thread_id, annotations, is_source=True)
        for reply_file in reply_files:
            try:
                replies.append(_tweet(reply_file, thread_id, annotations, is_source=False))
            except ScenarioFormatError as error:
                policy.handle(error)
        return _Thread(platform, event, thread_id, split, source, replies, 0, 0)
    source = _reddit_submission(source_files[0], thread_id, annotations)
    stubs: list[RecordReader] = []
    for reply_file in reply_files:
        try:
            kind, item = _reddit_item(reply_file)
            if kind == "more":
                stubs.append(item)
            else:
                replies.append(_reddit_comment(item, thread_id, annotations))
        except ScenarioFormatError as error:
            policy.handle(error)
    deleted = sum(1 for reply in replies if reply.metadata.get("deleted"))
    # Stubs go last so that, sorted by time, each follows the parent whose time it takes.
    times = {reply.reaction_id: reply.timestamp for reply in [source, *replies]}
    unavailable = 0
    for item in stubs:
        try:
            replies.append(_reddit_stub(item, thread_id, annotations, times, source))
        except ScenarioFormatError as error:
            policy.handle(error)
            continue
        unavailable += 1
    return _Thread(platform, event, thread_id, split, source, replies, deleted, unavailable)


def _tweet(path: Path, thread_id: str, annotations: _Annotations, *, is_source: bool) -> Reaction:
    tweet = RecordReader(read_json(path, path.stem), path, path.stem)
    post_id = tweet.ident("id_str")
    text = tweet.text("full_text", required=False)
    if text is None:
        text = tweet.text("text")
    timestamp = tweet.timestamp("created_at", parse_api_date, "a Twitter date")
    user = RecordReader(tweet.get("user", (dict,)), path, path.stem)
    author_id = user.ident("id_str")
    created = None
    if user.data.get("created_at") is not None:
        created = unix_to_iso(user.timestamp("created_at", parse_api_date, "a Twitter date"))
    profile = drop_none(
        {
            "followers": user.count("followers_count"),
            "friends": user.count("friends_count"),
            "statuses": user.count("statuses_count"),
            "verified": user.flag("verified"),
            "description": user.text("description", required=False),
            "location": user.text("location", required=False),
            "name": user.text("name", required=False),
            "created_at": created,
            "screen_name": user.text("screen_name", required=False),
            "favourites": user.count("favourites_count"),
            "listed": user.count("listed_count"),
        }
    )
    metadata = drop_none(
        {
            "thread_id": thread_id,
            "retweet_count": tweet.count("retweet_count"),
            "favorite_count": tweet.count("favorite_count"),
            "lang": tweet.text("lang", required=False),
        }
    )
    return Reaction(
        reaction_id=post_id,
        author=Author(author_id, profile),
        text=text,
        timestamp=timestamp,
        parent_id=None if is_source else tweet.ident("in_reply_to_status_id_str", required=False),
        language="en",
        labels=dict(annotations.labels.get(post_id, {})),
        metadata=metadata,
    )


def _reddit_item(path: Path) -> tuple[str, RecordReader]:
    """A Reddit thing ``{"kind": ..., "data": {...}}``: its kind and a reader over its data."""
    thing = RecordReader(read_json(path, path.stem), path, path.stem)
    kind = thing.text("kind")
    return kind, RecordReader(thing.get("data", (dict,)), path, path.stem)


def _reddit_parent(item: RecordReader) -> str:
    """The parent post id, without Reddit's type prefix (``t1_abc`` -> ``abc``)."""
    parent = item.text("parent_id")
    return parent.split("_", 1)[1] if parent[:1] == "t" and "_" in parent else parent


def _reddit_submission(path: Path, thread_id: str, annotations: _Annotations) -> Reaction:
    listing = RecordReader(read_json(path, path.stem), path, path.stem)
    listing_data = RecordReader(listing.get("data", (dict,)), path, path.stem)
    children = listing_data.get("children", (list,))
    if not children:
        raise listing_data.error("children", "empty listing: no submission")
    first = RecordReader(children[0], path, path.stem)
    post = RecordReader(first.get("data", (dict,)), path, path.stem)
    post_id = post.ident("id")
    title = post.text("title")
    body = post.text("selftext", required=False) or ""
    return Reaction(
        reaction_id=post_id,
        author=Author(post.text("author")),
        text=f"{title}\n\n{body}" if body else title,
        timestamp=post.unix_time("created_utc"),
        parent_id=None,
        language="en",
        labels=dict(annotations.labels.get(post_id, {})),
        metadata=drop_none(
            {
                "thread_id": thread_id,
                "subreddit": post.text("subreddit", required=False),
                "score": post.integer("score"),
                "url": post.text("url", required=False),
            }
        ),
    )


def _reddit_comment(item: RecordReader, thread_id: str, annotations: _Annotations) -> Reaction:
    post_id = item.ident("id")
    body = item.text("body")
    metadata: dict[str, Any] = {"thread_id": thread_id}
    score = item.integer("score")
    if score is not None:
        metadata["score"] = score
    if body in DELETED_BODIES:
        metadata["deleted"] = True
    return Reaction(
        reaction_id=post_id,
        author=Author(item.text("author")),
        text=body,
        timestamp=item.unix_time("created_utc"),
        parent_id=_reddit_parent(item),
        language="en",
        labels=dict(annotations.labels.get(post_id, {})),
        metadata=metadata,
    )


def _reddit_stub(
    item: RecordReader,
    thread_id: str,
    annotations: _Annotations,
    times: Mapping[str, float],
    source: Reaction,
) -> Reaction:
    post_id = item.ident("id")
    parent_id = _reddit_parent(item)
    return Reaction(
        reaction_id=post_id,
        author=Author("[unavailable]"),
        text="",
        timestamp=times.get(parent_id, source.timestamp),
        parent_id=parent_id,
        language="en",
        labels=dict(annotations.labels.get(post_id, {})),
        metadata={"thread_id": thread_id, "unavailable": True},
    )
