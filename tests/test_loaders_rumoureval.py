"""RumourEval 2019 loader: counts on the real training release, both layouts, bad input."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from mfllm_env.loaders import (
    MissingLabelWarning,
    ScenarioFormatError,
    ScenarioFormatWarning,
    iter_scenarios,
    load_scenarios,
)
from mfllm_env.scenario import Scenario

CHARLIE = ("charliehebdo", "552783667052167168")  # 5 replies, in train-key.json
REDDIT = ("reddit-training-data", "18dmb4")  # 10 comments (one by a deleted account), train


def posts(scenario: Scenario) -> list:
    return [scenario.source, *scenario.reactions]


def key_labels(root: Path) -> dict[str, dict]:
    return {
        name: json.loads((root / name).read_text()) for name in ("train-key.json", "dev-key.json")
    }


@pytest.fixture(scope="module")
def threads(rumoureval_dir: Path) -> list[Scenario]:
    start = time.perf_counter()
    loaded = load_scenarios("rumoureval", rumoureval_dir)
    print(f"loaded {len(loaded)} RumourEval threads in {time.perf_counter() - start:.2f} s")
    return loaded


def test_all_threads_load_with_every_key_label(threads: list[Scenario], rumoureval_dir: Path):
    keys = key_labels(rumoureval_dir)
    assert len(threads) == 365
    assert Counter(s.metadata["platform"] for s in threads) == {"twitter": 325, "reddit": 40}
    assert Counter(s.metadata["split"] for s in threads) == {"train": 327, "dev": 38}
    assert len({s.scenario_id for s in threads}) == 365

    labelled = {
        p.reaction_id: p.labels["stance"] for s in threads for p in posts(s) if "stance" in p.labels
    }
    expected = {
        **keys["train-key.json"]["subtaskaenglish"],
        **keys["dev-key.json"]["subtaskaenglish"],
    }
    assert len(labelled) == 6702
    assert labelled == expected
    per_split = Counter(s.metadata["split"] for s in threads for p in posts(s))
    assert per_split == {"train": 5217, "dev": 1485}
    twitter = [p for s in threads if s.metadata["platform"] == "twitter" for p in posts(s)]
    assert len(twitter) == 5568
    assert Counter(p.labels["stance"] for p in twitter) == {
        "comment": 3685,
        "support": 1004,
        "query": 464,
        "deny": 415,
    }
    assert sum(len(s) for s in threads) == 6702 - 365


def test_thread_contents_metadata_and_profiles(threads: list[Scenario], rumoureval_dir: Path):
    by_id = {s.scenario_id: s for s in threads}
    thread = by_id["rumoureval/twitter/charliehebdo/552783667052167168"]
    assert thread.metadata == {
        "dataset": "rumoureval2019",
        "platform": "twitter",
        "event": "charliehebdo",
        "thread_id": CHARLIE[1],
        "split": "train",
        "veracity": "true",
        "unlabelled_posts": 0,
    }
    assert thread.language == "en" and thread.default_label_dimension == "stance"
    assert isinstance(thread.reactions, tuple) and len(thread) == 5
    assert thread.source.parent_id is None
    assert thread.source.timestamp == 1420628871.0  # Wed Jan 07 11:07:51 +0000 2015
    profile = thread.source.author.profile
    assert profile["followers"] == 129573 and profile["verified"] is True
    assert profile["name"] == "euronews" and profile["created_at"] == "2009-03-18T12:57:11+00:00"
    ids = {p.reaction_id for p in posts(thread)}
    assert all(r.parent_id in ids for r in thread.reactions)
    for scenario in threads:
        times = [r.timestamp for r in scenario.reactions]
        assert times == sorted(times)
        assert all(isinstance(t, float) for t in times)


def test_reddit_deleted_and_unexpanded_comments_are_kept_and_counted(threads: list[Scenario]):
    reddit = [s for s in threads if s.metadata["platform"] == "reddit"]
    assert sum(s.metadata["deleted_posts"] for s in reddit) == 47  # 40 [deleted], 7 [removed]
    assert sum(s.metadata["unavailable_posts"] for s in reddit) == 19
    stubs = [r for s in reddit for r in s.reactions if r.metadata.get("unavailable")]
    assert len(stubs) == 19 and all(r.text == "" and "stance" in r.labels for r in stubs)
    thread = next(s for s in reddit if s.metadata["thread_id"] == REDDIT[1])
    assert thread.scenario_id == "rumoureval/reddit/18dmb4"
    assert thread.source.text == "Even ants won't eat aspartame!"
    assert thread.source.author.author_id == "vinsneezel" and thread.source.author.profile == {}
    assert len(thread) == 10 and thread.metadata["deleted_posts"] == 0
    gone = [r for r in thread.reactions if r.author.author_id == "[deleted]"]
    assert len(gone) == 1 and gone[0].text.startswith("There is a very dangerous drug")


def test_event_episodes_merge_threads_in_time_order(rumoureval_dir: Path, threads):
    events = load_scenarios("rumoureval", rumoureval_dir, episode="event")
    assert len(events) == 9 + 40  # a Reddit thread is its own event
    charlie = next(e for e in events if e.scenario_id == "rumoureval/twitter/charliehebdo")
    charlie_threads = [s for s in threads if s.metadata.get("event") == "charliehebdo"]
    assert len(charlie.metadata["thread_ids"]) == len(charlie_threads) == 78
    assert charlie.source == min((s.source for s in charlie_threads), key=lambda p: p.timestamp)
    assert len(charlie) + 1 == sum(len(s) + 1 for s in charlie_threads)
    assert charlie.metadata["split"] == "mixed"
    assert Counter(charlie.metadata["thread_splits"].values()) == {"train": 74, "dev": 4}
    assert sum(len(e) + 1 for e in events) == 6702

    dev = load_scenarios(
        "rumoureval", rumoureval_dir, episode="event", split="dev", platform="twitter"
    )
    assert {e.metadata["event"] for e in dev} == {
        "charliehebdo",
        "ferguson",
        "germanwings-crash",
        "illary",
        "ottawashooting",
        "sydneysiege",
    }
    assert all(e.metadata["split"] == "dev" for e in dev)
    assert sum(len(e.metadata["thread_ids"]) for e in dev) == 28


def test_train_and_dev_threads_merge_by_event(rumoureval_dir: Path):
    """split="train+dev" keeps the threads of both splits; as events, each event's threads
    of both are one scenario: the long-horizon benchmark's events (>= 64 reactions)."""
    from mfllm_env.specs import iter_spec

    def events(split: str) -> dict[str, Scenario]:
        loaded = load_scenarios("rumoureval", rumoureval_dir, episode="event", split=split)
        return {e.scenario_id: e for e in loaded}

    both, train, dev = events("train+dev"), events("train"), events("dev")
    assert set(both) == set(train) | set(dev)
    for scenario_id, merged in both.items():
        parts = [s for s in (train.get(scenario_id), dev.get(scenario_id)) if s is not None]
        assert len(merged) + 1 == sum(len(s) + 1 for s in parts)
    charlie = both["rumoureval/twitter/charliehebdo"]
    assert len(charlie) == 1163 and charlie.metadata["split"] == "mixed"
    assert Counter(charlie.metadata["thread_splits"].values()) == {"train": 74, "dev": 4}
    # The spec the long-horizon protocol benches: 7 Twitter events and 3 Reddit threads.
    spec = f"rumoureval:{rumoureval_dir}:train+dev"
    long = {s.scenario_id: len(s) for s in iter_spec(spec, min_reactions=64)}
    assert long == {k: len(v) for k, v in both.items() if len(v) >= 64}
    assert sum(k.startswith("rumoureval/twitter/") for k in long) == 7 and len(long) == 10
    assert min(long.values()) == 102 and "rumoureval/twitter/putinmissing" not in long
    for split in ("train+train", "train+", "dev+final", "", 3):
        with pytest.raises(ValueError, match=r"split must be one of .* joined by '\+'"):
            iter_scenarios("rumoureval", rumoureval_dir, split=split)


