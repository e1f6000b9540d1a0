"""The registry of population families (mfllm_env.registry): every family's envs, ids,
codec and defaults in one place, from which PettingZoo and the CLI build them."""

from __future__ import annotations

import inspect

import numpy as np
import pettingzoo
import pytest

from mfllm_cli import planner_cmd, simulate_cmd
from mfllm_env import registry
from mfllm_env.games.macro import HouseholdTextCodec, MacroEnv, MacroPlannerEnv
from mfllm_env.games.rumour import RumourTextCodec
from mfllm_env.labels import SDQC
from mfllm_env.planner import PlannerEnv
from mfllm_env.population_env import PopulationEnv
from mfllm_env.synthetic import synthetic_scenario


def test_every_family_names_its_envs_by_their_own_ids() -> None:
    assert set(registry.FAMILIES) == {"rumour", "macro"}
    assert registry.family("rumour").env_ids == {
        "mfllm/Population-v0": PopulationEnv,
        "mfllm/Planner-v0": PlannerEnv,
    }
    assert registry.family("macro").env_ids == {
        "mfllm/Macro-v0": MacroEnv,
        "mfllm/MacroPlanner-v0": MacroPlannerEnv,
    }
    for env_id, env in registry.ENV_IDS.items():
        assert env.metadata["name"] == env_id


def test_pettingzoo_builds_every_registered_id_from_the_registry() -> None:
    scenario = synthetic_scenario(seed=0, n_reactions=40)
    arguments = {
        "mfllm/Population-v0": {"scenario": scenario},
        "mfllm/Planner-v0": {"scenario": scenario},
        "mfllm/Macro-v0": {"n_households": 10},
        "mfllm/MacroPlanner-v0": {"n_households": 10},
    }
    assert set(arguments) == set(registry.ENV_IDS)
    for env_id, kwargs in arguments.items():
        env = pettingzoo.make("parallel", env_id, **kwargs)
        assert isinstance(env.unwrapped, registry.ENV_IDS[env_id])
        built = registry.make_env(env_id, **kwargs)
        assert type(built) is registry.ENV_IDS[env_id]
        assert registry.family_of(env_id).env_ids[env_id] is type(built)


def test_unknown_names_are_value_errors_listing_the_known_ones() -> None:
    with pytest.raises(registry.UnknownNameError, match="'weather'; known: rumour, macro"):
        registry.family("weather")
    with pytest.raises(ValueError, match="unknown population family"):
        registry.family(["rumour"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'mfllm/Weather-v0'; known: mfllm/Population-v0, "):
        registry.make_env("mfllm/Weather-v0")
    with pytest.raises(ValueError, match="role must be 'population' or 'leader'"):
        registry.family("macro").defaults("government")


def test_defaults_are_the_constructors_own() -> None:
    rumour = registry.family("rumour").defaults()
    assert rumour["warmup"] == inspect.signature(PopulationEnv).parameters["warmup"].default
    assert rumour["action_mode"] == registry.family("rumour").action_modes[0] == "text"
    leader = registry.family("rumour").defaults("leader")
    assert (leader["warmup"], leader["agents_per_step"], leader["budget"]) == (16, 8, 3)
    # MacroEnv hands its options to the game: the game's defaults come with its own.
    macro = registry.family("macro").defaults()
    assert macro["n_households"] == 100
    assert macro["action_mode"] == registry.family("macro").action_modes[0] == "box"
    assert macro["government"] == "free_market"
    env = MacroEnv()
    assert (env.game.n, env.game.action_mode) == (macro["n_households"], macro["action_mode"])


def test_each_family_builds_its_codec() -> None:
    decoded = registry.family("macro").codec().decode_texts(["work 40 hours a week, save half"])
    assert isinstance(registry.family("macro").codec(), HouseholdTextCodec)
    np.testing.assert_allclose(decoded.actions[0][0], 0.5)
    assert decoded.fallbacks == [()]

    class Support:
        scheme = SDQC

        def label(self, texts: list[str]) -> list[int]:
            return [0 if "true" in t else -1 for t in texts]

    codec = registry.family("rumour").codec(Support())
    assert isinstance(codec, RumourTextCodec)
    decoded = codec.decode_texts(["this is true", "hmm"])
    assert decoded.actions.tolist() == [0, SDQC.fallback_id]
    assert decoded.fallbacks == [(), ("label",)]


def test_the_cli_takes_its_episode_defaults_from_the_registry() -> None:
    rumour = registry.family("rumour")
    assert simulate_cmd.RUMOUR is rumour and planner_cmd.RUMOUR is rumour
    assert simulate_cmd.RUN_DEFAULTS["warmup"] == rumour.defaults()["warmup"]
    assert simulate_cmd.RUN_DEFAULTS["agents_per_step"] == rumour.defaults()["agents_per_step"]
    parser = pytest.importorskip("mfllm_cli.main").build_parser()
    args = parser.parse_args(["planner-eval", "--scenarios", "synthetic:0", "--out", "x"])
    leader = rumour.defaults("leader")
    for name in ("warmup", "agents_per_step", "budget", "cost", "distance"):
        assert getattr(args, name) == leader[name]
