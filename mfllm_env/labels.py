"""Label schemes (as data) and the :class:`ActionLabeler` protocol.

A label scheme is one *dimension* along which every action (real or simulated) is
labelled: SDQC stance, PHEME certainty, or the Weibo repost/comment x support/doubt
scheme. The population signal is the histogram of labels over agents, so a scheme fixes
the length and order of every share vector in the package: index ``i`` of a share vector
is ``scheme.labels[i]``.

A labeller turns a batch of action texts into label ids of its scheme. It returns ``-1``
for a text it cannot label (empty, no usable content); the environment then applies the
scheme's ``fallback`` label and counts the fallback in ``infos``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

UNLABELLED = -1
"""The id a labeller returns for a text it cannot label."""


class UnknownLabelError(ValueError, KeyError):
    """A label or dimension that no scheme knows: a ``ValueError`` (bad input, which the
    CLI reports as such) and, for lookups' callers, a ``KeyError``; printed as its message."""

    __str__ = ValueError.__str__


@dataclass(frozen=True)
class LabelScheme:
    """An ordered set of labels along one dimension.

    ``labels`` fixes the order of share vectors. ``fallback`` is the label given to an
    action the labeller cannot label. ``descriptions`` say what each label means (used in
    prompts and in documentation). ``ordered`` says whether the label order is a scale
    (certainty levels) rather than unordered categories (it chooses W1's ground metric).
    ``display`` gives the label names to show in other languages (``{"zh": (...)}``), in
    label order; :meth:`names` falls back to ``labels``.
    """

    name: str
    dimension: str
    labels: tuple[str, ...]
    fallback: str
    descriptions: Mapping[str, str] = field(default_factory=dict)
    ordered: bool = False
    display: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError(f"scheme {self.name!r}: labels must be >= 2 distinct names")
        if self.fallback not in self.labels:
            raise ValueError(f"scheme {self.name!r}: fallback {self.fallback!r} not a label")
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.labels)})
        for language, names in self.display.items():
            if len(names) != len(self.labels):
                raise ValueError(
                    f"scheme {self.name!r}: {language} display names must match labels"
                )

    def names(self, language: str) -> tuple[str, ...]:
        """The label names to show in ``language`` (the labels themselves by default)."""
        return self.display.get(language, self.labels)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def fallback_id(self) -> int:
        return self.index(self.fallback)

    def index(self, label: str) -> int:
        """The id of ``label``; an :class:`UnknownLabelError` naming the valid labels otherwise."""
        try:
            return self._index[label]  # type: ignore[attr-defined]
        except KeyError:
            raise UnknownLabelError(
                f"{label!r} is not a label of scheme {self.name!r}; valid: {self.labels}"
            ) from None

    def counts(self, label_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Histogram of label ids (ids outside ``[0, size)`` are rejected)."""
        ids = np.asarray(label_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"label ids must lie in [0, {self.size}) for scheme {self.name!r}")
        return np.bincount(ids, minlength=self.size).astype(np.float64)


SDQC = LabelScheme(
    name="sdqc",
    dimension="stance",
    labels=("support", "deny", "query", "comment"),
    fallback="comment",
    descriptions={
        "support": "endorses the claim of the source post",
        "deny": "disputes or debunks the claim",
        "query": "asks for evidence or more information about the claim",
        "comment": "reacts without taking a stance on the claim's truth",
    },
    display={"zh": ("支持", "否认", "询问", "评论")},
)

CERTAINTY = LabelScheme(
    name="certainty",
    dimension="certainty",
    labels=("certain", "somewhat-certain", "uncertain", "underspecified"),
    fallback="underspecified",
    descriptions={
        "certain": "states the claim with full confidence",
        "somewhat-certain": "states the claim with some hedging",
        "uncertain": "expresses clear doubt about their own statement",
        "underspecified": "certainty cannot be told",
    },
)

WEIBO = LabelScheme(
    name="weibo",
    dimension="weibo",
    labels=("repost_support", "repost_doubt", "comment_support", "comment_doubt"),
    fallback="comment_support",
    descriptions={
        "repost_support": "forwards the post without doubting it",
        "repost_doubt": "forwards the post while doubting or debunking it",
        "comment_support": "writes a reaction that accepts or spreads the claim",
        "comment_doubt": "writes a reaction that doubts, questions or debunks the claim",
    },
    display={"zh": ("转发支持", "转发质疑", "评论支持", "评论质疑")},
)

SCHEMES: dict[str, LabelScheme] = {s.dimension: s for s in (SDQC, CERTAINTY, WEIBO)}
"""Built-in schemes by dimension name."""


def scheme_for(dimension: str) -> LabelScheme:
    """The built-in scheme of ``dimension``, with an error listing the known ones."""
    try:
        return SCHEMES[dimension]
    except (KeyError, TypeError):  # TypeError: an unhashable dimension (a list)
        raise UnknownLabelError(
            f"no built-in label scheme for dimension {dimension!r}; known: {sorted(SCHEMES)}"
        ) from None


@runtime_checkable
class ActionLabeler(Protocol):
    """Labels a batch of action texts along one scheme.

    ``label(texts)`` returns an int array of the same length: a label id of ``scheme`` for
    each text, or :data:`UNLABELLED` (-1) where the text carries nothing to label. It must
    be deterministic (same texts, same ids) and must not raise on arbitrary strings.
    """

    scheme: LabelScheme

    def label(self, texts: Sequence[str]) -> np.ndarray: ...
