"""The default labellers (SDQC linear model, Weibo rules) and their evaluation."""

from __future__ import annotations

import gzip
import json
import random
import re

import numpy as np
import pytest

from mfllm_env.labelers import (
    LinearTextModel,
    SDQCLabeler,
    WeiboRuleLabeler,
    default_labeler,
    evaluate_labeler,
    sdqc_features,
    weibo_label,
)
from mfllm_env.labelers.sdqc import DEFAULT_ARTIFACT
from mfllm_env.labelers.train_sdqc import export, fit
from mfllm_env.labels import CERTAINTY, SDQC, UNLABELLED, WEIBO, ActionLabeler
from mfllm_env.loaders import load_scenarios
from mfllm_env.scenario import Author, Reaction, Scenario

TWEETS = [
    "@bbc is this confirmed? any source?",
    "This is fake, a hoax. Not true at all",
    "BREAKING: police confirm two hostages escaped http://t.co/abc",
    "RIP to the victims, thoughts and prayers",
    "@user1 @user2 What happened there??",
    "RT @news: gunman identified as local man",
]


def _random_text(rng: random.Random) -> str:
    pools = [(0x20, 0x7E), (0xA0, 0x2FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0, 0x10FFFF)]
    chars = []
    for _ in range(rng.randint(0, 80)):
        low, high = rng.choice(pools)
        code = rng.randint(low, high)
        chars.append(chr(code) if not 0xD800 <= code <= 0xDFFF else "?")
    return "".join(chars)


@pytest.fixture(scope="module")
def sdqc() -> SDQCLabeler:
    return default_labeler("stance")  # type: ignore[return-value]


# --- SDQC labeller ------------------------------------------------------------------------


def test_default_labelers_follow_the_protocol(sdqc: SDQCLabeler) -> None:
    assert isinstance(sdqc, ActionLabeler) and sdqc.scheme is SDQC
    weibo = default_labeler("weibo")
    assert isinstance(weibo, ActionLabeler) and weibo.scheme is WEIBO
    assert default_labeler(SDQC) is sdqc  # loaded once, shared
    assert isinstance(default_labeler(WEIBO), WeiboRuleLabeler)


def test_default_labeler_refuses_dimensions_without_one() -> None:
    with pytest.raises(ValueError, match="no default labeller exists for dimension 'certainty'"):
        default_labeler("certainty")
    with pytest.raises(ValueError, match="pass a labeller"):
        default_labeler(CERTAINTY)


def test_sdqc_output_shape_range_and_determinism(sdqc: SDQCLabeler) -> None:
    ids = sdqc.label(TWEETS)
    assert ids.shape == (len(TWEETS),) and ids.dtype == np.int64
    assert ((ids >= 0) & (ids < SDQC.size)).all()
    assert np.array_equal(ids, sdqc.label(TWEETS))
    assert np.array_equal(ids, SDQCLabeler.from_artifact().label(TWEETS))
    # A text's label does not depend on the rest of its batch.
    assert np.array_equal(ids, np.concatenate([sdqc.label([t]) for t in TWEETS]))
    assert sdqc.label([]).shape == (0,)


def test_sdqc_obvious_cases(sdqc: SDQCLabeler) -> None:
    query, deny = SDQC.index("query"), SDQC.index("deny")
    assert sdqc.label(["@bbc is this confirmed? any source?"])[0] == query
    assert sdqc.label(["@cnn this is fake, a hoax, not true"])[0] == deny


def test_sdqc_unlabelled_for_texts_with_nothing_known(sdqc: SDQCLabeler) -> None:
    texts = ["", "   ", "\n\t", "zzqxjvw", "\x00\x01", "@someone"]
    assert (sdqc.label(texts) == UNLABELLED).all()
    assert sdqc_features("") == [] and sdqc_features(" \n ") == []


def test_sdqc_never_raises_on_garbage(sdqc: SDQCLabeler) -> None:
    rng = random.Random(7)
    texts = [_random_text(rng) for _ in range(300)]
    texts += ["a" * 200_000, "? " * 50_000, "@" * 1000, "&amp;&#x;&" * 100, "中文谣言测试？"]
    ids = sdqc.label(texts)
    assert ids.shape == (len(texts),)
    assert ((ids >= UNLABELLED) & (ids < SDQC.size)).all()


