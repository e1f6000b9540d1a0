"""Labellers that need language-model pieces (torch, transformers, peft).

* :class:`~agents.labelers.finetuned.FineTunedSDQCLabeler`: SDQC stance from all-MiniLM-L6-v2
  fine-tuned with LoRA on replies read alone, its scores fused with the lexical
  labeller's (artifact rebuilt by ``python -m agents.labelers.train_finetuned``). On
  RumourEval dev replies it does not beat the lexical labeller (README, "Labels and the
  default labellers"), so it is opt-in.

:func:`named_labeller` picks a labeller by name (``mfllm label-eval --labeller``).
"""

from __future__ import annotations

from functools import lru_cache

from agents.labelers.finetuned import FineTunedSDQC, FineTunedSDQCLabeler
from mfllm_env.labelers import default_labeler
from mfllm_env.labels import SDQC, ActionLabeler

LABELLERS = ("default", "finetuned")
"""The names :func:`named_labeller` knows."""


@lru_cache(maxsize=1)
def _finetuned_labeller() -> FineTunedSDQCLabeler:
    return FineTunedSDQCLabeler.from_artifact()


def named_labeller(name: str, dimension: str) -> ActionLabeler:
    """``"default"``: the dimension's default labeller (for stance the fast lexical one);
    ``"finetuned"``: the fine-tuned SDQC labeller (stance only; loaded once per process).
    ``ValueError`` naming what is wrong otherwise."""
    if name == "default":
        return default_labeler(dimension)
    if name not in LABELLERS:
        raise ValueError(f"unknown labeller {name!r}; known: {', '.join(LABELLERS)}")
    if dimension != SDQC.dimension:
        raise ValueError(
            f"the {name} labeller labels dimension {SDQC.dimension!r}, not {dimension!r}"
        )
    return _finetuned_labeller()


__all__ = [
    "LABELLERS",
    "FineTunedSDQC",
    "FineTunedSDQCLabeler",
    "named_labeller",
]
