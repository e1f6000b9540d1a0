"""Fuzzing every loader: valid-shaped data, then one corruption, then a load.

Each property builds a tiny data set of one loader's format in a fresh folder and corrupts
it once: a JSON value swapped for an odd one (wrong type, NaN, 1e20, deep nesting, an
unpaired surrogate) or removed or duplicated; a file's bytes truncated, spliced with
garbage or re-encoded; a file replaced by a folder or a symlink loop, removed, or joined by
a stray file; a folder replaced by a file. Then it loads the data with
``on_error="raise"`` and ``"skip"``. Each load must either give scenarios (with unique ids,
that write to JSONL and read back) or raise a ``ValueError`` (the package's
:class:`ScenarioFormatError` or an up-front check) whose message names the data; any other
exception fails. Generated cases per run: 150 + 100 + 100 + 60 + 60 = 470.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_loaders_jsonl import small_scenario
from test_loaders_weibo import weibo_post, write_ced_folder

from mfllm_env.labels import SDQC
from mfllm_env.loaders import (
    ScenarioFormatError,
    ScenarioFormatWarning,
    load_scenarios,
    write_scenarios_jsonl,
)
from mfllm_env.loaders.jsonl import scenario_to_json

DEEP = "\x00deep\x00"
"""Stands for a deeply nested value until a file is written (``json`` cannot write one)."""

ODD_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e20, -1e20, 1e308, -1, 2**64, -(2**63) - 1, 0.5, 1e-300]
)
ODD_VALUES = st.one_of(
    ODD_NUMBERS,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(DEEP),
    st.sampled_from(["\ud83d", "half \udc00 an emoji"]),  # unpaired surrogates
)

Files = dict[str, Any]
"""A data set as relative path -> JSON value (a ``.jsonl`` file: the list of its lines)."""


def serialise(name: str, value: Any) -> bytes:
    if name.endswith(".jsonl"):
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in value)
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = text.replace(json.dumps(DEEP), "[" * 5000 + "]" * 5000)
    return text.encode("utf-8", "backslashreplace")  # a lone surrogate as a JSON escape


def write(root: Path, files: Files) -> None:
    for name, value in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value if isinstance(value, bytes) else serialise(name, value))


def positions(value: Any) -> list[tuple[Any, Any]]:
    """``(container, key)`` of every value nested in ``value``."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in list(children):
        found.append((value, key))
        if isinstance(child, dict | list):
            found += positions(child)
    return found


def corrupt_value(data: st.DataObject, files: Files, name: str) -> None:
    """Swap one value nested in file ``name`` for an odd one, remove it or duplicate it."""
    places = positions(files[name]) if isinstance(files[name], dict | list) else []
    if not places:
        files[name] = data.draw(ODD_VALUES)
        return
    container, key = data.draw(st.sampled_from(places))
    action = data.draw(st.sampled_from(["replace", "remove", "duplicate"]))
    if action == "replace":
        container[key] = data.draw(ODD_VALUES)
    elif action == "remove":
        del container[key]
    elif isinstance(container, list):
        container.insert(key, copy.deepcopy(container[key]))


def corrupt_bytes(data: st.DataObject, blob: bytes) -> bytes:
    """``blob`` truncated, spliced, re-encoded, emptied or replaced by garbage."""
    action = data.draw(
        st.sampled_from(
            [
                *("truncate", "insert", "overwrite", "bom", "utf-16", "gb18030", "empty"),
                *("garbage", "long-number", "deep"),
            ]
        )
    )
    cut = data.draw(st.integers(0, max(len(blob) - 1, 0)))
    if action == "truncate":
        return blob[:cut]
    if action in ("insert", "overwrite"):
        noise = data.draw(st.binary(min_size=1, max_size=8))
        return blob[:cut] + noise + blob[cut + (len(noise) if action == "overwrite" else 0) :]
    if action == "bom":
        return b"\xef\xbb\xbf" + blob
    if action in ("utf-16", "gb18030"):
        return blob.decode("utf-8", "replace").encode(action)
    if action == "empty":
        return data.draw(st.sampled_from([b"", b"\n", b"  \n\n"]))
    if action == "garbage":
        return data.draw(st.binary(max_size=64))
    if action == "long-number":
        return re.sub(rb"\d+", b"9" * 5000, blob, count=1)
    return blob[:cut] + b"[" * 100_000 + blob[cut:]


