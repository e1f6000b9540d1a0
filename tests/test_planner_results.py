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
