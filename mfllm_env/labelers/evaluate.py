"""Accuracy of a labeller against human labels: :func:`evaluate_labeler`.

The human label of a post on a dimension is ``Reaction.labels[dimension]``; posts without
one are left out. A labeller output of ``-1`` (:data:`~mfllm_env.labels.UNLABELLED`) is
scored as the scheme's ``fallback`` label -- what the environment does with it -- and the
number of such outputs is reported as ``n_unlabelled``. A labeller that reads a post in its
context (:class:`ContextLabeler`) is given each post's parent text (``""`` for a source post).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mfllm_env.labels import UNLABELLED, ActionLabeler
from mfllm_env.scenario import Scenario


@runtime_checkable
class ContextLabeler(Protocol):
    """A labeller that can also read each text after the post it answers.

    ``label_in_context(texts, contexts)``: like ``label(texts)``, with ``contexts[i]`` the
    text of the post ``texts[i]`` replies to (``""``: none).
    """

    def label_in_context(self, texts: Sequence[str], contexts: Sequence[str]) -> np.ndarray: ...


def labelled_posts(
    scenarios: Iterable[Scenario], dimension: str = "stance", *, include_sources: bool = True
) -> tuple[list[str], list[str], list[str]]:
    """``(texts, contexts, label_names)`` of every post with a human label on ``dimension``;
    a post's context is its parent's text (``""`` for a source post or a parent not in the
    scenario).

    Posts come scenario by scenario, the source post first (when ``include_sources``), then
    the reactions in time order.
    """
    texts: list[str] = []
    contexts: list[str] = []
    names: list[str] = []
    for scenario in scenarios:
        known = {post.reaction_id: post.text for post in (scenario.source, *scenario.reactions)}
        posts = (scenario.source, *scenario.reactions) if include_sources else scenario.reactions
        for post in posts:
            name = post.labels.get(dimension)
            if name is not None:
                texts.append(post.text)
                contexts.append(known.get(post.parent_id or "", ""))
                names.append(name)
    return texts, contexts, names


def labelled_actions(
    scenarios: Iterable[Scenario], dimension: str = "stance", *, include_sources: bool = True
) -> tuple[list[str], list[str]]:
    """``(texts, label_names)`` of :func:`labelled_posts` (without the contexts)."""
    texts, _contexts, names = labelled_posts(
        scenarios, dimension, include_sources=include_sources
    )
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
    contexts: list[str] | None = None,
) -> LabelerReport:
    """The report of ``labeler`` on ``texts`` against human label ``names``; a
    :class:`ContextLabeler` reads each text after its ``contexts`` entry when given.

    ``KeyError`` if a human label is not a label of the labeller's scheme.
    """
    scheme = labeler.scheme
    truth = np.array([scheme.index(name) for name in names], dtype=np.int64)
    if not texts:
        predicted = truth[:0]
    elif contexts is not None and isinstance(labeler, ContextLabeler):
        predicted = np.asarray(labeler.label_in_context(texts, contexts), dtype=np.int64)
    else:
        predicted = np.asarray(labeler.label(texts), dtype=np.int64)
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

    Every labelled post counts (source posts too, unless ``include_sources`` is false); a
    :class:`ContextLabeler` reads each post after its parent.
    Macro-F1 averages the F1 of the labels that occur in the human labels or in the
    labeller's output (scikit-learn's default); per-class figures cover every label.
    """
    texts, contexts, names = labelled_posts(
        scenarios, dimension, include_sources=include_sources
    )
    return score_labels(labeler, texts, names, dimension, contexts)
