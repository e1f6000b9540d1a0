"""Weibo loaders: CED (archive, folder, sample) and the MF-LLM/Rumdect JSON format."""

from __future__ import annotations

import gc
import json
import os
import shutil
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from mfllm_env.loaders import (
    RepeatedPostWarning,
    ScenarioFormatError,
    ScenarioFormatWarning,
    iter_scenarios,
    load_scenarios,
)
from mfllm_env.loaders.jsonl import load_jsonl, write_scenarios_jsonl
from mfllm_env.scenario import Scenario

SAMPLE_SIZES = {
    "ced/0_yBmepBtUB_2279086572": (205, "rumor"),
    "ced/1000_yFDQ0ffqy_2082357197": (372, "rumor"),
    "ced/2601_85jBAr_1700757973": (239, "non-rumor"),
    "ced/2602_AfRpJr42Z_2451549504": (602, "non-rumor"),  # 603 reposts, one listed twice
}
REPEATED = "non-rumor-repost/2602_AfRpJr42Z_2451549504.json: post 'AfU7tyOck'"
"""The sample's one repost listed twice (CED lists 724 reposts of 346 events twice)."""


def test_ced_sample_folder(ced_sample_dir: Path):
    with pytest.warns(RepeatedPostWarning) as warned:
        events = load_scenarios("ced", ced_sample_dir)
    assert [str(w.message) for w in warned] == [
        f"ced: kept once 1 post(s) that an event file lists more than once (first: "
        f"{ced_sample_dir / REPEATED})"
    ]
    assert {e.scenario_id: (len(e), e.metadata["veracity"]) for e in events} == SAMPLE_SIZES
    assert [e.metadata.get("repeated_posts") for e in events] == [None, None, None, 1]
    assert [r.reaction_id for r in events[3].reactions].count("AfU7tyOck") == 1
    assert [e.metadata["index"] for e in events] == [0, 1000, 2601, 2602]
    first = events[0]
    assert first.language == "zh" and first.default_label_dimension == "weibo"
    assert first.source.reaction_id == "yBmepBtUB" and first.source.author.author_id == "2279086572"
    assert first.source.timestamp == 1347334462.0
    assert first.source.author.profile == {
        "followers": 227833,
        "friends": 907,
        "statuses": 5653,
        "verified": False,
        "verified_type": -1,
        "gender": "f",
        "location": "上海",
        "created_at": "2011-07-31T11:38:24+00:00",
        "has_description": True,
    }
    assert first.source.metadata["reposts"] == 225
    for event in events:
        times = [r.timestamp for r in event.reactions]
        assert times == sorted(times)
        assert not any(r.labels for r in event.reactions)
        assert all(r.parent_id for r in event.reactions)
    # "2011-01-18 16:59:02" China time is 08:59:02 UTC; text "" is a plain repost, kept.
    third = events[2]
    plain = next(r for r in third.reactions if r.reaction_id == "8De6Rn")
    assert plain.text == "" and plain.timestamp == 1295341142.0
    assert plain.parent_id == third.source.reaction_id  # parent "" means the source post


def test_ced_max_reactions_keeps_the_earliest(ced_sample_dir: Path):
    full = load_scenarios("ced", ced_sample_dir, limit=1)[0]
    cut = load_scenarios("ced", ced_sample_dir, limit=1, max_reactions=10)[0]
    assert cut.reactions == full.reactions[:10]
    assert cut.metadata["reaction_count"] == 205


