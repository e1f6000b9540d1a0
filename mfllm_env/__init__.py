"""mfllm_env: populations reacting to events, as PettingZoo parallel environments."""

from mfllm_env.labels import CERTAINTY, SDQC, WEIBO, ActionLabeler, LabelScheme, scheme_for
from mfllm_env.scenario import Author, Reaction, Scenario

__all__ = [
    "CERTAINTY",
    "SDQC",
    "WEIBO",
    "ActionLabeler",
    "Author",
    "LabelScheme",
    "Reaction",
    "Scenario",
    "scheme_for",
]
