"""The macro-economy's agents: mean-field RL households and government (features, policy
files, PPO training in Stackelberg order and the two ablations, resume), LLM households
and the LLM mean field (through the one prompt builder, replies parsed by the env), and
the evaluation (table, plots, resume, the CLI)."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch

from agents.backends.base import Completion
from agents.macro_llm import LLMEconomyMeanField
from agents.macro_rl import (
    LEADER_FEATURE_COUNT,
    GaussianPolicy,
    RLGovernment,
    RLHouseholds,
    household_feature_count,
    household_features,
    load_policy,
    save_policy,
)
from agents.policies import llm_policy
from agents.prompts import economy_summary_messages, household_messages
from mfllm_cli.main import main
from mfllm_env.games.macro import (
    GOVERNMENT,
    EconomyParameters,
    MacroEnv,
    RuleHouseholds,
)
from mfllm_env.games.macro.fiscal import ACTION_HIGH, ACTION_LOW, TAU_MAX
from tests.conftest import ReturnsBackend
from training.macro import MacroTrainConfig, play_economy, train_macro
from training.macro_eval import Matchup, evaluate_macro, standard_matchups

TINY = dict(
    households=10,
    horizon=4,
    warmup_iterations=1,
    rounds=1,
    leader_iterations=1,
    follower_iterations=1,
    episodes_per_iteration=1,
    hidden=8,
    save_every=1,
)


def _observations(n: int = 12, seed: int = 0) -> dict:
    env = MacroEnv(n)
    observations, _ = env.reset(seed=seed)
    return observations


@pytest.mark.parametrize("mean_field", [True, False])
def test_household_features_have_one_finite_row_per_household(mean_field: bool) -> None:
    observations = _observations()
    features = household_features(list(observations.values()), mean_field=mean_field)
    assert features.shape == (12, household_feature_count(mean_field))
    assert np.isfinite(features).all()
    # Own columns differ between households; the shared ones (policy, mean field) do not.
    assert features[:, 1].std() > 0
    assert (features[:, 2:] == features[0, 2:]).all(axis=None) == (not mean_field)


def test_policies_act_within_bounds_greedy_or_seeded() -> None:
    torch.manual_seed(0)
    model = GaussianPolicy(household_feature_count(True), 2, initial=(0.3, 1 / 3))
    observations = _observations()
    greedy = RLHouseholds(model).act(observations)
    assert len(greedy) == 12
    rows = np.stack(list(greedy.values()))
    assert ((rows >= ACTION_LOW) & (rows <= ACTION_HIGH)).all()
    np.testing.assert_allclose(rows.mean(0), (0.3, 1 / 3), atol=0.05)  # starts near initial
    sampled = RLHouseholds(model, greedy=False)
    sampled.reset(7)
    first = np.stack(list(sampled.act(observations).values()))
    sampled.reset(7)
    np.testing.assert_array_equal(first, np.stack(list(sampled.act(observations).values())))
    assert not np.allclose(first, rows)
    with pytest.raises(ValueError, match="without mean field takes"):
        RLHouseholds(model, mean_field=False)
    with pytest.raises(ValueError, match="government policy takes"):
        RLGovernment(model)


def test_policy_files_round_trip_and_refuse_the_wrong_kind(tmp_path) -> None:
    model = GaussianPolicy(LEADER_FEATURE_COUNT, 5, hidden=8)
    save_policy(tmp_path / "g.pt", model, "government", mean_field=True)
    loaded, mean_field = load_policy(tmp_path / "g.pt", "government")
    assert mean_field
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not a households policy"):
        RLHouseholds.load(tmp_path / "g.pt")
    with pytest.raises(ValueError, match="does not exist"):
        RLGovernment.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(ValueError, match="not a saved policy"):
        RLGovernment.load(tmp_path / "junk.pt")


class _Recorder:
    """Households at the fallback shares that remember the policy each year showed them."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def reset(self, seed=None) -> None:
        pass

    def act(self, observations):
        self.seen.append(float(next(iter(observations.values()))["policy"][0]))
        return RuleHouseholds().act(observations)