def test_ced_full_archive(ced_archive: Path):
    """All 3,387 events stream from the archive; about a minute on a slow 2-core machine."""
    start = time.perf_counter()
    events = reactions = with_text = year_inferred = 0
    veracity = {"rumor": 0, "non-rumor": 0}
    largest = 0
    repeated = 0
    with pytest.warns(RepeatedPostWarning, match="ced: kept once 724 post"):
        for event in iter_scenarios("ced", ced_archive):
            events += 1
            reactions += len(event)
            largest = max(largest, len(event))
            with_text += sum(1 for r in event.reactions if r.text)
            year_inferred += sum(1 for r in event.reactions if r.metadata.get("year_inferred"))
            veracity[event.metadata["veracity"]] += 1
            repeated += event.metadata.get("repeated_posts", 0)
    elapsed = time.perf_counter() - start
    print(f"streamed {events} CED events, {reactions} reactions in {elapsed:.1f} s")
    assert events == 3387 and veracity == {"rumor": 1538, "non-rumor": 1849}
    # 1,275,180 reposts and 768,573 with text as listed; 724 of them listed twice.
    assert reactions == 1_274_456 and with_text == 768_035 and repeated == 724
    assert year_inferred == 74 and largest == 961


def ced_reposts(event: int, count: int) -> list[dict]:
    return [
        {
            "kids": [],
            "uid": f"u{event}_{i}",
            "parent": "",
            "text": "转发" * (i % 3),
            "mid": f"m{event}_{i}",
            "date": f"2013-{1 + i % 12:02d}-01 12:00:{i % 60:02d}",
        }
        for i in range(count)
    ]


def write_ced_folder(root: Path, events: int, reactions: int) -> Path:
    """A CED-shaped folder: ``events`` events of ``reactions`` reposts each."""
    for name in ("original-microblog", "rumor-repost", "non-rumor-repost"):
        (root / name).mkdir(parents=True)
    for event in range(events):
        name = f"{event}_mid{event}_{1000 + event}.json"
        source = {
            "text": f"event {event}",
            "time": 1350000000 + event,
            "user": "empty",
            "reposts": reactions,
            "comments": 0,
            "likes": 0,
            "pics": 0,
            "has_url": False,
            "source": "test",
        }
        (root / "original-microblog" / name).write_text(json.dumps(source))
        folder = "rumor-repost" if event % 2 else "non-rumor-repost"
        (root / folder / name).write_text(json.dumps(ced_reposts(event, reactions)))
    return root


def write_archive_like_ced(folder: Path, archive: Path) -> Path:
    """Pack ``folder`` as CED's archive does: non-rumour reposts, sources, rumour reposts."""
    with tarfile.open(archive, "w:xz", preset=0) as tar:
        for name in ("non-rumor-repost", "original-microblog", "rumor-repost"):
            for file in sorted((folder / name).iterdir()):
                tar.add(file, arcname=f"CED_Dataset/{name}/{file.name}")
    return archive


def traced_peak(run) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_ced_streaming_memory_is_bounded_by_one_event(tmp_path: Path):
    events, reactions = 10, 1500
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=events, reactions=reactions)
    archive = write_archive_like_ced(folder, tmp_path / "ced.tar.xz")
    one_event = traced_peak(lambda: load_scenarios("ced", folder, limit=1))
    for path in (folder, archive):
        count = 0

        def stream(path=path):
            nonlocal count
            for event in iter_scenarios("ced", path):
                count += len(event)

        peak = traced_peak(stream)
        assert count == events * reactions
        # Streaming holds the event the caller still has, the one being built and its
        # file's bytes; holding all events would take about events * one_event.
        assert peak < 3 * one_event, (path, peak, one_event)


def test_ced_archive_order_and_folder_agree(tmp_path: Path):
    folder = write_ced_folder(tmp_path / "unpacked" / "CED_Dataset", events=4, reactions=5)
    archive = write_archive_like_ced(folder, tmp_path / "ced.tar.xz")
    from_archive = load_scenarios("ced", archive)
    from_folder = load_scenarios("ced", tmp_path / "unpacked")  # parent of CED_Dataset/
    assert [e.scenario_id for e in from_archive] == [  # archive order: non-rumour first
        "ced/0_mid0_1000",
        "ced/2_mid2_1002",
        "ced/1_mid1_1001",
        "ced/3_mid3_1003",
    ]
    assert sorted(from_archive, key=lambda e: e.metadata["index"]) == from_folder
    assert from_folder[0].source.author.profile == {}  # "user": "empty"


@pytest.fixture
def ced_copy(ced_sample_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ced_sample_dir, tmp_path / "sample"))


