"""JSONL format: round trips of loaded scenarios, and bad lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mfllm_env.loaders import (
    ScenarioFormatError,
    ScenarioFormatWarning,
    iter_scenarios,
    load_scenarios,
    write_scenarios_jsonl,
)
from mfllm_env.scenario import Author, Reaction, Scenario


def small_scenario(scenario_id: str = "demo/1") -> Scenario:
    source = Reaction("s", Author("a", {"followers": 3}), "event text", 10.0)
    reactions = [
        Reaction("r1", Author("b"), "I doubt it", 11.0, "s", labels={"stance": "deny"}),
        Reaction("r2", Author("c"), "", 11.0, "r1", language="zh", metadata={"n": [1, 2]}),
    ]
    return Scenario(scenario_id, source, reactions, metadata={"split": "dev"})


def test_round_trip_of_rumoureval_threads_and_events(
    rumoureval_dir: Path, pheme_annotations: Path, tmp_path: Path
):
    threads = load_scenarios("rumoureval", rumoureval_dir, pheme=pheme_annotations, limit=40)
    reddit = load_scenarios("rumoureval", rumoureval_dir, platform="reddit", split="dev")
    events = load_scenarios(
        "rumoureval", rumoureval_dir, episode="event", platform="twitter", split="dev"
    )
    everything = threads + reddit + events
    path = tmp_path / "rumoureval.jsonl"
    assert write_scenarios_jsonl(iter(everything), path) == len(everything)
    back = load_scenarios("jsonl", path)
    assert back == everything
    assert [len(s) for s in back] == [len(s) for s in everything]


def test_format_fields_and_defaults(tmp_path: Path):
    path = tmp_path / "one.jsonl"
    write_scenarios_jsonl([small_scenario()], path)
    line = json.loads(path.read_text(encoding="utf-8"))
    assert set(line) == {
        "scenario_id",
        "language",
        "default_label_dimension",
        "metadata",
        "source",
        "reactions",
    }
    assert line["reactions"][0] == {
        "reaction_id": "r1",
        "author": {"author_id": "b", "profile": {}},
        "text": "I doubt it",
        "timestamp": 11.0,
        "parent_id": "s",
        "language": "en",
        "labels": {"stance": "deny"},
        "metadata": {},
    }
    minimal = {
        "scenario_id": "min",
        "language": "zh",
        "source": {"reaction_id": "s", "author": {"author_id": "a"}, "text": "x", "timestamp": 5},
    }
    (tmp_path / "more.jsonl").write_text("\n" + json.dumps(minimal) + "\n\n")
    (loaded,) = load_scenarios("jsonl", tmp_path / "more.jsonl")
    assert loaded == Scenario(
        "min", Reaction("s", Author("a"), "x", 5.0, language="zh"), (), language="zh"
    )
    assert [s.scenario_id for s in load_scenarios("jsonl", tmp_path)] == ["min", "demo/1"]


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d.pop("scenario_id"), "scenario_id", "missing required field"),
        (
            lambda d: d["reactions"][1].update(timestamp="later"),
            "reactions[1].timestamp",
            "expected int or float, got str",
        ),
        (
            lambda d: d["reactions"][0]["author"].pop("author_id"),
            "reactions[0].author.author_id",
            "missing required field",
        ),
        (
            lambda d: d["source"].update(labels={"stance": 3}),
            "source.labels.stance",
            "expected str",
        ),
        (
            lambda d: d["reactions"][0].update(timestamp=99.0),
            "reactions",
            "reactions must be in time order",
        ),
        (
            lambda d: d["reactions"][1].update(reaction_id="r1"),
            "reactions",
            "scenario 'bad': reaction 1 has id 'r1', as reaction 0 does; post ids must be "
            "unique",
        ),
        (
            lambda d: d["reactions"][0].update(reaction_id="s"),
            "reactions",
            "reaction 0 has id 's', as the source post does",
        ),
        *(
            (
                lambda d, odd=odd: d["reactions"][1].update(timestamp=odd),
                "reactions[1].timestamp",
                f"expected unix seconds of the years 1..9999 (-62135596800 .. 253402300799), "
                f"got {odd!r}",
            )
            for odd in (float("inf"), float("-inf"), float("nan"), 1e20, -1e12)
        ),
        (
            lambda d: d["source"]["author"]["profile"].update(followers=float("inf")),
            "source.author.profile.followers",
            "expected a whole number, got inf",
        ),
        (
            lambda d: d["source"]["author"]["profile"].update(followers=1e20),
            "source.author.profile.followers",
            "expected a 64-bit integer, got 1e+20",
        ),
        (
            lambda d: d["source"]["author"]["profile"].update(followers=-3),
            "source.author.profile.followers",
            "expected a count (>= 0), got -3",
        ),
        (
            lambda d: d["source"]["author"]["profile"].update(followers="many"),
            "source.author.profile.followers",
            "expected int or float, got str 'many'",
        ),
        (
            lambda d: d["reactions"][0]["author"]["profile"].update(verified="yes"),
            "reactions[0].author.profile.verified",
            "expected bool, got str",
        ),
        (
            lambda d: d["reactions"][0]["author"]["profile"].update(name=7),
            "reactions[0].author.profile.name",
            "expected str, got int 7",
        ),
        (lambda d: d.update(reactions={"r1": {}}), "reactions", "expected list, got dict"),
        (lambda d: d.update(scenario_id=12), "scenario_id", "expected str, got int 12"),
        (lambda d: d["source"].pop("text"), "source.text", "missing required field"),
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path: Path, mutate, field, reason):
    good = json.dumps(json.loads(_line(small_scenario("good"), tmp_path)))
    bad = json.loads(_line(small_scenario("bad"), tmp_path))
    mutate(bad)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good, json.dumps(bad), good.replace('"good"', '"good2"')]) + "\n")
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("jsonl", path)
    error = caught.value
    assert (error.path, error.record, error.field) == (str(path), "line 2", field)
    assert reason in str(error) and f"{path}: record line 2: field {field!r}" in str(error)
    with pytest.warns(ScenarioFormatWarning, match="jsonl: skipped 1 bad record"):
        assert [s.scenario_id for s in load_scenarios("jsonl", path, on_error="skip")] == [
            "good",
            "good2",
        ]


def test_invalid_json_and_missing_file(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"scenario_id": "a",\n[1, 2]\n')
    with pytest.raises(ScenarioFormatError, match=r"line 1: invalid JSON at line 1 column 21"):
        load_scenarios("jsonl", path)
    with pytest.warns(ScenarioFormatWarning, match=r"skipped 2 .*line 2: expected a JSON object"):
        assert load_scenarios("jsonl", path, on_error="skip") == []
    with pytest.raises(FileNotFoundError, match=r"absent\.jsonl"):
        iter_scenarios("jsonl", tmp_path / "absent.jsonl")
    with pytest.raises(ValueError, match="on_error must be one of"):
        iter_scenarios("jsonl", path, on_error="ignore")


def test_duplicate_scenario_ids_are_refused_naming_both_records(tmp_path: Path):
    write_scenarios_jsonl(
        [small_scenario("demo/1"), small_scenario("demo/2")], tmp_path / "a.jsonl"
    )
    write_scenarios_jsonl(
        [small_scenario("demo/3"), small_scenario("demo/1")], tmp_path / "b.jsonl"
    )
    with pytest.raises(ScenarioFormatError) as caught:
        load_scenarios("jsonl", tmp_path)
    error = caught.value
    second = tmp_path / "b.jsonl"
    assert (error.path, error.record, error.field) == (str(second), "line 2", "scenario_id")
    assert str(error) == (
        f"{second}: record line 2: field 'scenario_id': duplicate scenario id 'demo/1': "
        f"{tmp_path / 'a.jsonl'}: record line 1 has it too"
    )
    with pytest.warns(ScenarioFormatWarning, match="jsonl: skipped 1 .*duplicate scenario id"):
        loaded = load_scenarios("jsonl", tmp_path, on_error="skip")
    assert [s.scenario_id for s in loaded] == ["demo/1", "demo/2", "demo/3"]


def test_limit_reads_no_further_than_the_limit(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    write_scenarios_jsonl([small_scenario("demo/1")], path)
    path.write_text(path.read_text() + "not json\n")
    assert [s.scenario_id for s in load_scenarios("jsonl", path, limit=1)] == ["demo/1"]
    assert load_scenarios("jsonl", path, limit=0) == []


@pytest.mark.parametrize(
    ("content", "record", "reason"),
    [
        (b"", None, "empty: no scenario lines"),
        (b"\n  \n", None, "empty: no scenario lines"),
        (b"\x00\xff\xfe garbage", "line 1", "not UTF-8 text"),
        (b'{"scenario_id": "caf\xe9"}\n', "line 1", "not UTF-8 text"),
        (b"[" * 100_000 + b"\n", "line 1", "JSON nested too deeply to read"),
        (b'{"scenario_id": ' + b"9" * 5000 + b"}\n", "line 1", "unreadable JSON number"),
        (b"[1, 2]\n", "line 1", "expected a JSON object"),
        (b'{"scenario_id": "half \\ud83d an emoji"}\n', "line 1", "unpaired UTF-16 surrogate"),
        (b'"just a string"\n', "line 1", "expected a JSON object"),
    ],
)
def test_unreadable_lines_and_files(tmp_path: Path, content: bytes, record, reason):
    good = tmp_path / "a.jsonl"
    write_scenarios_jsonl([small_scenario("demo/1")], good)
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(content)
    with pytest.raises(ScenarioFormatError, match=re.escape(reason)) as caught:
        load_scenarios("jsonl", tmp_path)
    assert (caught.value.path, caught.value.record) == (str(bad), record)
    with pytest.warns(ScenarioFormatWarning, match=rf"skipped 1 bad .*{re.escape(str(bad))}"):
        assert len(load_scenarios("jsonl", tmp_path, on_error="skip")) == 1


def test_odd_but_readable_files_load(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    write_scenarios_jsonl([small_scenario("demo/1"), small_scenario("demo/2")], path)
    text = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + text.rstrip(b"\n"))  # a BOM, no final newline
    assert [s.scenario_id for s in load_scenarios("jsonl", path)] == ["demo/1", "demo/2"]
    path.write_bytes(text[:-5])  # the last line cut short
    with pytest.raises(ScenarioFormatError, match=r"record line 2: invalid JSON"):
        load_scenarios("jsonl", path)


def test_folder_or_symlink_loop_where_a_file_is_expected(tmp_path: Path):
    write_scenarios_jsonl([small_scenario("demo/1")], tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").mkdir()
    with pytest.raises(ScenarioFormatError, match=r"b\.jsonl: cannot read: Is a directory"):
        load_scenarios("jsonl", tmp_path)
    with pytest.warns(ScenarioFormatWarning, match=r"skipped 1 .*b\.jsonl: cannot read"):
        assert len(load_scenarios("jsonl", tmp_path, on_error="skip")) == 1
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop.name)
    with pytest.raises(ScenarioFormatError, match=r"loop\.jsonl: cannot read: Too many levels"):
        load_scenarios("jsonl", loop)
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "absent.jsonl")
    with pytest.raises(FileNotFoundError, match=r"a symlink to nothing: .*dangling\.jsonl"):
        load_scenarios("jsonl", tmp_path / "dangling.jsonl")


def test_writer_rejects_non_json_values(tmp_path: Path):
    bad = Scenario("odd", small_scenario().source, (), metadata={"tags": {"a", "b"}})
    with pytest.raises(TypeError, match="scenario 'odd'"):
        write_scenarios_jsonl([bad], tmp_path / "odd.jsonl")


def _line(scenario: Scenario, tmp_path: Path) -> str:
    path = tmp_path / "single.jsonl"
    write_scenarios_jsonl([scenario], path)
    return path.read_text(encoding="utf-8").strip()


def test_post_ids_are_unique_within_a_scenario():
    """Two posts under one id would make parent references ambiguous (and replay one post
    twice): refused, naming the scenario, the positions and the id; parents still work."""
    scenario = small_scenario()
    twice = [*scenario.reactions, scenario.reactions[0]]
    with pytest.raises(ValueError, match="scenario 'demo/1': reaction 2 has id 'r1', as "
                       "reaction 0 does; post ids must be unique"):  # fmt: skip
        Scenario("demo/1", scenario.source, twice)
    ids = {r.reaction_id for r in (scenario.source, *scenario.reactions)}
    assert all(r.parent_id in ids for r in scenario.reactions)


def test_an_interrupted_export_leaves_the_old_file(tmp_path: Path):
    path = tmp_path / "scenarios.jsonl"
    write_scenarios_jsonl([small_scenario("old/1")], path)
    before = path.read_bytes()

    def cut_short():
        yield small_scenario("new/1")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_scenarios_jsonl(cut_short(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenarios.jsonl"]
    assert write_scenarios_jsonl([small_scenario("new/1"), small_scenario("new/2")], path) == 2
    assert [s.scenario_id for s in load_scenarios("jsonl", path)] == ["new/1", "new/2"]


def test_export_to_a_folder_or_of_other_things_is_refused_and_leaves_nothing(tmp_path: Path):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder, not a JSONL file"):
        write_scenarios_jsonl([small_scenario()], folder)
    path = tmp_path / "scenarios.jsonl"
    with pytest.raises(TypeError, match="item 1 to write is not a Scenario: 3"):
        write_scenarios_jsonl([small_scenario(), 3], path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no out.partial left


def test_an_unhashable_source_is_an_unknown_source():
    with pytest.raises(ValueError, match=r"unknown scenario source \['jsonl'\]; valid: rumoureval"):
        load_scenarios(["jsonl"], "x.jsonl")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: Reaction("r9", s.source.author, "x", "2020"), "'r9': timestamp must be a num"),
        (lambda s: Reaction("r9", s.source.author, None, 1.0), "text must be a str, got None"),
        (lambda s: Reaction("r9", s.source.author, "x", True), "timestamp must be a number"),
        (lambda s: Reaction("r9", "alice", "x", 1.0), "author must be an Author, got 'alice'"),
        (lambda s: Reaction("r9", s.source.author, "x", 1.0, labels=["support"]), "labels must"),
        (lambda s: Reaction(9, s.source.author, "x", 1.0), "reaction_id must be a str, got 9"),
        (lambda s: Author("a", None), "author 'a': profile must be a mapping, got NoneType"),
        (lambda s: Scenario("d", None, s.reactions), "scenario 'd': source must be a Reaction"),
        (lambda s: Scenario("d", s.source, [s.reactions[0], 1]), "reaction 1 is not a Reaction"),
        (lambda s: Scenario("d", s.source, "abc"), "reactions must be a sequence of Reactions"),
        (lambda s: Scenario("d", s.source, None), "reactions must be a sequence of Reactions"),
        (lambda s: Scenario(3, s.source, s.reactions), "scenario_id must be a str, got 3"),
        (lambda s: Scenario("d", s.source, s.reactions, metadata=[]), "metadata must be a map"),
    ],
)
def test_scenarios_built_by_hand_with_wrong_types_are_refused(build, message):
    with pytest.raises(TypeError, match=message):
        build(small_scenario())


@pytest.mark.parametrize("followers", ["many", float("nan"), float("inf"), -3, None, True])
def test_followers_that_are_not_a_count_read_as_unknown(followers):
    assert Author("a", {"followers": followers}).followers == 0
    assert Author("a", {"followers": 12.0}).followers == 12


def test_text_no_file_can_hold_is_refused_in_scenarios_built_by_hand():
    """A lone surrogate in a post's text or id reached the run files (the Recent/Popular
    mean-field text) and ended a run with a UnicodeEncodeError."""
    scenario = small_scenario()
    author = scenario.source.author
    with pytest.raises(TypeError, match="'r9': text has characters that cannot be written"):
        Reaction("r9", author, "a\ud800b", 1.0)
    with pytest.raises(TypeError, match="reaction_id has characters that cannot be written"):
        Reaction("r9\udc80", author, "text", 1.0)
