"""The rumour family on the mean-field-game core: a population reacting to one event,
replayed reaction by reaction (:class:`RumourGame`, whose transition may hold the
population's own response, a :class:`ResponseModel`), its text codec (the labeller,
:class:`RumourTextCodec`); ``mfllm/Population-v0``
(:class:`~mfllm_env.population_env.PopulationEnv`) is the generic env over it."""

from mfllm_env.games.rumour.game import (
    HISTORY_POST_LENGTH,
    LabelMatchReward,
    ReactionActions,
    ResponseModel,
    RumourGame,
    StepOutcome,
    render_profile,
    render_state,
)
from mfllm_env.games.rumour.text import RumourTextCodec

__all__ = [
    "HISTORY_POST_LENGTH",
    "LabelMatchReward",
    "ReactionActions",
    "ResponseModel",
    "RumourGame",
    "RumourTextCodec",
    "StepOutcome",
    "render_profile",
    "render_state",
]