def test_ced_bad_reaction_record(ced_copy: Path):
    file = ced_copy / "rumor-repost" / "0_yBmepBtUB_2279086572.json"
    records = json.loads(file.read_text())
    records[3]["date"] = "yesterday"
    records[5]["uid"] = ["not", "an", "id"]
    file.write_text(json.dumps(records, ensure_ascii=False))
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("ced", ced_copy)
    error = caught.value
    assert (error.path, error.record, error.field) == (str(file), records[3]["mid"], "date")
    assert "cannot parse 'yesterday'" in str(error)
    with pytest.warns(ScenarioFormatWarning, match="ced: skipped 2 bad record") as warned:
        events = load_scenarios("ced", ced_copy, on_error="skip")
    assert [w.category for w in warned] == [ScenarioFormatWarning, RepeatedPostWarning]
    assert "field 'uid': expected str or int, got list" in str(warned[0].message)
    assert [len(e) for e in events] == [203, 372, 239, 602]


def test_ced_bad_files_skip_their_event(ced_copy: Path):
    (ced_copy / "non-rumor-repost" / "2601_85jBAr_1700757973.json").write_text("[{")
    source = ced_copy / "original-microblog" / "1000_yFDQ0ffqy_2082357197.json"
    source.write_text(json.dumps({**json.loads(source.read_text()), "time": "soon"}))
    with pytest.raises(ScenarioFormatError, match="field 'time': cannot parse 'soon'"):
        load_scenarios("ced", ced_copy)
    with pytest.warns(ScenarioFormatWarning, match="skipped 2") as warned:
        events = load_scenarios("ced", ced_copy, on_error="skip")
    assert "invalid JSON" in str(warned[0].message)
    assert [e.scenario_id for e in events] == [
        "ced/0_yBmepBtUB_2279086572",
        "ced/2602_AfRpJr42Z_2451549504",
    ]


def test_ced_event_in_both_repost_folders_is_refused(tmp_path: Path):
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=3, reactions=2)
    name = "0_mid0_1000.json"  # a non-rumour event, now in both folders
    shutil.copy(folder / "non-rumor-repost" / name, folder / "rumor-repost" / name)
    archive = write_archive_like_ced(folder, tmp_path / "ced.tar.xz")
    for path, where in ((folder, folder), (archive, f"{archive}:CED_Dataset")):
        with pytest.raises(ScenarioFormatError) as caught:
            load_scenarios("ced", path)
        error = caught.value
        assert (error.path, error.record) == (f"{where}/original-microblog/{name}", "0_mid0_1000")
        assert error.reason == (
            f"2 repost files for this event ({where}/non-rumor-repost/{name}, "
            f"{where}/rumor-repost/{name}): whether it is a rumour cannot be told"
        )
        with pytest.warns(ScenarioFormatWarning, match="ced: skipped 1 .*0_mid0_1000"):
            events = load_scenarios("ced", path, on_error="skip")
        assert sorted(e.scenario_id for e in events) == ["ced/1_mid1_1001", "ced/2_mid2_1002"]


def test_ced_damaged_archive(tmp_path: Path):
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=3, reactions=200)
    whole = write_archive_like_ced(folder, tmp_path / "ced.tar.xz").read_bytes()
    archive = tmp_path / "cut.tar.xz"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ScenarioFormatError, match="damaged or truncated archive") as caught:
        load_scenarios("ced", archive)
    assert caught.value.path == str(archive)
    with pytest.warns(ScenarioFormatWarning, match="skipped 1 .*damaged or truncated archive"):
        assert load_scenarios("ced", archive, on_error="skip") == []
    archive.write_bytes(whole[:100])
    with pytest.raises(ValueError, match=r"cut\.tar\.xz: not a tar archive"):
        iter_scenarios("ced", archive)