class _Raising:
    """A government raising its income tax every year."""

    def __init__(self) -> None:
        self.year = 0

    def reset(self, seed=None) -> None:
        self.year = 0

    def act(self, observations):
        self.year += 1
        return {GOVERNMENT: np.array([0.2 * self.year, 0.001, 0.001, 0.001, 0.1])}


@pytest.mark.parametrize("simultaneous", [False, True])
def test_play_economy_orders_the_moves(simultaneous: bool) -> None:
    env = MacroEnv(10, parameters=EconomyParameters(years=4))
    households = _Recorder()
    played = list(play_economy(env, households, _Raising(), seed=0, simultaneous=simultaneous))
    assert len(played) == 4 and all(p.leader_reward is not None for p in played)
    rates = households.seen
    # The rate households saw rises each year with the tax; in Stackelberg order they see
    # this year's tau (0.2 a0: 0.04, 0.08 ...) already, simultaneously last year's.
    assert all(later > earlier for earlier, later in itertools.pairwise(rates[1:]))
    first_tau = TAU_MAX * 0.2
    assert (rates[0] >= first_tau * 0.5) == (not simultaneous)


@pytest.mark.parametrize(
    "mode", ["stackelberg", "simultaneous", "no_mean_field", "simultaneous_no_mean_field"]
)
def test_schedule_by_mode(mode: str) -> None:
    config = MacroTrainConfig(mode=mode, **{**TINY, "leader_iterations": 2, "rounds": 2})
    schedule = config.schedule()
    assert schedule[0] == "households" and len(schedule) == 1 + 2 * 3
    simultaneous = mode.startswith("simultaneous")
    assert set(schedule[1:]) == ({"joint"} if simultaneous else {"leader", "followers"})
    assert config.mean_field == ("no_mean_field" not in mode)


def test_bad_training_config_is_named() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        MacroTrainConfig(mode="nash")
    with pytest.raises(ValueError, match="leader_reward"):
        MacroTrainConfig(leader_reward="votes")
    with pytest.raises(ValueError, match="households"):
        MacroTrainConfig(households=3)


def _weights(path) -> list[torch.Tensor]:
    return list(torch.load(path, weights_only=True)["state"].values())


@pytest.mark.parametrize("mode", ["stackelberg", "no_mean_field"])
def test_training_learns_logs_and_resumes_to_the_same_weights(tmp_path, mode: str) -> None:
    torch.set_num_threads(1)
    config = MacroTrainConfig(mode=mode, **TINY)
    whole = tmp_path / "whole"
    summary = train_macro(config, whole, progress=False)
    rows = [json.loads(line) for line in (whole / "log.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in rows] == config.schedule()
    assert all(0 < row["household_reward"] < 1 for row in rows)
    assert "leader_value_loss" in rows[1] and "household_value_loss" in rows[2]
    assert summary["iterations"] == 3
    assert (whole / "report.png").stat().st_size > 0 and (whole / "summary.json").is_file()
    households, mean_field = load_policy(whole / "households.pt", "households")
    assert mean_field == (mode != "no_mean_field")
    torch.manual_seed(config.seed)
    untrained = GaussianPolicy(
        household_feature_count(mean_field), 2, hidden=8, initial=(0.3, 1 / 3)
    )
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            untrained.state_dict().values(), households.state_dict().values(), strict=True
        )
    ]
    assert any(changed)
    # Interrupted after iteration 2: resuming ends where the whole run ended.
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    (cut / "checkpoints" / "step-3.pt").unlink()
    (cut / "households.pt").unlink()
    (cut / "government.pt").unlink()
    train_macro(config, cut, resume=True, progress=False)
    for name in ("households.pt", "government.pt"):
        for a, b in zip(_weights(whole / name), _weights(cut / name), strict=True):
            assert torch.equal(a, b)
    assert (cut / "log.jsonl").read_text() == (whole / "log.jsonl").read_text()