def corrupt_file_system(data: st.DataObject, path: Path) -> None:
    """Replace the file at ``path`` by a folder or a symlink loop, remove it, or put a stray
    file of the same kind beside it."""
    action = data.draw(st.sampled_from(["folder", "symlink-loop", "remove", "stray"]))
    if action == "stray":
        names = ["x", "1_2_3", "0_a", "²_1_2", os.fsdecode(b"9_\xff_1")]  # the last not UTF-8
        stray = path.with_name(data.draw(st.sampled_from(names)))
        stray.with_suffix(path.suffix).write_bytes(data.draw(st.sampled_from([b"{}", b"[]"])))
        return
    path.unlink()
    if action == "folder":
        path.mkdir()
    elif action == "symlink-loop":
        os.symlink(path.name, path)


def corrupt_folder(data: st.DataObject, folder: Path) -> None:
    """Replace ``folder`` by a file or a symlink loop, or remove it."""
    action = data.draw(st.sampled_from(["file", "symlink-loop", "remove"]))
    shutil.rmtree(folder)
    if action == "file":
        folder.write_bytes(b"{}")
    elif action == "symlink-loop":
        os.symlink(folder.name, folder)


def corrupt(data: st.DataObject, root: Path, files: Files) -> None:
    """Write ``files`` under ``root`` with one of them (or one folder) corrupted: a value,
    the bytes, the file, or a folder holding files."""
    files = copy.deepcopy(files)
    name = data.draw(st.sampled_from(sorted(files)))
    level = data.draw(st.sampled_from(["value", "bytes", "file system", "folder"]))
    if level == "value":
        corrupt_value(data, files, name)
    elif level == "bytes":
        files[name] = corrupt_bytes(data, serialise(name, files[name]))
    write(root, files)
    if level == "file system":
        corrupt_file_system(data, root / name)
    elif level == "folder" and Path(name).parent != Path("."):
        folders = [str(parent) for parent in Path(name).parents if parent != Path(".")]
        corrupt_folder(data, root / data.draw(st.sampled_from(folders)))