def test_ced_folder_where_a_file_is_expected(tmp_path: Path):
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=3, reactions=2)
    reposts = folder / "rumor-repost" / "1_mid1_1001.json"
    reposts.unlink()
    reposts.mkdir()
    with pytest.raises(ScenarioFormatError, match="cannot read: Is a directory") as caught:
        load_scenarios("ced", folder)
    assert caught.value.path == str(reposts)
    with pytest.warns(ScenarioFormatWarning, match="skipped 1 .*cannot read: Is a directory"):
        assert len(load_scenarios("ced", folder, on_error="skip")) == 2


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"time": 1e20}, "time", "expected unix seconds of the years 1..9999"),
        ({"time": float("inf")}, "time", "got inf"),
        ({"likes": -1}, "likes", "expected a count (>= 0), got -1"),
        ({"reposts": float("nan")}, "reposts", "expected a whole number, got nan"),
        ({"user": {"time": 1e20}}, "time", "expected unix seconds of the years 1..9999"),
        ({"user": {"followers": 2**70}}, "followers", "expected a 64-bit integer"),
        ({"user": ["empty"]}, "user", "expected dict or str, got list"),
    ],
)
def test_ced_source_numbers_must_be_in_range(tmp_path: Path, change, field, reason):
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=2, reactions=2)
    source = folder / "original-microblog" / "1_mid1_1001.json"
    source.write_text(json.dumps({**json.loads(source.read_text()), **change}))
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("ced", folder)
    error = caught.value
    assert (error.path, error.record, error.field) == (str(source), "1_mid1_1001", field)
    assert reason in error.reason


def test_ced_undated_year_is_a_year(tmp_path: Path):
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=1, reactions=2)
    with pytest.raises(ValueError, match=r"undated_year must be a year in 1\.\.9999, got 0"):
        iter_scenarios("ced", folder, undated_year=0)


def test_ced_missing_paths(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"CED_Dataset\.tar\.xz"):
        iter_scenarios("ced", tmp_path / "CED_Dataset.tar.xz")
    with pytest.raises(ValueError, match="no original-microblog/ folder"):
        iter_scenarios("ced", tmp_path)
    (tmp_path / "original-microblog").mkdir()
    with pytest.raises(
        ValueError, match=r"no event files \(\*\.json\) in original-microblog, rumor-repost"
    ):
        iter_scenarios("ced", tmp_path)
    archive = tmp_path / "empty.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(tmp_path / "original-microblog", arcname="CED_Dataset/original-microblog")
    with pytest.raises(ScenarioFormatError, match="no CED event files in this archive"):
        load_scenarios("ced", archive, on_error="skip")


# The MF-LLM paper's Rumdect format: fixture in the documented shape.


def weibo_post(mid: str, parent: str | None, text: str, t: int, **extra) -> dict:
    post = {
        "id": f"id-{mid}",
        "mid": mid,
        "uid": f"uid-{mid}",
        "parent": parent,
        "text": text,
        "original_text": extra.pop("original_text", text),
        "t": t,
        "reposts_count": 2,
        "comments_count": 1,
        "attitudes_count": 0,
        "followers_count": 120,
        "friends_count": 80,
        "bi_followers_count": 10,
        "statuses_count": 900,
        "favourites_count": 3,
        "verified": False,
        "verified_type": -1,
        "verified_reason": "",
        "user_description": "我的简介",
        "user_location": "北京 海淀区",
        "province": "11",
        "city": 8,  # the Weibo API gives these as numbers or strings
        "gender": "f",
        "screen_name": f"name-{mid}",
        "username": f"user-{mid}",
        "user_created_at": 1262304000,
        "user_geo_enabled": False,
        "geo": None,
        "picture": None,
        "user_avatar": "http://example.invalid/a.jpg",
    }
    post.update(extra)
    return post


def write_rumdect(folder: Path) -> Path:
    folder.mkdir(parents=True)
    event = [
        weibo_post(
            "3900000000000001",
            None,
            "某地发生大事，请转发。",
            1400000000,
            gender="m",
            verified=True,
            followers_count=50000,
        ),
        weibo_post("3900000000000003", "3900000000000001", "真的假的？", 1400000300),
        weibo_post(
            "3900000000000002",
            "3900000000000001",
            "转发微博",
            1400000100,
            original_text="转发微博//@name-3900000000000001:某地发生大事，请转发。",
        ),
        weibo_post("3900000000000004", "3900000000000003", "谣言吧", 1400000300),
    ]
    (folder / "4010312877.json").write_text(json.dumps(event, ensure_ascii=False))
    (folder / "4010312999.json").write_text(json.dumps(event[:2], ensure_ascii=False))
    return folder