def test_exported_model_reproduces_sklearn(tmp_path) -> None:
    texts = [*TWEETS, *TWEETS[::-1], "is it true?", "true", "fake fake fake", "so sad"] * 3
    names = [SDQC.labels[i % 4] for i in range(len(texts))]
    vectorizer, model = fit(texts, names, min_df=1)
    offset = np.array([0.1, -0.2, 0.0, 0.0])
    exported = export(vectorizer, model, offset, {"test": True})
    probe = [*TWEETS, "fake?", "RIP", "is this confirmed", "zzz", "", "sad sad sad true"]
    x = vectorizer.transform(probe)
    expected = np.array(model.classes_)[(model.decision_function(x) + offset).argmax(axis=1)]
    expected = np.where(x.getnnz(axis=1) > 0, expected, UNLABELLED)
    assert np.array_equal(SDQCLabeler(exported).label(probe), expected)
    scores, known = exported.scores(probe)
    assert np.allclose(scores[known], (model.decision_function(x) + offset)[known])
    # Save and load round-trip; saving is byte-for-byte deterministic.
    first, second = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    exported.save(first)
    exported.save(second)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json.gz", "b.json.gz"]
    loaded = LinearTextModel.load(first)
    assert np.array_equal(SDQCLabeler(loaded).label(probe), expected)


def test_artifact_loader_rejects_other_files(tmp_path) -> None:
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(b'{"format": "something-else"}'))
    with pytest.raises(ValueError, match="not a mfllm-linear-text-model"):
        LinearTextModel.load(bad)
    with pytest.raises(FileNotFoundError, match="train_sdqc"):
        SDQCLabeler.from_artifact(tmp_path / "missing.json.gz")


