"""mfllm_env: populations reacting to events, as PettingZoo parallel environments.

Importing the package registers ``mfllm/Population-v0`` and ``mfllm/Planner-v0`` (an
intervention planner steering a population, :mod:`mfllm_env.planner`) with PettingZoo, so
``pettingzoo.make("parallel", "mfllm/Population-v0", scenario=...)`` builds a
:class:`PopulationEnv`. This package never imports torch, transformers or an HTTP client:
language-model components reach it through small protocols (:class:`ActionLabeler`,
:class:`MeanFieldModel`, :class:`Policy`). It also registers the macro-economy family's
``mfllm/Macro-v0`` (households) and ``mfllm/MacroPlanner-v0`` (their government). Both
families are games on the mean-field-game core (:mod:`mfllm_env.core`,
:mod:`mfllm_env.games.rumour`, :mod:`mfllm_env.games.macro`), named with their envs and
codecs in one registry (:mod:`mfllm_env.registry`), from which these ids are registered.
"""

from mfllm_env.games.macro import MacroEnv, MacroPlannerEnv
from mfllm_env.games.rumour import (
    LabelMatchReward,
    RumourGame,
    StepOutcome,
    render_profile,
    render_state,
)
from mfllm_env.labels import (
    CERTAINTY,
    SDQC,
    UNLABELLED,
    WEIBO,
    ActionLabeler,
    LabelScheme,
    scheme_for,
)
from mfllm_env.loaders import (
    LOADERS,
    ScenarioFormatError,
    ScenarioFormatWarning,
    iter_scenarios,
    load_scenarios,
    write_scenarios_jsonl,
)
from mfllm_env.mean_field import HistogramMeanField, MeanField, MeanFieldModel
from mfllm_env.planner import (
    DEFAULT_MENU,
    InterventionOption,
    PlannerEnv,
    run_planner_episode,
)
from mfllm_env.population_env import PopulationEnv
from mfllm_env.registry import FAMILIES, Family, family, make_env, register_with_pettingzoo
from mfllm_env.scenario import Author, Reaction, Scenario
from mfllm_env.simulation import Policy, run_episode, simulate
from mfllm_env.synthetic import (
    Intervention,
    SyntheticPopulation,
    SyntheticResponse,
    synthetic_scenario,
)

register_with_pettingzoo()

__all__ = [
    "CERTAINTY",
    "DEFAULT_MENU",
    "FAMILIES",
    "LOADERS",
    "SDQC",
    "UNLABELLED",
    "WEIBO",
    "ActionLabeler",
    "Author",
    "Family",
    "HistogramMeanField",
    "Intervention",
    "InterventionOption",
    "LabelMatchReward",
    "LabelScheme",
    "MacroEnv",
    "MacroPlannerEnv",
    "MeanField",
    "MeanFieldModel",
    "PlannerEnv",
    "Policy",
    "PopulationEnv",
    "Reaction",
    "RumourGame",
    "Scenario",
    "ScenarioFormatError",
    "ScenarioFormatWarning",
    "StepOutcome",
    "SyntheticPopulation",
    "SyntheticResponse",
    "family",
    "iter_scenarios",
    "load_scenarios",
    "make_env",
    "render_profile",
    "render_state",
    "run_episode",
    "run_planner_episode",
    "scheme_for",
    "simulate",
    "synthetic_scenario",
    "write_scenarios_jsonl",
]