def test_rumdect_folder(tmp_path: Path):
    events = load_scenarios("rumdect", write_rumdect(tmp_path / "rumdect"))
    assert [e.scenario_id for e in events] == ["rumdect/4010312877", "rumdect/4010312999"]
    event = events[0]
    assert event.language == "zh" and event.default_label_dimension == "weibo"
    assert event.metadata == {"dataset": "rumdect", "event": "4010312877"}
    assert event.source.reaction_id == "3900000000000001" and event.source.parent_id is None
    assert [r.reaction_id for r in event.reactions] == [  # time order, ties kept in file order
        "3900000000000002",
        "3900000000000003",
        "3900000000000004",
    ]
    repost = event.reactions[0]
    assert repost.text == "转发微博"
    assert repost.metadata["original_text"].startswith("转发微博//@name-3900000000000001")
    assert repost.metadata["reposts_count"] == 2 and repost.timestamp == 1400000100.0
    assert event.reactions[2].parent_id == "3900000000000003"
    profile = event.source.author.profile
    assert {
        k: profile[k]
        for k in (
            "followers",
            "friends",
            "statuses",
            "verified",
            "gender",
            "name",
            "description",
            "location",
            "created_at",
        )
    } == {
        "followers": 50000,
        "friends": 80,
        "statuses": 900,
        "verified": True,
        "gender": "m",
        "name": "name-3900000000000001",
        "description": "我的简介",
        "location": "北京 海淀区",
        "created_at": "2010-01-01T00:00:00+00:00",
    }
    assert profile["bi_followers_count"] == 10 and profile["province"] == "11"
    assert profile["city"] == "8"
    one = load_scenarios("rumdect", tmp_path / "rumdect" / "4010312999.json")
    assert one == events[1:]


@pytest.mark.parametrize(
    ("change", "record", "field", "reason"),
    [
        ({"t": "noon"}, "3900000000000003", "t", "expected int or float, got str"),
        ({"text": None}, "3900000000000003", "text", "expected str, got null"),
        ({"mid": None}, "element 1", "mid", "expected str or int, got null"),
        ({"t": 1e20}, "3900000000000003", "t", "expected unix seconds of the years 1..9999"),
        ({"t": float("nan")}, "3900000000000003", "t", "got nan"),
        (
            {"user_created_at": -1e15},
            "3900000000000003",
            "user_created_at",
            "expected unix seconds of the years 1..9999",
        ),
        ({"followers_count": -5}, "3900000000000003", "followers_count", "expected a count"),
        ({"reposts_count": 2**64}, "3900000000000003", "reposts_count", "a 64-bit integer"),
        ({"verified_type": 0.5}, "3900000000000003", "verified_type", "expected a whole number"),
    ],
)
def test_rumdect_bad_reaction(tmp_path: Path, change, record, field, reason):
    folder = write_rumdect(tmp_path / "rumdect")
    file = folder / "4010312877.json"
    posts = json.loads(file.read_text())
    posts[1].update(change)
    file.write_text(json.dumps(posts, ensure_ascii=False))
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("rumdect", folder)
    error = caught.value
    assert (error.path, error.record, error.field) == (str(file), record, field)
    assert reason in str(error) and str(file) in str(error)
    with pytest.warns(ScenarioFormatWarning, match="rumdect: skipped 1 bad record"):
        events = load_scenarios("rumdect", folder, on_error="skip")
    assert [len(e) for e in events] == [2, 1]


