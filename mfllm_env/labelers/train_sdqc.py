"""Train the default SDQC labeller and write its artifact.

Usage (the one command that rebuilds ``mfllm_env/artifacts/sdqc_linear.json.gz``)::

    python -m mfllm_env.labelers.train_sdqc \\
        --data ../shared/data/rumoureval2019/rumoureval-2019-training-data [--out FILE]

Steps, all deterministic (same data, same artifact bytes):

1. Load RumourEval 2019 with :func:`mfllm_env.loaders.load_scenarios`; every labelled post
   (source posts included, Twitter and Reddit) of the ``train`` key is a training example,
   of the ``dev`` key a dev example. Posts with no feature (empty text) are left out.
2. Fit ``TfidfVectorizer(analyzer=sdqc_features, sublinear_tf=True, min_df=2)`` and a
   multinomial ``LogisticRegression(C=0.5, class_weight="balanced")`` on train.
3. Choose per-label score offsets on dev (comment's offset fixed at 0): coordinate
   ascent of dev macro-F1 over offsets in ``[-1, 1]`` in steps of 0.1, three sweeps over
   support, deny, query, keeping a change only if it raises macro-F1.
4. Export to a :class:`~mfllm_env.labelers.sdqc.LinearTextModel`, check that its
   predictions equal scikit-learn's on dev, print dev and train reports, write the file.

These choices (word 1-3-grams plus first/last tokens and cue features, C, min_df, balanced
class weights) were made on dev macro-F1; see ``metadata`` in the artifact.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from mfllm_env.labelers.evaluate import labelled_actions, score_labels
from mfllm_env.labelers.sdqc import DEFAULT_ARTIFACT, LinearTextModel, SDQCLabeler, sdqc_features
from mfllm_env.labels import SDQC
from mfllm_env.loaders import load_scenarios

C = 0.5
MIN_DF = 2
OFFSET_GRID = np.round(np.arange(-1.0, 1.0001, 0.1), 10) + 0.0  # no -0.0
OFFSET_SWEEPS = 3


def fit(
    texts: Sequence[str], names: Sequence[str], *, c: float = C, min_df: int = MIN_DF
) -> tuple[TfidfVectorizer, LogisticRegression]:
    """Fit the vectoriser and the classifier on ``texts`` with SDQC label ``names``."""
    vectorizer = TfidfVectorizer(analyzer=sdqc_features, sublinear_tf=True, min_df=min_df)
    x = vectorizer.fit_transform(texts)
    y = np.array([SDQC.index(name) for name in names])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit(x, y)
    return vectorizer, model


def export(
    vectorizer: TfidfVectorizer,
    model: LogisticRegression,
    offset: np.ndarray,
    metadata: dict[str, object],
) -> LinearTextModel:
    """The fitted pair as a :class:`LinearTextModel` (columns in vocabulary order)."""
    vocabulary = vectorizer.get_feature_names_out().tolist()
    return LinearTextModel(
        labels=tuple(SDQC.labels[i] for i in model.classes_),
        vocabulary=tuple(vocabulary),
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        coef=np.asarray(model.coef_, dtype=np.float64),
        intercept=np.asarray(model.intercept_, dtype=np.float64),
        offset=np.asarray(offset, dtype=np.float64),
        metadata=metadata,
    )


def choose_offsets(scores: np.ndarray, y: np.ndarray, fixed: int) -> np.ndarray:
    """Per-column offsets of ``scores`` that raise macro-F1 of ``argmax`` against ``y``.

    Coordinate ascent over :data:`OFFSET_GRID`, :data:`OFFSET_SWEEPS` sweeps; column
    ``fixed`` keeps offset 0. Ties keep the earlier (smaller-change) value.
    """
    offset = np.zeros(scores.shape[1])
    best = f1_score(y, scores.argmax(axis=1), average="macro")
    for _ in range(OFFSET_SWEEPS):
        for column in range(scores.shape[1]):
            if column == fixed:
                continue
            for value in OFFSET_GRID:
                trial = offset.copy()
                trial[column] = value
                score = f1_score(y, (scores + trial).argmax(axis=1), average="macro")
                if score > best + 1e-12:
                    best, offset = score, trial
    return offset


def featured(texts: list[str], names: list[str]) -> tuple[list[str], list[str]]:
    """The texts that have at least one feature, with their label names."""
    keep = [i for i, text in enumerate(texts) if sdqc_features(text)]
    return [texts[i] for i in keep], [names[i] for i in keep]


def train(data: Path) -> tuple[LinearTextModel, dict[str, object]]:
    """Train on the train key of ``data``, tune offsets on dev; ``(model, summary)``."""
    train_texts, train_names = featured(
        *labelled_actions(load_scenarios("rumoureval", data, split="train"))
    )
    dev_texts, dev_names = labelled_actions(load_scenarios("rumoureval", data, split="dev"))
    vectorizer, model = fit(train_texts, train_names)
    dev_x = vectorizer.transform(dev_texts)
    dev_y = np.array([SDQC.index(name) for name in dev_names])
    dev_scores = model.decision_function(dev_x)
    fixed = list(model.classes_).index(SDQC.fallback_id)
    offset = choose_offsets(dev_scores, dev_y, fixed)
    metadata: dict[str, object] = {
        "scheme": SDQC.name,
        "trained_on": "RumourEval 2019 train key (all labelled posts, sources included)",
        "offsets_chosen_on": "RumourEval 2019 dev key (macro-F1)",
        "features": "sdqc_features: word 1-3-grams, first/last tokens, cue features",
        "vectorizer": f"tf-idf, sublinear tf, min_df={MIN_DF}, l2",
        "classifier": f"multinomial logistic regression, C={C}, balanced class weights",
        "n_train": len(train_texts),
    }
    exported = export(vectorizer, model, offset, metadata)
    known = np.asarray(dev_x.getnnz(axis=1) > 0)
    sklearn_pred = np.array(model.classes_)[(dev_scores + offset).argmax(axis=1)]
    sklearn_pred = np.where(known, sklearn_pred, SDQC.fallback_id)
    labeller = SDQCLabeler(exported)
    ours = labeller.label(dev_texts)
    ours = np.where(ours < 0, SDQC.fallback_id, ours)
    mismatches = int((ours != sklearn_pred).sum())
    if mismatches:
        raise RuntimeError(f"exported model disagrees with scikit-learn on {mismatches} dev posts")
    summary = {
        "dev_macro_f1_without_offsets": float(
            f1_score(dev_y, np.array(model.classes_)[dev_scores.argmax(axis=1)], average="macro")
        ),
        "dev": score_labels(labeller, dev_texts, dev_names, "stance"),
        "train": score_labels(labeller, train_texts, train_names, "stance"),
        "offset": dict(zip(exported.labels, offset.tolist(), strict=True)),
    }
    return exported, summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train, print the dev and train reports, write the artifact."""
    parser = argparse.ArgumentParser(
        prog="python -m mfllm_env.labelers.train_sdqc",
        description="Train the default SDQC labeller on RumourEval 2019 (train key; "
        "offsets chosen on the dev key) and write its artifact.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the rumoureval-2019-training-data folder"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_ARTIFACT, help=f"artifact (default {DEFAULT_ARTIFACT})"
    )
    args = parser.parse_args(argv)
    model, summary = train(args.data)
    print(f"offsets (chosen on dev): {summary['offset']}")
    print(f"dev macro-F1 without offsets: {summary['dev_macro_f1_without_offsets']:.4f}")
    print("== dev ==")
    print(summary["dev"].format_table())  # type: ignore[union-attr]
    print("== train ==")
    print(summary["train"].format_table())  # type: ignore[union-attr]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB, {len(model.vocabulary)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
