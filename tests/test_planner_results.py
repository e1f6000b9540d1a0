"""The statistics, table and plot of a planner evaluation (:mod:`mfllm_env.planner_results`)."""

from __future__ import annotations

import math

import pytest

from mfllm_env.planner_results import (
    display_name,
    plot_planner_shares,
    results_markdown,
    summarise,
)

LABELS = ("support", "deny")


def _row(planner, scenario, seed, ret):
    trajectory = [
        {"reactions": [0, 4], "cumulative": [0.5, 0.5], "warmup": True},
        {"reactions": [4, 8], "cumulative": [0.25 * ret, 1 - 0.25 * ret], "warmup": False},
    ]
    return {
        "planner": planner, "scenario": scenario, "seed": seed, "return": ret,
        "final_distance": -ret, "interventions": seed, "final_shares": [0.1 * ret, 1 - 0.1 * ret],
        "trajectory": trajectory,
    }  # fmt: skip


def _rows():
    rows = []
    for seed in (0, 1):
        for k, scenario in enumerate(("a", "b", "c")):
            rows.append(_row("threshold", scenario, seed, 1.0 + k))
            rows.append(_row("random", scenario, seed, 1.0 + k + 0.5 * seed))
    return rows


def test_summarise_averages_scenarios_within_a_seed_then_seeds():
    results = summarise(_rows(), ["threshold", "random"], LABELS)
    # random: seed 0 returns 1, 2, 3 (mean 2), seed 1 returns 1.5, 2.5, 3.5 (mean 2.5).
    assert results["random"]["return"]["mean"] == pytest.approx(2.25)
    assert results["random"]["return"]["stderr"] == pytest.approx(0.25)
    assert results["random"]["episodes"] == 6 and results["random"]["seeds"] == 2
    assert results["random"]["share_deny"]["mean"] == pytest.approx(1 - 0.225)
    versus = results["random"]["vs_threshold"]
    assert versus["difference"] == pytest.approx(0.25) and versus["n"] == 3
    assert "vs_threshold" not in results["threshold"]


def test_table_and_plot(tmp_path):
    rows = _rows()
    results = summarise(rows, ["threshold", "random"], LABELS)
    table = results_markdown(results, LABELS)
    assert table.splitlines()[0].startswith("| planner | return | final distance")
    assert "| random | 2.250 ± 0.250 |" in table and "+0.250 (p = " in table
    assert plot_planner_shares(rows, ["threshold", "random"], LABELS, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
    assert plot_planner_shares([], ["threshold"], LABELS, tmp_path / "none.png") is None


def test_display_names_stay_distinct():
    assert display_name("reinforce=a/planner.json", ["reinforce=a/planner.json"]) == (
        "reinforce (trained)"
    )
    two = ["reinforce=a/planner.json", "reinforce=b/planner.json"]
    assert display_name(two[0], two) == two[0]
    assert not math.isnan(summarise(_rows(), ["threshold"], LABELS)["threshold"]["return"]["mean"])


class CountingPlanners:
    """A PlannerSource over the baselines that counts the planners it builds."""

    def __init__(self) -> None:
        self.built: list[str] = []

    def action_mode(self, name: str) -> str:
        return "menu"

    def planner(self, name, env):
        from mfllm_env.planner import BASELINE_PLANNERS

        self.built.append(name)
        return BASELINE_PLANNERS[name](env)


def _evaluate(out, names, seeds, planners, *, resume=False):
    from mfllm_env.planner_results import evaluate_planners
    from mfllm_env.registry import family
    from mfllm_env.runs import RunFolder
    from mfllm_env.synthetic import synthetic_scenario

    scenarios = [synthetic_scenario(seed=s, n_reactions=40) for s in (0, 1)]

    def new_env(i, action_mode="menu"):
        return family("rumour").leader_env(scenarios[i], action_mode=action_mode, horizon=16)

    folder = RunFolder(out, "planner-eval", resume=resume)
    config = {"command": "planner-eval", "horizon": 16}
    return evaluate_planners(
        folder, config, names, scenarios, seeds, new_env, planners, progress=False
    )


def test_evaluate_planners_writes_the_records_in_order_and_resumes_only_missing(tmp_path):
    from mfllm_env import runs
    from mfllm_env.planner_results import EPISODE_KEYS, RESULT_FILES, TIMING_KEYS

    out = tmp_path / "eval"
    first = CountingPlanners()
    results, labels = _evaluate(out, ["scripted", "none"], [1], first)
    assert first.built == ["scripted"] * 2 + ["none"] * 2  # 2 scenarios x 1 seed each
    assert set(results) == {"scripted", "none"}
    assert (results["none"]["episodes"], results["none"]["seeds"]) == (2, 1)
    assert labels == ["support", "deny", "query", "comment"]
    assert {p.name for p in out.iterdir()} == {"config.json", *RESULT_FILES}
    # Resumed with a seed added before the first: only its episodes are played, and the
    # records come back in the order asked (planner, scenario, seed).
    again = CountingPlanners()
    _evaluate(out, ["scripted", "none"], [0, 1], again, resume=True)
    assert again.built == ["scripted"] * 2 + ["none"] * 2
    rows = runs.read_records(out / "episodes.jsonl", EPISODE_KEYS)
    keys = [(r["planner"], r["scenario"], r["seed"]) for r in rows]
    assert keys == [
        (p, f"synthetic/{s}", seed) for p in ("scripted", "none") for s in (0, 1) for seed in (0, 1)
    ]
    timing = runs.read_records(out / "timing.jsonl", TIMING_KEYS)
    assert [(t["planner"], t["scenario"], t["seed"]) for t in timing] == keys
    assert all(t["seconds"] > 0 for t in timing)


def test_named_planners_refuse_bad_names_before_any_episode(tmp_path):
    from training.named_planners import NamedPlanners, planner_names

    assert planner_names(" none, threshold ,llm") == ["none", "threshold", "llm"]
    for text, message in (
        ("none,oracle", "unknown planner 'oracle'"),
        ("none,none", "must name distinct planners"),
        (",", "must name distinct planners"),
        (f"reinforce={tmp_path / 'missing.json'}", "no such planner file"),
        (f"reinforce={tmp_path}", "not a file"),
        (f"ppo={tmp_path}", "not a zip file"),
        (f"llm={tmp_path}", "is not a PEFT adapter folder"),
    ):
        with pytest.raises(ValueError, match=message):
            planner_names(text)
    planners = NamedPlanners("smollm2", threshold=0.2)
    assert [planners.action_mode(n) for n in ("none", "llm", "llm=x", "ppo=y")] == [
        "menu", "text", "text", "menu"
    ]  # fmt: skip