def test_evaluation_table_plots_and_resume(tmp_path) -> None:
    parameters = EconomyParameters(years=3)
    matchups = [
        Matchup(
            "free_market",
            "rule",
            lambda: MacroEnv(10, government="free_market", parameters=parameters),
            RuleHouseholds,
        ),
        Matchup(
            "raising",
            "rule",
            lambda: MacroEnv(10, parameters=parameters),
            RuleHouseholds,
            _Raising,
        ),
    ]
    rows = evaluate_macro(matchups, [0, 1], tmp_path, progress=False)
    assert [(r["government"], r["seeds"]) for r in rows] == [("free_market", 2), ("raising", 2)]
    for row in rows:
        assert row["years"] == 3 and row["years_se"] == 0
        assert 0 < row["wealth_gini"] < 1 and 0 < row["welfare"] < 1
        assert row["gdp_growth_se"] is not None
    for name in ("episodes.jsonl", "table.json", "table.md", "trajectories.png", "wealth.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "± " in (tmp_path / "table.md").read_text()
    before = (tmp_path / "episodes.jsonl").read_text()
    evaluate_macro(matchups, [0, 1], tmp_path, progress=False)  # resumed: nothing replayed
    assert (tmp_path / "episodes.jsonl").read_text() == before


def test_standard_matchups_refuse_a_folder_that_is_no_trained_run(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a finished macro-train run"):
        standard_matchups({"leader": tmp_path}, households=10, years=3)


def test_macro_eval_cli_names_a_bad_run(tmp_path, capsys) -> None:
    code = main(["macro-eval", "--out", str(tmp_path / "out"), "--trained", f"x={tmp_path}"])
    assert code == 2
    assert "not a finished macro-train run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_household_prompt_puts_the_shared_parts_first() -> None:
    parts = {"mean_field": "MF", "policy": "POLICY", "state": "STATE", "question": "Q?"}
    content = household_messages(parts)[1]["content"]
    assert content.index("MF") < content.index("POLICY") < content.index("STATE")
    assert "I will work N hours a week" in content
    summary = economy_summary_messages("", "STATS", ["row one"])[1]["content"]
    assert "none yet" in summary and "- row one" in summary


def _replies(text: str):
    return ReturnsBackend(lambda prompts: [Completion(text, 5, 5) for _ in prompts])


def test_llm_households_are_parsed_by_the_env_and_fallbacks_counted() -> None:
    summaries = _replies("Most households work part-time and save little.")
    env = MacroEnv(
        10,
        action_mode="text",
        mean_field=LLMEconomyMeanField(summaries, sample=3),
        parameters=EconomyParameters(years=2),
    )
    # The reply is read whole, across its lines (a rumour action keeps its first line only).
    reply = "I will work 30 hours\na week and save 25% of my income."
    households = llm_policy("macro", _replies(reply))
    played = list(play_economy(env, households, seed=0))
    assert len(played) == 2
    np.testing.assert_allclose(played[0].year.saving, 0.25)
    np.testing.assert_allclose(played[0].year.labour, 30 * 52 / 3893.3, rtol=1e-3)
    assert env.stats["fallback"] == 0 and households.usage["actions"] == 20
    assert env.game.statistics()["year"] == 2
    assert (
        "Most households work part-time"
        in next(iter(played[-1].observations.values()))["mean_field_text"]
    )
    # Replies the parser cannot read, and a failing summariser: counted, never fatal.
    failing = ReturnsBackend(lambda prompts: [Completion("", 0, 0, error="down")])
    mean_field = LLMEconomyMeanField(failing)
    env = MacroEnv(
        10, action_mode="text", mean_field=mean_field, parameters=EconomyParameters(years=1)
    )
    list(play_economy(env, llm_policy("macro", _replies("Hello there.")), seed=0))
    assert env.stats["fallback"] == 10
    assert mean_field.usage["failures"] == 1 and mean_field.summary == ""


def test_llm_households_on_a_tiny_model(tiny_backend) -> None:
    mean_field = LLMEconomyMeanField(tiny_backend, sample=2)
    env = MacroEnv(
        10, action_mode="text", mean_field=mean_field, parameters=EconomyParameters(years=1)
    )
    households = llm_policy("macro", tiny_backend)
    first = [p.year.saving.copy() for p in play_economy(env, households, seed=3)]
    again = [p.year.saving.copy() for p in play_economy(env, households, seed=3)]
    np.testing.assert_array_equal(first[0], again[0])  # same seed, same episode
    assert households.usage["actions"] == 20 and households.usage["completion_tokens"] > 0
    assert mean_field.usage["calls"] == 2  # one summary a year, two episodes
    # A random tiny model writes no hours or saving: all fall back, counted.
    assert env.stats["fallback"] == 10