def test_pheme_joins_certainty_beside_stance(rumoureval_dir: Path, pheme_annotations: Path):
    loaded = load_scenarios(
        "rumoureval", rumoureval_dir, platform="twitter", pheme=pheme_annotations
    )
    all_posts = [p for s in loaded for p in posts(s)]
    assert all("stance" in p.labels for p in all_posts)
    assert sum("certainty" in p.labels for p in all_posts) == 1997
    assert sum("pheme_support" in s.source.labels for s in loaded) == 297
    assert not any("pheme_support" in r.labels for s in loaded for r in s.reactions)


def make_test_release(rumoureval_dir: Path, root: Path) -> Path:
    """Two real threads copied into the test-release layout, plus a key of their labels."""
    shutil.copytree(
        rumoureval_dir / "twitter-english" / CHARLIE[0] / CHARLIE[1],
        root / "twitter-en-test-data" / CHARLIE[0] / CHARLIE[1],
    )
    shutil.copytree(rumoureval_dir / REDDIT[0] / REDDIT[1], root / "reddit-test-data" / REDDIT[1])
    train = json.loads((rumoureval_dir / "train-key.json").read_text())
    ids = {f.stem for f in root.rglob("*.json") if f.parent.name in ("source-tweet", "replies")}
    key = {
        "subtaskaenglish": {i: v for i, v in train["subtaskaenglish"].items() if i in ids},
        "subtaskbenglish": {t: train["subtaskbenglish"][t] for t in (CHARLIE[1], REDDIT[1])},
    }
    key_path = root.parent / "final-eval-key.json"  # kept apart, as the task released it
    key_path.write_text(json.dumps(key))
    return key_path


