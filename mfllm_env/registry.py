"""The registry of population families: one place that says, for every family on the
mean-field-game core, which game it plays, which environments it offers (and their
PettingZoo ids), how it speaks (its text codec) and what its environments default to.

=========  =======================  ==========================  ====================  ===========
family     population env           leader env                  text codec            actions
=========  =======================  ==========================  ====================  ===========
rumour     ``mfllm/Population-v0``  ``mfllm/Planner-v0``        the labeller          text, label
macro      ``mfllm/Macro-v0``       ``mfllm/MacroPlanner-v0``   the reply parser      box, text
=========  =======================  ==========================  ====================  ===========

Importing :mod:`mfllm_env` registers every id here with PettingZoo
(:func:`register_with_pettingzoo`), and the ``mfllm`` commands build their environments
through :func:`family` (``family("rumour").population_env(scenario, ...)``) or
:func:`make_env`. A name that is not here is a :class:`UnknownNameError` (a ``ValueError``)
that lists the known ones. The LLM policy of a family is built by the family's name in
``agents`` (``agents.policies.llm_policy``, over the family's speech there): the macro
speech builds its prompt from its codec's prompt parts, the rumour speech from the
observation's texts, which are its codec's prompt parts as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pettingzoo

from mfllm_env.core.protocols import TextCodec
from mfllm_env.games.macro import HouseholdTextCodec, MacroEnv, MacroGame, MacroPlannerEnv
from mfllm_env.games.rumour import RumourGame, RumourTextCodec
from mfllm_env.planner import PlannerEnv
from mfllm_env.population_env import PopulationEnv


class UnknownNameError(ValueError):
    """A family name or env id the registry does not hold (the message lists those it
    does)."""


@dataclass(frozen=True)
class Family:
    """One population family: ``population`` is its env of followers (the population
    acting), ``leader`` the env of the leader steering them (an intervention planner, a
    government); ``codec`` builds its text codec (rumour: ``RumourTextCodec(labeler)``,
    the labeller labelling replies along the scenario's scheme; macro:
    ``HouseholdTextCodec()``, the parser of replies such as "work 40 hours, save a
    fifth"); ``action_modes`` are the population env's, its default first."""

    name: str
    description: str
    game: type
    population: type[pettingzoo.ParallelEnv]
    leader: type[pettingzoo.ParallelEnv]
    codec: Callable[..., TextCodec[Any]]
    action_modes: tuple[str, ...]

    @property
    def env_ids(self) -> dict[str, type[pettingzoo.ParallelEnv]]:
        """``{PettingZoo id: env class}``, the population env's first."""
        return {env.metadata["name"]: env for env in (self.population, self.leader)}

    def population_env(self, *args: Any, **options: Any) -> Any:
        """A new population env (the constructor's arguments, checked there)."""
        return self.population(*args, **options)

    def leader_env(self, *args: Any, **options: Any) -> Any:
        """A new leader env over a population of this family."""
        return self.leader(*args, **options)

    def defaults(self, role: str = "population") -> dict[str, Any]:
        """The keyword defaults of the ``population`` or ``leader`` env's constructor, read
        from its signature so that they cannot drift from it (a population env that hands
        its other options to the game, as ``MacroEnv``, adds the game's defaults)."""
        if role not in ("population", "leader"):
            raise ValueError(f"role must be 'population' or 'leader', got {role!r}")
        found = _keyword_defaults(getattr(self, role))
        if role == "population" and _takes_more_options(self.population):
            found = {**_keyword_defaults(self.game), **found}
        return found


def _keyword_defaults(cls: type) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _takes_more_options(cls: type) -> bool:
    return any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in inspect.signature(cls.__init__).parameters.values()
    )


FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        "rumour": Family(
            name="rumour",
            description="a population reacting to an event (a rumour, a news story), "
            "replayed reaction by reaction, and an intervention planner steering it",
            game=RumourGame,
            population=PopulationEnv,
            leader=PlannerEnv,
            codec=RumourTextCodec,
            action_modes=("text", "label"),
        ),
        "macro": Family(
            name="macro",
            description="households in a Bewley-Aiyagari economy and their government "
            "(the Stackelberg mean-field game of macroeconomic policy)",
            game=MacroGame,
            population=MacroEnv,
            leader=MacroPlannerEnv,
            codec=HouseholdTextCodec,
            action_modes=("box", "text"),
        ),
    }
)
"""Every population family, by name."""

ENV_IDS: Mapping[str, type[pettingzoo.ParallelEnv]] = MappingProxyType(
    {env_id: env for f in FAMILIES.values() for env_id, env in f.env_ids.items()}
)
"""Every env id of every family, with its env class."""


def family(name: str) -> Family:
    """The family called ``name``; :class:`UnknownNameError` listing the known ones."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown population family {name!r}; known: {', '.join(FAMILIES)}"
        ) from None


def family_of(env_id: str) -> Family:
    """The family whose env has the PettingZoo id ``env_id`` (:class:`UnknownNameError`
    listing the known ids)."""
    for candidate in FAMILIES.values():
        if env_id in candidate.env_ids:
            return candidate
    raise UnknownNameError(f"unknown env id {env_id!r}; known: {', '.join(ENV_IDS)}")


def make_env(env_id: str, *args: Any, **options: Any) -> Any:
    """A new env of the id ``env_id`` (``"mfllm/Macro-v0"``, ...), its constructor given
    ``args`` and ``options``; :class:`UnknownNameError` listing the known ids."""
    return family_of(env_id).env_ids[env_id](*args, **options)


def register_with_pettingzoo() -> None:
    """Register every id of :data:`ENV_IDS` as a PettingZoo parallel env, so that
    ``pettingzoo.make("parallel", env_id, ...)`` builds it (importing :mod:`mfllm_env`
    does it)."""
    for env_id, env in ENV_IDS.items():
        pettingzoo.register("parallel", env_id, env)
