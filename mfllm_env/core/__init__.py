"""The mean-field-game core: the protocols a population family implements
(:mod:`mfllm_env.core.protocols`), one PettingZoo parallel env over any game
(:class:`GameEnv`) and one leader wrapper in Stackelberg order (:class:`LeaderEnv`)."""

from mfllm_env.core.env import GameEnv
from mfllm_env.core.leader import LeaderEnv
from mfllm_env.core.protocols import (
    MISSING,
    Decoded,
    Game,
    LeaderRole,
    MeanFieldModel,
    Policy,
    SplitGame,
    TextCodec,
    Transition,
)

__all__ = [
    "MISSING",
    "Decoded",
    "Game",
    "GameEnv",
    "LeaderEnv",
    "LeaderRole",
    "MeanFieldModel",
    "Policy",
    "SplitGame",
    "TextCodec",
    "Transition",
]