def test_test_release_layout_with_separate_key(rumoureval_dir: Path, tmp_path: Path):
    key = make_test_release(rumoureval_dir, tmp_path / "release")
    loaded = load_scenarios("rumoureval", tmp_path / "release", keys=[key])
    assert [s.scenario_id for s in loaded] == [
        "rumoureval/twitter/charliehebdo/552783667052167168",
        "rumoureval/reddit/18dmb4",
    ]
    assert [s.metadata["split"] for s in loaded] == ["test", "test"]
    assert all("stance" in p.labels for s in loaded for p in posts(s))
    assert loaded[0].metadata["veracity"] == "true"
    assert load_scenarios("rumoureval", tmp_path / "release", keys=key, split="test") == loaded
    unkeyed = load_scenarios("rumoureval", tmp_path / "release", keys=[])  # split from folder
    assert [s.metadata["split"] for s in unkeyed] == ["test", "test"]
    assert not any(p.labels for s in unkeyed for p in posts(s))
    assert [s.metadata["unlabelled_posts"] for s in unkeyed] == [6, 11]


@pytest.fixture
def thread_copy(rumoureval_dir: Path, tmp_path: Path) -> Path:
    """A release folder holding one real Twitter thread (5 replies) and the train key."""
    root = tmp_path / "release"
    shutil.copytree(
        rumoureval_dir / "twitter-english" / CHARLIE[0] / CHARLIE[1],
        root / "twitter-english" / CHARLIE[0] / CHARLIE[1],
    )
    shutil.copy(rumoureval_dir / "train-key.json", root)
    return root


REPLY = "552785374507175936"


def corrupt(root: Path, change) -> Path:
    reply = root / "twitter-english" / CHARLIE[0] / CHARLIE[1] / "replies" / f"{REPLY}.json"
    text = reply.read_text()
    reply.write_text(change(json.loads(text)) if callable(change) else change)
    return reply


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ('{"id_str": ', None, "invalid JSON"),
        (lambda t: json.dumps({k: v for k, v in t.items() if k != "text"}), "text", "missing"),
        (
            lambda t: json.dumps({**t, "created_at": "xyz"}),
            "created_at",
            "cannot parse 'xyz' as a Twitter date",
        ),
        (lambda t: json.dumps({**t, "user": "someone"}), "user", "expected dict, got str"),
        (lambda t: json.dumps({**t, "retweet_count": "many"}), "retweet_count", "expected int"),
        (
            lambda t: json.dumps({**t, "retweet_count": float("nan")}),
            "retweet_count",
            "expected a whole number, got nan",
        ),
        (
            lambda t: json.dumps({**t, "retweet_count": 1e20}),
            "retweet_count",
            "expected a 64-bit integer, got 1e+20",
        ),
        (
            lambda t: json.dumps({**t, "favorite_count": -1}),
            "favorite_count",
            "expected a count (>= 0), got -1",
        ),
        (
            lambda t: json.dumps({**t, "user": {**t["user"], "followers_count": float("inf")}}),
            "followers_count",
            "expected a whole number, got inf",
        ),
        (lambda t: json.dumps([t]), None, "expected a JSON object, got list"),
        (lambda t: json.dumps({**t, "id_str": 5.5}), "id_str", "expected str or int, got float"),
        ("", None, "empty: no JSON value"),
        ("[" * 100_000, None, "JSON nested too deeply to read"),
    ],
)
def test_bad_reply_raises_naming_file_record_field_or_is_skipped(
    thread_copy: Path, change, field, reason
):
    reply = corrupt(thread_copy, change)
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("rumoureval", thread_copy)
    error = caught.value
    assert (error.path, error.record, error.field) == (str(reply), REPLY, field)
    assert str(reply) in str(error) and f"record {REPLY}" in str(error) and reason in str(error)

    with pytest.warns(ScenarioFormatWarning, match=r"rumoureval: skipped 1 bad record") as warned:
        (thread,) = load_scenarios("rumoureval", thread_copy, on_error="skip")
    assert len(warned) == 1 and reason in str(warned[0].message)
    assert len(thread) == 4 and REPLY not in {r.reaction_id for r in thread.reactions}


