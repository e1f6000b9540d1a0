"""Labellers that need language-model pieces (torch, transformers).

* :class:`~agents.labelers.embedding.EmbeddingSDQCLabeler`: SDQC stance from sentence
  embeddings plus the lexical labeller's scores (head rebuilt by
  ``python -m agents.labelers.train_embedding``). On RumourEval dev replies it scores below
  the lexical labeller (README, "Labels and the default labellers"), so it is opt-in.

:func:`named_labeller` picks a labeller by name (``mfllm label-eval --labeller``).
"""

from __future__ import annotations

from functools import lru_cache

from agents.labelers.embedding import EmbeddingHead, EmbeddingSDQCLabeler, SentenceEncoder
from mfllm_env.labelers import default_labeler
from mfllm_env.labels import SDQC, ActionLabeler

LABELLERS = ("default", "embedding")
"""The names :func:`named_labeller` knows."""


@lru_cache(maxsize=1)
def _embedding_labeller() -> EmbeddingSDQCLabeler:
    return EmbeddingSDQCLabeler.from_artifacts()


def named_labeller(name: str, dimension: str) -> ActionLabeler:
    """``"default"``: the dimension's default labeller (for stance the fast lexical one);
    ``"embedding"``: the embedding SDQC labeller (stance only; loaded once per process).
    ``ValueError`` naming what is wrong otherwise."""
    if name == "default":
        return default_labeler(dimension)
    if name != "embedding":
        raise ValueError(f"unknown labeller {name!r}; known: {', '.join(LABELLERS)}")
    if dimension != SDQC.dimension:
        raise ValueError(
            f"the embedding labeller labels dimension {SDQC.dimension!r}, not {dimension!r}"
        )
    return _embedding_labeller()


__all__ = [
    "LABELLERS",
    "EmbeddingHead",
    "EmbeddingSDQCLabeler",
    "SentenceEncoder",
    "named_labeller",
]