@contextmanager
def fresh_folder() -> Iterator[Path]:
    """A new empty folder per generated case (``tmp_path`` is shared by all of them)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def load_or_clear_error(source: str, root: Path, **options: Any) -> None:
    """Load ``root`` in both error modes: well-formed scenarios or a ``ValueError`` naming
    something under ``root``; any other exception propagates and fails the test."""
    for on_error in ("raise", "skip"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                scenarios = load_scenarios(source, root, on_error=on_error, **options)
            except ScenarioFormatError as error:
                assert error.path.startswith(str(root)), error
                assert str(error).startswith(error.path), error
                continue
            except ValueError as error:
                assert str(root) in str(error), error
                continue
        ids = [scenario.scenario_id for scenario in scenarios]
        assert len(ids) == len(set(ids)), ids
        with fresh_folder() as out:  # what loads can be written as JSONL and read back
            write_scenarios_jsonl(scenarios, out / "copy.jsonl")
            if scenarios:
                copies = load_scenarios("jsonl", out / "copy.jsonl")
                assert [copy.scenario_id for copy in copies] == ids
        for warning in caught:
            if warning.category is ScenarioFormatWarning:  # the skip count names the data
                assert str(root) in str(warning.message), warning.message


# JSONL: a folder of two files, three scenarios.


def jsonl_files() -> Files:
    return {
        "a.jsonl": [scenario_to_json(small_scenario(f"demo/{i}")) for i in (1, 2)],
        "b.jsonl": [scenario_to_json(small_scenario("demo/3"))],
    }


@settings(max_examples=150)
@given(st.data())
def test_jsonl_fuzz(data: st.DataObject):
    with fresh_folder() as root:
        corrupt(data, root, jsonl_files())
        load_or_clear_error("jsonl", root)


# RumourEval: one Twitter thread and one Reddit thread (with a "more" stub), one key.

TWEET_DATE = "Wed Jan 07 11:07:51 +0000 2015"


def tweet(post_id: str, parent: str | None, second: int) -> dict:
    return {
        "id_str": post_id,
        "text": f"tweet {post_id}",
        "created_at": TWEET_DATE.replace(":51 ", f":{second:02d} "),
        "in_reply_to_status_id_str": parent,
        "retweet_count": 1,
        "favorite_count": 2,
        "lang": "en",
        "user": {
            "id_str": f"u{post_id}",
            "followers_count": 10,
            "friends_count": 2,
            "statuses_count": 5,
            "verified": False,
            "created_at": TWEET_DATE,
            "name": "name",
            "screen_name": "screen",
        },
    }


def reddit_comment(post_id: str, parent: str, kind: str = "t1") -> dict:
    if kind == "more":
        return {"kind": "more", "data": {"id": post_id, "parent_id": parent}}
    data = {
        "id": post_id,
        "body": f"comment {post_id}",
        "author": "someone",
        "created_utc": 1_500_000_100.0,
        "parent_id": parent,
        "score": -2,
    }
    return {"kind": kind, "data": data}


def rumoureval_files() -> Files:
    thread = "twitter-english/event/100"
    reddit = "reddit-training-data/abc"
    submission = {
        "id": "abc",
        "title": "title",
        "selftext": "",
        "author": "poster",
        "created_utc": 1_500_000_000,
        "subreddit": "news",
        "score": 3,
    }
    posts = ["100", "101", "102", "abc", "c1", "m1"]
    return {
        f"{thread}/source-tweet/100.json": tweet("100", None, 10),
        f"{thread}/replies/101.json": tweet("101", "100", 20),
        f"{thread}/replies/102.json": tweet("102", "101", 30),
        f"{reddit}/source-tweet/abc.json": {
            "kind": "Listing",
            "data": {"children": [{"kind": "t3", "data": submission}]},
        },
        f"{reddit}/replies/c1.json": reddit_comment("c1", "t3_abc"),
        f"{reddit}/replies/m1.json": reddit_comment("m1", "t1_c1", "more"),
        "train-key.json": {
            "subtaskaenglish": dict(zip(posts, SDQC.labels * 2, strict=False)),
            "subtaskbenglish": {"100": "true", "abc": "unverified"},
        },
        "pheme.json": [
            {"tweetid": "100", "certainty": "certain", "support": "supporting"},
            {"tweetid": 101, "certainty": "uncertain"},
        ],
    }


@settings(max_examples=100)
@given(st.data(), st.sampled_from(["thread", "event"]))
def test_rumoureval_fuzz(data: st.DataObject, episode: str):
    files = rumoureval_files()
    if data.draw(st.booleans()):  # the same thread in a second release folder
        twitter = [name for name in files if name.startswith("twitter-english/")]
        files |= {name.replace("-english/", "-en-test-data/"): files[name] for name in twitter}
    with fresh_folder() as root:
        corrupt(data, root, files)
        pheme = root / "pheme.json"  # removed: as if not asked for
        options = {"pheme": pheme} if pheme.exists() or pheme.is_symlink() else {}
        load_or_clear_error("rumoureval", root, episode=episode, **options)


# CED: a folder (or archive) of two events; Rumdect: a folder of two events.

CED_EVENTS = 2


def ced_files(folder: Path) -> Files:
    """The files of a tiny CED folder, as JSON values by relative path."""
    write_ced_folder(folder, events=CED_EVENTS, reactions=3)
    files = {str(f.relative_to(folder)): json.loads(f.read_text()) for f in folder.rglob("*.json")}
    shutil.rmtree(folder)
    source = files["original-microblog/1_mid1_1001.json"]
    source["user"] = {"followers": 5, "friends": 1, "messages": 9, "verified": True}
    source["user"] |= {"verified_type": -1, "time": 1_300_000_000, "gender": "f"}
    files["rumor-repost/1_mid1_1001.json"][1]["date"] = "10月27日 01:00"
    return files


def corrupt_ced(data: st.DataObject, root: Path) -> None:
    files = ced_files(root / "template")
    if data.draw(st.booleans()):  # one event in both repost folders
        name = "0_mid0_1000.json"
        files[f"rumor-repost/{name}"] = files[f"non-rumor-repost/{name}"]
    corrupt(data, root, files)


@settings(max_examples=100)
@given(st.data())
def test_ced_folder_fuzz(data: st.DataObject):
    with fresh_folder() as root:
        corrupt_ced(data, root)
        load_or_clear_error("ced", root, max_reactions=data.draw(st.sampled_from([None, 1])))


@settings(max_examples=60)
@given(st.data(), st.sampled_from(["xz", "gz"]))
def test_ced_archive_fuzz(data: st.DataObject, compression: str):
    with fresh_folder() as root:
        folder = root / "CED_Dataset"
        corrupt_ced(data, folder)
        archive = pack(folder, root / "ced.tar", compression)
        if data.draw(st.booleans()):
            archive.write_bytes(corrupt_bytes(data, archive.read_bytes()))
        load_or_clear_error("ced", archive)


def pack(folder: Path, archive: Path, compression: str) -> Path:
    """``folder`` packed as CED's archive is (non-rumour reposts, sources, rumour reposts),
    byte for byte the same each time (no dates), so that a case replays exactly."""

    def undated(member: tarfile.TarInfo) -> tarfile.TarInfo:
        member.mtime = 0
        return member

    if compression == "gz":
        stream, mode = gzip.GzipFile(archive, "wb", mtime=0), "w"
    else:
        stream, mode = archive.open("wb"), "w:xz"
    with stream, tarfile.open(fileobj=stream, mode=mode) as tar:
        for name in ("non-rumor-repost", "original-microblog", "rumor-repost"):
            if not (folder / name).is_dir():  # a corrupted folder is left out
                continue
            for file in sorted((folder / name).iterdir()):
                tar.add(file, arcname=f"CED_Dataset/{name}/{file.name}", filter=undated)
    return archive


def rumdect_files() -> Files:
    source = weibo_post("39001", None, "某地发生大事", 1_400_000_000)
    reply = weibo_post("39002", "39001", "真的假的？", 1_400_000_300)
    return {"4001.json": [source, reply], "4002.json": [source]}


@settings(max_examples=60)
@given(st.data())
def test_rumdect_fuzz(data: st.DataObject):
    with fresh_folder() as root:
        corrupt(data, root, rumdect_files())
        load_or_clear_error("rumdect", root)


def test_uncorrupted_fixtures_load_in_full():
    """The fuzzed data sets are valid before corruption (else the fuzz tests test nothing)."""
    checks: list[tuple[str, Callable[[Path], Files], int, dict]] = [
        ("jsonl", lambda _: jsonl_files(), 3, {}),
        ("rumoureval", lambda _: rumoureval_files(), 2, {"pheme": "pheme.json"}),
        ("ced", lambda root: ced_files(root / "template"), CED_EVENTS, {}),
        ("rumdect", lambda _: rumdect_files(), 2, {}),
    ]
    for source, files, count, options in checks:
        with fresh_folder() as root, warnings.catch_warnings():
            warnings.simplefilter("error")
            write(root, files(root))
            options = {name: root / value for name, value in options.items()}
            scenarios = load_scenarios(source, root, **options)
            assert len(scenarios) == count, source
            if source == "rumoureval":
                assert all(s.metadata["unlabelled_posts"] == 0 for s in scenarios)
                assert scenarios[0].source.labels == {
                    "stance": "support",
                    "certainty": "certain",
                    "pheme_support": "supporting",
                }
