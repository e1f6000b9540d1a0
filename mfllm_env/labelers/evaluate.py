"""Accuracy of a labeller against human labels: :func:`evaluate_labeler`.

The human label of a post on a dimension is ``Reaction.labels[dimension]``; posts without
one are left out. A labeller output of ``-1`` (:data:`~mfllm_env.labels.UNLABELLED`) is
scored as the scheme's ``fallback`` label -- what the environment does with it -- and the
number of such outputs is reported as ``n_unlabelled``. Every labeller reads each post
alone, as the environment labels an action.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mfllm_env.labels import UNLABELLED, ActionLabeler
from mfllm_env.scenario import Scenario


def labelled_actions(
    scenarios: Iterable[Scenario], dimension: str = "stance", *, include_sources: bool = True
) -> tuple[list[str], list[str]]:
    """``(texts, label_names)`` of every post with a human label on ``dimension``.

    Posts come scenario by scenario, the source post first (when ``include_sources``), then
    the reactions in time order.
    """
    texts: list[str] = []
    names: list[str] = []
    for scenario in scenarios:
        posts = (scenario.source, *scenario.reactions) if include_sources else scenario.reactions
        for post in posts:
            name = post.labels.get(dimension)
            if name is not None:
                texts.append(post.text)
                names.append(name)
    return texts, names


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support (number of human labels) of one label."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class LabelerReport:
    """How well a labeller reproduces human labels on one dimension.

    ``confusion[i][j]`` counts posts with human label ``labels[i]`` that were given
    ``labels[j]``. ``n_unlabelled`` counts ``-1`` outputs, scored as ``fallback``. Metrics
    over zero posts are 0.
    """

    dimension: str
    labels: tuple[str, ...]
    fallback: str
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]
    n_unlabelled: int

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "dimension": self.dimension,
            "labels": list(self.labels),
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                name: {
                    "precision": s.precision,
                    "recall": s.recall,
                    "f1": s.f1,
                    "support": s.support,
                }
                for name, s in self.per_class.items()
            },
            "confusion": self.confusion,
            "n_unlabelled": self.n_unlabelled,
            "unlabelled_scored_as": self.fallback,
        }

    def format_table(self) -> str:
        """A readable multi-line summary: totals, per-label table, confusion matrix."""
        width = max(9, *(len(name) for name in self.labels))
        lines = [
            f"dimension {self.dimension}: n={self.n}  accuracy={self.accuracy:.3f}  "
            f"macro-F1={self.macro_f1:.3f}  unlabelled (-1, scored as {self.fallback!r})="
            f"{self.n_unlabelled}",
            "",
            f"{'label':<{width}}  precision  recall     f1  support",
        ]
        for name, s in self.per_class.items():
            lines.append(
                f"{name:<{width}}  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.support:7d}"
            )
        lines += ["", "confusion (rows: human label, columns: labeller)"]
        lines.append(" " * width + "  " + " ".join(f"{name[:9]:>9}" for name in self.labels))
        for name, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{name:<{width}}  " + " ".join(f"{c:9d}" for c in row))
        return "\n".join(lines)


def score_labels(
    labeler: ActionLabeler,
    texts: list[str],
    names: list[str],
    dimension: str,
) -> LabelerReport:
    """The report of ``labeler`` on ``texts`` against human label ``names``.

    ``KeyError`` if a human label is not a label of the labeller's scheme.
    """
    scheme = labeler.scheme
    truth = np.array([scheme.index(name) for name in names], dtype=np.int64)
    predicted = truth[:0] if not texts else np.asarray(labeler.label(texts), dtype=np.int64)
    unlabelled = predicted == UNLABELLED
    predicted = np.where(unlabelled, scheme.fallback_id, predicted)
    ids = list(range(scheme.size))
    n = len(truth)
    if n:
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, predicted, labels=ids, zero_division=0
        )
        confusion = confusion_matrix(truth, predicted, labels=ids).tolist()
    else:
        precision = recall = f1 = np.zeros(scheme.size)
        support = np.zeros(scheme.size, dtype=np.int64)
        confusion = [[0] * scheme.size for _ in ids]
    per_class = {
        name: ClassScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, name in enumerate(scheme.labels)
    }
    present = (support > 0) | (np.bincount(predicted, minlength=scheme.size) > 0)
    return LabelerReport(
        dimension=dimension,
        labels=scheme.labels,
        fallback=scheme.fallback,
        n=n,
        accuracy=float((truth == predicted).mean()) if n else 0.0,
        macro_f1=float(np.mean(f1[present])) if n else 0.0,
        per_class=per_class,
        confusion=confusion,
        n_unlabelled=int(unlabelled.sum()),
    )


def evaluate_labeler(
    labeler: ActionLabeler,
    scenarios: Iterable[Scenario],
    dimension: str = "stance",
    *,
    include_sources: bool = True,
) -> LabelerReport:
    """Score ``labeler`` against the human ``dimension`` labels of ``scenarios``.

    Every labelled post counts (source posts too, unless ``include_sources`` is false).
    Macro-F1 averages the F1 of the labels that occur in the human labels or in the
    labeller's output (scikit-learn's default); per-class figures cover every label.
    """
    texts, names = labelled_actions(scenarios, dimension, include_sources=include_sources)
    return score_labels(labeler, texts, names, dimension)