def test_artifact_loader_names_the_file_of_a_damaged_artifact(tmp_path) -> None:
    shipped = DEFAULT_ARTIFACT.read_bytes()
    data = json.loads(gzip.decompress(shipped))
    bad = tmp_path / "bad.json.gz"
    for content, reason in [
        (shipped[: len(shipped) // 2], "not a readable .* artifact \\(EOFError"),
        (b"plain bytes", "not a readable .* artifact \\(BadGzipFile"),
        (gzip.compress(b"\xff\xfe"), "not a readable .* artifact \\(UnicodeDecodeError"),
        (gzip.compress(b"[" * 100_000), "not a readable .* artifact \\(RecursionError"),
        (gzip.compress(json.dumps({**data, "labels": 4}).encode()), "a malformed .*TypeError"),
        (gzip.compress(json.dumps({**data, "idf": [1.0]}).encode()), "a malformed .*ValueError"),
        (gzip.compress(json.dumps({"format": data["format"]}).encode()), "a malformed .*KeyError"),
    ]:
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"{re.escape(str(bad))}: {reason}"):
            LinearTextModel.load(bad)
    bad.unlink()
    bad.mkdir()
    with pytest.raises(ValueError, match="IsADirectoryError"):
        LinearTextModel.load(bad)


def test_shipped_artifact_is_small() -> None:
    assert DEFAULT_ARTIFACT.stat().st_size < 2 * 1024 * 1024


def test_sdqc_dev_macro_f1(sdqc: SDQCLabeler, rumoureval_dir) -> None:
    dev = load_scenarios("rumoureval", rumoureval_dir, split="dev")
    report = evaluate_labeler(sdqc, dev, "stance")
    assert report.n == 1485
    assert report.macro_f1 >= 0.50, report.format_table()


# --- Weibo rule labeller -------------------------------------------------------------------

WEIBO_CASES = [
    ("", "repost_support"),
    ("转发微博", "repost_support"),
    ("转发微博。", "repost_support"),
    ("Repost", "repost_support"),
    ("//@张三:说得好//@李四:支持", "repost_support"),
    ("//@张三: 这是谣言吧//@李四:支持", "repost_doubt"),
    ("转发微博//@张三:假的吧", "repost_doubt"),
    ("太可怕了//@张三:假的吧", "repost_support"),  # own words judged, not the chain
    ("辟谣了吗//@张三:支持", "repost_doubt"),
    ("加油，支持！", "comment_support"),
    ("祈福[蜡烛]", "comment_support"),
    ("真的吗", "comment_doubt"),
    ("是真的吗？", "comment_doubt"),
    ("这是谣言", "comment_doubt"),
    ("不信", "comment_doubt"),
    ("求证", "comment_doubt"),
    ("造谣的人该抓", "comment_doubt"),
    ("又是骗人的", "comment_doubt"),
    ("怎么会这样?", "comment_doubt"),
    ("[疑问]", "comment_doubt"),
    ("這是謠言", "comment_doubt"),
]


@pytest.mark.parametrize(("text", "expected"), WEIBO_CASES)
def test_weibo_rules(text: str, expected: str) -> None:
    assert weibo_label(text) == expected


def test_weibo_labeler_batch_and_garbage() -> None:
    labeler = WeiboRuleLabeler()
    texts = [text for text, _ in WEIBO_CASES]
    ids = labeler.label(texts)
    assert [WEIBO.labels[i] for i in ids] == [expected for _, expected in WEIBO_CASES]
    rng = random.Random(3)
    garbage = [_random_text(rng) for _ in range(200)] + ["//@", "//@//@:", "x" * 100_000]
    out = labeler.label(garbage)
    assert ((out >= 0) & (out < WEIBO.size)).all()
    assert np.array_equal(out, labeler.label(garbage))


def test_weibo_distribution_on_ced_samples(ced_sample_dir) -> None:
    scenarios = load_scenarios("ced", ced_sample_dir)
    labeler = WeiboRuleLabeler()
    shares = {}
    for scenario in scenarios:
        ids = labeler.label([r.text for r in scenario.reactions])
        shares[scenario.scenario_id] = WEIBO.counts(ids) / len(ids)
    total = np.mean(list(shares.values()), axis=0)
    repost_support, _, comment_support, comment_doubt = total
    assert repost_support > 0.2 and comment_support > 0.2 and 0.0 < comment_doubt < 0.3
    # Doubt is more common in reactions to rumours than to non-rumours.
    doubt: dict[str, list[float]] = {"rumor": [], "non-rumor": []}
    for s in scenarios:
        doubt[s.metadata["veracity"]].append(shares[s.scenario_id][[1, 3]].sum())
    assert min(doubt["rumor"]) > max(doubt["non-rumor"])


# --- evaluation ------------------------------------------------------------------------------


def _post(pid: str, text: str, stance: str | None, t: float) -> Reaction:
    labels = {"stance": stance} if stance else {}
    return Reaction(pid, Author("u" + pid), text, t, labels=labels)


def test_evaluate_labeler_counts_and_fallback(sdqc: SDQCLabeler) -> None:
    scenario = Scenario(
        "s1",
        _post("0", "BREAKING: police confirm two hostages escaped", "support", 0.0),
        [
            _post("1", "@bbc is this confirmed? any source?", "query", 1.0),
            _post("2", "", "deny", 2.0),  # empty: -1, scored as comment
            _post("3", "unlabelled reaction", None, 3.0),
        ],
    )
    report = evaluate_labeler(sdqc, [scenario])
    assert report.n == 3 and report.n_unlabelled == 1
    assert sum(map(sum, report.confusion)) == 3
    assert report.confusion[SDQC.index("deny")][SDQC.index("comment")] == 1
    assert report.per_class["query"].support == 1
    without_sources = evaluate_labeler(sdqc, [scenario], include_sources=False)
    assert without_sources.n == 2
    data = report.to_dict()
    assert data["unlabelled_scored_as"] == "comment" and data["n"] == 3
    assert "macro-F1" in report.format_table()
    empty = evaluate_labeler(sdqc, [scenario], "certainty")
    assert empty.n == 0 and empty.macro_f1 == 0.0