def test_rumdect_unpaired_surrogate_and_file_name_not_utf8(tmp_path: Path):
    folder = write_rumdect(tmp_path / "rumdect")
    file = folder / "4010312877.json"
    file.write_text(file.read_text().replace("真的假的？", "\\ud83d?"))  # half an emoji
    with pytest.raises(ScenarioFormatError, match="unpaired UTF-16 surrogate") as caught:
        load_scenarios("rumdect", folder)
    assert (caught.value.path, caught.value.field) == (str(file), "[1].text")
    file.unlink()
    odd = folder / os.fsdecode(b"\xff.json")
    (folder / "4010312999.json").rename(odd)
    with pytest.raises(ScenarioFormatError, match="field 'file name': not valid UTF-8"):
        load_scenarios("rumdect", folder)
    with pytest.warns(ScenarioFormatWarning, match="skipped 1"):
        assert load_scenarios("rumdect", folder, on_error="skip") == []


def test_rumdect_bad_files(tmp_path: Path):
    folder = write_rumdect(tmp_path / "rumdect")
    (folder / "4010312999.json").write_text('[{"mid": ')
    first = folder / "4010312877.json"
    posts = json.loads(first.read_text())
    first.write_text(json.dumps(posts[1:], ensure_ascii=False))  # element 0 is not a source
    with pytest.raises(ScenarioFormatError, match="element 0 must be the source post"):
        load_scenarios("rumdect", folder)
    with pytest.warns(ScenarioFormatWarning, match="skipped 2") as warned:
        assert load_scenarios("rumdect", folder, on_error="skip") == []
    assert "invalid JSON at line 1" in str(warned[0].message)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        iter_scenarios("rumdect", folder / "missing.json")


def test_weibo_scenarios_round_trip_through_jsonl(ced_sample_dir: Path, tmp_path: Path):
    loaded: list[Scenario] = [
        *load_scenarios("ced", ced_sample_dir),
        *load_scenarios("rumdect", write_rumdect(tmp_path / "rumdect")),
    ]
    path = tmp_path / "weibo.jsonl"
    assert write_scenarios_jsonl(loaded, path) == 6
    assert list(load_jsonl(path)) == loaded


def test_a_post_listed_twice_is_kept_once_and_counted(tmp_path: Path):
    """CED lists some reposts twice (other kids or parent, the same post): kept once, the
    first listing, counted per event and in one warning naming the file; a second post
    under one id (another text) is a bad record. The same in the Rumdect format."""
    folder = write_ced_folder(tmp_path / "CED_Dataset", events=2, reactions=4)
    file = folder / "non-rumor-repost" / "0_mid0_1000.json"
    reposts = json.loads(file.read_text())
    again = {**reposts[1], "kids": ["m0_3"], "parent": "m0_0"}
    file.write_text(json.dumps([*reposts, again, dict(again)]))
    with pytest.warns(RepeatedPostWarning) as warned:
        first, second = load_scenarios("ced", folder)
    assert [str(w.message) for w in warned] == [
        f"ced: kept once 2 post(s) that an event file lists more than once (first: {file}: "
        "post 'm0_1')"
    ]
    assert [r.reaction_id for r in first.reactions] == ["m0_0", "m0_1", "m0_2", "m0_3"]
    assert first.reactions[1].parent_id == "mid0"  # the first listing's parent ("": source)
    assert first.metadata["repeated_posts"] == 2 and "repeated_posts" not in second.metadata
    file.write_text(json.dumps([*reposts, {**reposts[1], "text": "another post"}]))
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("ced", folder)
    error = caught.value
    assert (error.path, error.record, error.field) == (str(file), "m0_1", "mid")
    assert "an earlier post of the event has this id, with another author, text or time" in str(
        error
    )

    rumdect = write_rumdect(tmp_path / "rumdect")
    event_file = rumdect / "4010312877.json"
    posts = json.loads(event_file.read_text())
    source_again = {**posts[0], "parent": posts[0]["mid"]}  # the source, listed as a reaction
    event_file.write_text(json.dumps([*posts, posts[1], source_again], ensure_ascii=False))
    with pytest.warns(RepeatedPostWarning, match="rumdect: kept once 2 post"):
        event = load_scenarios("rumdect", event_file)[0]
    assert len(event) == 3 and event.metadata["repeated_posts"] == 2
