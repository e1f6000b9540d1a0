"""The macro-economy family: households and a government in a Bewley-Aiyagari economy
(the Stackelberg mean-field game of macroeconomic policy). See
:mod:`mfllm_env.games.macro.envs` for the environments' documentation."""

from mfllm_env.games.macro.economy import (
    Economy,
    EconomyParameters,
    Population,
    Year,
    gini,
    read_population_csv,
    synthetic_population,
)
from mfllm_env.games.macro.envs import MacroEnv, MacroPlannerEnv
from mfllm_env.games.macro.fiscal import (
    FREE_MARKET_ACTION,
    GOVERNMENTS,
    US_FEDERAL_2022,
    BracketPolicy,
    FiscalPolicy,
    HSVPolicy,
    saez_brackets,
)
from mfllm_env.games.macro.game import GOVERNMENT, MacroGame
from mfllm_env.games.macro.households import RuleHouseholds
from mfllm_env.games.macro.mean_field import (
    MEAN_FIELD_FIELDS,
    EconomyBatch,
    MacroMeanField,
    StatisticsMeanField,
)
from mfllm_env.games.macro.text import FALLBACK_ACTION, HouseholdTextCodec

__all__ = [
    "FALLBACK_ACTION",
    "FREE_MARKET_ACTION",
    "GOVERNMENT",
    "GOVERNMENTS",
    "MEAN_FIELD_FIELDS",
    "US_FEDERAL_2022",
    "BracketPolicy",
    "Economy",
    "EconomyBatch",
    "EconomyParameters",
    "FiscalPolicy",
    "HSVPolicy",
    "HouseholdTextCodec",
    "MacroEnv",
    "MacroGame",
    "MacroMeanField",
    "MacroPlannerEnv",
    "Population",
    "RuleHouseholds",
    "StatisticsMeanField",
    "Year",
    "gini",
    "read_population_csv",
    "saez_brackets",
    "synthetic_population",
]