def test_bad_source_post_skips_its_thread(thread_copy: Path):
    source = thread_copy / "twitter-english" / CHARLIE[0] / CHARLIE[1] / "source-tweet"
    (source / f"{CHARLIE[1]}.json").write_text("[]")
    with pytest.raises(ScenarioFormatError, match="expected a JSON object, got list"):
        load_scenarios("rumoureval", thread_copy)
    with pytest.warns(ScenarioFormatWarning, match="skipped 1"):
        assert load_scenarios("rumoureval", thread_copy, on_error="skip") == []


def test_bad_key_file_always_raises(thread_copy: Path):
    key = thread_copy / "train-key.json"
    key.write_text(json.dumps({"subtaskaenglish": {REPLY: "agree"}}))
    with pytest.raises(ScenarioFormatError, match="'agree' is not one of") as caught:
        iter_scenarios("rumoureval", thread_copy, on_error="skip")
    assert (caught.value.path, caught.value.record) == (str(key), REPLY)


def test_folder_without_key_files_is_refused_unless_asked(thread_copy: Path):
    (thread_copy / "train-key.json").unlink()
    for on_error in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"no key files \(\*-key\.json\) here") as caught:
            iter_scenarios("rumoureval", thread_copy, on_error=on_error)
        assert str(thread_copy) in str(caught.value) and "--no-keys" in str(caught.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unlabelled on purpose: no warning
        (thread,) = load_scenarios("rumoureval", thread_copy, keys=[])
    assert not any(post.labels for post in posts(thread))
    assert thread.metadata["unlabelled_posts"] == 6


def test_key_files_of_other_data_are_refused(thread_copy: Path, tmp_path: Path):
    other = tmp_path / "other-key.json"
    other.write_text(json.dumps({"subtaskaenglish": {"1": "support"}}))
    with pytest.raises(ValueError, match=r"give\(s\) no stance label to the source post of"):
        iter_scenarios("rumoureval", thread_copy, keys=[other])
    pheme = tmp_path / "pheme.json"
    pheme.write_text(json.dumps([{"tweetid": "1", "certainty": "certain"}]))
    with pytest.raises(ValueError, match="no certainty or pheme_support label to the source"):
        iter_scenarios("rumoureval", thread_copy, pheme=pheme)
    other.write_text(json.dumps({"subtaskbenglish": {CHARLIE[1]: "true"}}))
    with pytest.raises(ScenarioFormatError, match="'subtaskaenglish': missing required field"):
        iter_scenarios("rumoureval", thread_copy, keys=other)


def test_posts_the_keys_leave_unlabelled_are_counted(thread_copy: Path):
    key_path = thread_copy / "train-key.json"
    key = json.loads(key_path.read_text())
    del key["subtaskaenglish"][REPLY]
    key_path.write_text(json.dumps(key))
    with pytest.warns(MissingLabelWarning) as warned:
        (thread,) = load_scenarios("rumoureval", thread_copy)
    assert len(warned) == 1
    assert str(warned[0].message).startswith(
        "rumoureval: 1 of 6 posts, in 1 thread(s), have no stance label in the key files "
        "(train-key.json); they count as unlabelled"
    )
    assert thread.metadata["unlabelled_posts"] == 1
    assert [r.reaction_id for r in thread.reactions if "stance" not in r.labels] == [REPLY]
    with pytest.warns(MissingLabelWarning, match="1 of 6 posts"):
        (event,) = load_scenarios("rumoureval", thread_copy, episode="event")
    assert event.metadata["unlabelled_posts"] == 1


def test_a_single_key_path_is_one_key_file(thread_copy: Path):
    key = thread_copy / "train-key.json"
    expected = load_scenarios("rumoureval", thread_copy, keys=[key])
    assert load_scenarios("rumoureval", thread_copy, keys=str(key)) == expected
    assert load_scenarios("rumoureval", thread_copy, keys=key) == expected
    with pytest.raises(ValueError, match="keys must be a path or a list of paths, got 5"):
        iter_scenarios("rumoureval", thread_copy, keys=5)
    with pytest.raises(ValueError, match="expected a file or folder path, got int 5"):
        iter_scenarios("rumoureval", thread_copy, pheme=5)


@pytest.mark.parametrize("episode", ["thread", "event"])
def test_a_thread_in_two_release_folders_is_a_duplicate(thread_copy: Path, episode: str):
    shutil.copytree(thread_copy / "twitter-english", thread_copy / "twitter-en-test-data")
    with pytest.raises(ScenarioFormatError, match="duplicate scenario id") as caught:
        load_scenarios("rumoureval", thread_copy, episode=episode)
    error = caught.value
    first, second = (
        thread_copy / folder / CHARLIE[0] for folder in ("twitter-en-test-data", "twitter-english")
    )
    if episode == "thread":
        first, second = first / CHARLIE[1], second / CHARLIE[1]
    assert (error.path, error.field) == (str(second), "scenario_id")
    assert f"{first}: record " in str(error) and "has it too" in str(error)
    with pytest.warns(ScenarioFormatWarning, match="skipped 1 .*duplicate scenario id"):
        assert len(load_scenarios("rumoureval", thread_copy, episode=episode, on_error="skip")) == 1


def test_a_folder_where_a_post_or_key_file_is_expected(thread_copy: Path):
    reply = corrupt(thread_copy, "{}")
    reply.unlink()
    reply.mkdir()
    with pytest.raises(ScenarioFormatError, match="cannot read: Is a directory") as caught:
        load_scenarios("rumoureval", thread_copy)
    assert caught.value.path == str(reply)
    with pytest.warns(ScenarioFormatWarning, match="skipped 1 .*cannot read: Is a directory"):
        (thread,) = load_scenarios("rumoureval", thread_copy, on_error="skip")
    assert len(thread) == 4
    key = thread_copy / "train-key.json"
    key.unlink()
    key.mkdir()
    with pytest.raises(ScenarioFormatError, match=r"train-key\.json: cannot read"):
        iter_scenarios("rumoureval", thread_copy, on_error="skip")


def test_options_and_paths_are_checked_up_front(rumoureval_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        iter_scenarios("rumoureval", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"final-eval-key\.json"):
        iter_scenarios("rumoureval", rumoureval_dir, keys=[tmp_path / "final-eval-key.json"])
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'spilt'.*valid: split, episode"):
        iter_scenarios("rumoureval", rumoureval_dir, spilt="dev")
    with pytest.raises(ValueError, match="unknown scenario source 'pheme'; valid: rumoureval"):
        iter_scenarios("pheme", rumoureval_dir)
    with pytest.raises(ValueError, match="episode must be one of"):
        iter_scenarios("rumoureval", rumoureval_dir, episode="day")
    with pytest.raises(ValueError, match="no RumourEval data"):
        iter_scenarios("rumoureval", tmp_path)
    (tmp_path / "twitter-english" / "event").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no thread folders in .*twitter-english \(expected"):
        iter_scenarios("rumoureval", tmp_path, keys=[])
    assert len(load_scenarios("rumoureval", rumoureval_dir, limit=3)) == 3
    reddit_dev = load_scenarios("rumoureval", rumoureval_dir, platform="reddit", split="dev")
    assert len(reddit_dev) == 10
