"""Labellers: action texts to label ids of a :class:`~mfllm_env.labels.LabelScheme`.

* :class:`~mfllm_env.labelers.sdqc.SDQCLabeler`: the default SDQC stance labeller, a linear
  model trained on RumourEval 2019 (rebuilt by ``python -m mfllm_env.labelers.train_sdqc``);
* :class:`~mfllm_env.labelers.weibo.WeiboRuleLabeler`: rules and a doubt lexicon for the
  Weibo repost/comment x support/doubt scheme;
* :func:`~mfllm_env.labelers.evaluate.evaluate_labeler`: accuracy against human labels.

:func:`default_labeler` gives the labeller of a dimension that has a default.
"""

from __future__ import annotations

from functools import lru_cache

from mfllm_env.labelers.evaluate import (
    ClassScores,
    LabelerReport,
    evaluate_labeler,
    labelled_actions,
)
from mfllm_env.labelers.sdqc import LinearTextModel, SDQCLabeler, sdqc_features
from mfllm_env.labelers.weibo import WeiboRuleLabeler, weibo_label
from mfllm_env.labels import SDQC, WEIBO, ActionLabeler, LabelScheme


@lru_cache(maxsize=1)
def _sdqc_labeler() -> SDQCLabeler:
    return SDQCLabeler.from_artifact()


def default_labeler(scheme_or_dimension: str | LabelScheme) -> ActionLabeler:
    """The default labeller of a dimension (``"stance"``, ``"weibo"``) or built-in scheme.

    ``"stance"``/:data:`~mfllm_env.labels.SDQC` gives the trained SDQC labeller (loaded
    once per process and shared); ``"weibo"``/:data:`~mfllm_env.labels.WEIBO` the Weibo
    rule labeller. Any other dimension raises ``ValueError``: pass a labeller explicitly.
    """
    if isinstance(scheme_or_dimension, LabelScheme):
        dimension = scheme_or_dimension.dimension
        if scheme_or_dimension not in (SDQC, WEIBO):
            raise ValueError(
                f"no default labeller for scheme {scheme_or_dimension.name!r}; "
                "pass a labeller for it explicitly"
            )
    else:
        dimension = scheme_or_dimension
    if dimension == SDQC.dimension:
        return _sdqc_labeler()
    if dimension == WEIBO.dimension:
        return WeiboRuleLabeler()
    raise ValueError(
        f"no default labeller exists for dimension {dimension!r} (defaults exist for "
        f"{SDQC.dimension!r} and {WEIBO.dimension!r}); pass a labeller for it explicitly"
    )


__all__ = [
    "ClassScores",
    "LabelerReport",
    "LinearTextModel",
    "SDQCLabeler",
    "WeiboRuleLabeler",
    "default_labeler",
    "evaluate_labeler",
    "labelled_actions",
    "sdqc_features",
    "weibo_label",
]
