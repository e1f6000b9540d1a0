"""``mfllm bench`` and the leaderboard maths behind it (:mod:`mfllm_env.benchmark`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mfllm_cli.bench_cmd import resolve
from mfllm_cli.main import build_parser, main
from mfllm_env.benchmark import (
    NAIVE_FORECASTERS,
    NOISE_FLOOR,
    NOISE_FLOOR_RESAMPLES,
    RECORD_KEYS,
    expected_scores,
    horizon_kl,
    leaderboard,
    naive_forecasts,
    noise_floor_scores,
    paired_comparison,
    pooled_scores,
    scored_rows,
    shares_metrics,
)
from mfllm_env.metrics import episode_metrics, kl_divergence, resampled_divergences
from mfllm_env.runs import file_name, read_records

# Two short synthetic episodes, two seeds, two cheap policies: a second per bench.
FAST = ["--preset", "ci", "--policies", "random,mf-classifier", "--no-progress"]


def _bench(out, *extra):
    return main(["bench", *FAST, *extra, "--out", str(out)])


def _fidelity(out):
    """The leaderboard and comparisons of a bench."""
    board = json.loads((out / "leaderboard.json").read_text())
    return board["leaderboard"], board["comparisons"]


def _records(out):
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


# -- the maths ----------------------------------------------------------------------------


def _runs(values):
    """``[(episode, seed, {"kl": v})]`` from ``{(episode, seed): v}``."""
    return [(e, s, {"kl": v}) for (e, s), v in values.items()]


def test_leaderboard_standard_error_is_over_episodes_of_seed_means():
    runs = _runs({("a", 0): 1.0, ("a", 1): 3.0, ("b", 0): 4.0, ("b", 1): 6.0})
    entry = leaderboard({"p": {"runs": runs}}, ["kl"])["p"]
    # Episode means 2 and 5: mean 3.5, standard error std([2, 5], ddof=1) / sqrt(2) = 1.5.
    assert entry["kl"] == {"mean": 3.5, "stderr": pytest.approx(1.5), "n": 2}
    assert (entry["episodes"], entry["seeds"], entry["runs"]) == (2, 2, 4)
    one = leaderboard({"p": {"runs": _runs({("a", 0): 1.0})}}, ["kl"])["p"]["kl"]
    assert one["mean"] == 1.0 and math.isnan(one["stderr"])


def test_paired_comparison_separates_a_real_difference_from_noise():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.2, size=12)
    episodes = [f"e{i}" for i in range(12)]
    worse = _runs({(e, 0): v + 0.3 for e, v in zip(episodes, base, strict=True)})
    same = _runs({(e, 0): v + rng.normal(0, 0.05) for e, v in zip(episodes, base, strict=True)})
    # The reference in another order, with an episode the others lack: pairs go by episode.
    reference = _runs({(e, 0): v for e, v in zip(episodes, base, strict=True)})[::-1]
    reference.append(("extra", 0, {"kl": 100.0}))
    clear = paired_comparison(worse, reference, "kl")
    assert clear["n"] == 12 and clear["significant"] == 1.0
    # All 12 differences are +0.3: only the identity and the all-flipped signs are as extreme.
    assert clear["p_value"] == pytest.approx(2 / 2**12)
    assert clear["difference"] == pytest.approx(0.3) and clear["low"] == pytest.approx(0.3)
    assert clear["relative"] == pytest.approx(0.3 / base.mean())
    assert clear["relative_low"] < clear["relative"] < clear["relative_high"]
    noise = paired_comparison(same, reference, "kl")
    assert noise["significant"] == 0.0 and noise["p_value"] > 0.05
    assert noise["low"] < 0 < noise["high"]
    assert paired_comparison(worse, reference, "kl") == clear  # seeded


def test_two_episodes_can_never_show_a_difference():
    a = _runs({("e1", 0): 0.50, ("e2", 0): 0.21})
    b = _runs({("e1", 0): 0.49, ("e2", 0): 0.20})
    result = paired_comparison(a, b, "kl")
    # The smallest p two episodes allow: 2 of the 4 sign patterns are as extreme.
    assert result["p_value"] == pytest.approx(0.5) and result["significant"] == 0.0
    one = paired_comparison(a[:1], b, "kl")
    assert one["n"] == 1.0 and math.isnan(one["difference"]) and math.isnan(one["p_value"])


def test_horizon_kl_counts_only_rollouts_that_long():
    real, sim = [0, 0, 1, 0, 0, 1], [0, 0, 0, 1, 1, 1]
    assert horizon_kl(real, sim, 2, warmup=2, horizon=2) == pytest.approx(0.0, abs=1e-2)
    assert horizon_kl(real, sim, 2, warmup=2, horizon=4) > 0
    assert math.isnan(horizon_kl(real, sim, 2, warmup=2, horizon=5))


def test_constant_forecast_scores_like_a_simulation_with_those_shares():
    real = [0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # warm-up, then a drift from 0 to 1
    forecast = shares_metrics(real, [0.5, 0.5], warmup=2, step_size=2, ordered=False)
    # A simulation whose cumulative shares are 1/2 at every step scores the same.
    simulated = episode_metrics(real, [0, 1] + [0, 1] * 5, 2, step_size=2, warmup=2)
    for key in ("kl", "js", "tv", "w1", "kl_mean_over_time", "dtw"):
        assert forecast[key] == pytest.approx(simulated[key]), key
    # Right final shares, wrong path: only the over-time metrics see the drift.
    assert forecast["kl"] == pytest.approx(0.0, abs=1e-6)
    assert forecast["kl_mean_over_time"] > 0.1 and forecast["dtw"] > 0.5
    assert math.isnan(forecast["micro_f1"]) and forecast["n_reactions"] == 10


def test_naive_forecasts_are_the_warmup_shares_and_the_prior():
    record = {"labels": ["a", "b", "c"], "warmup": 4, "real_label_ids": [0, 0, 2, 0, 1, 1]}
    forecasts = naive_forecasts(record, [0.2, 0.3, 0.5])
    np.testing.assert_allclose(forecasts["naive: last observed"], [0.75, 0, 0.25])
    np.testing.assert_allclose(forecasts["naive: training prior"], [0.2, 0.3, 0.5])
    assert list(naive_forecasts({**record, "warmup": 0}, None)) == []
    for prior in ([0.5, 0.5], [math.nan] * 3, [-1, 1, 1], [0, 0, 0], ["a"] * 3):
        # NaN, negative and all-zero priors were taken and failed later as "sim_traj ..."
        with pytest.raises(ValueError, match=r"prior must be 3 finite shares >= 0, not all 0"):
            naive_forecasts(record, prior)


def _record(policy, seed, sim, real=(0, 0, 0, 1, 0, 0, 1, 1), **extra):
    return {"policy": policy, "seed": seed, "episode": "e", "labels": ["a", "b"],
            "warmup": 2, "agents_per_step": 2, "ordered": False, "metrics": {},
            "real_label_ids": list(real), "sim_label_ids": list(sim), **extra}  # fmt: skip


def test_pooled_scores_count_every_seeds_rollout_together():
    # Real rollout: 3 a, 3 b. Seed 0 simulates 6 a, seed 1 6 b: each is far off alone,
    # together they are exactly the real shares.
    seeds = [_record("p", 0, [1, 1, 0, 0, 0, 0, 0, 0]), _record("p", 1, [0, 0, 1, 1, 1, 1, 1, 1])]
    assert pooled_scores(seeds) == {"kl_pooled": 0.0, "js_pooled": 0.0, "tv_pooled": 0.0}
    rows = scored_rows(seeds)
    assert [scores["kl_pooled"] for _, _, scores in rows["p"]["runs"]] == [0.0, 0.0]
    assert all(scores["kl"] > 1 for _, _, scores in rows["p"]["runs"])
    assert leaderboard(rows, ["kl_pooled"])["p"]["kl_pooled"]["mean"] == 0.0
    one = pooled_scores(seeds[:1])["kl_pooled"]
    assert one == pytest.approx(kl_divergence([3, 3], [6, 0]))


def test_expected_scores_use_the_mean_of_the_rollout_agents_distributions():
    # Warm-up agents' distributions are left out; the rollout's mean is (0.5, 0.5).
    shares = [[1, 0], [1, 0]] + [[0.75, 0.25], [0.25, 0.75]] * 3
    record = _record("p", 0, [0] * 8, label_distributions=shares)
    assert expected_scores(record) == {
        "kl_expected": 0.0, "js_expected": 0.0, "tv_expected": 0.0
    }  # fmt: skip
    missing = _record("p", 0, [0] * 8, label_distributions=[*shares[:7], None])
    assert all(math.isnan(v) for v in expected_scores(missing).values())
    with pytest.raises(ValueError, match=r"must hold 2 shares per reaction, got shape \(6, 3\)"):
        expected_scores(_record("p", 0, [0] * 8, label_distributions=[[1, 0, 0]] * 8))


def test_noise_floor_is_the_mean_kl_of_resamples_of_the_real_shares():
    record = _record("p", 0, [0] * 8)
    floor = noise_floor_scores(record, seeds=3, horizons=[2, 6, 7])
    assert floor == noise_floor_scores(record, seeds=3, horizons=[2, 6, 7])  # seeded
    assert 0 < floor["kl_pooled"] < floor["kl"] < floor["kl@2"]  # more reactions, less noise
    assert floor["kl@6"] == floor["kl"] and math.isnan(floor["kl@7"])
    # A 2-reaction window of one a and one b: every resample misses a label or not at
    # all, so the mean is P(miss) x the KL of a miss, with KL's own smoothing.
    two = noise_floor_scores(_record("p", 0, [0] * 4, real=(0, 0, 0, 1)))
    miss = kl_divergence([1, 1], [2, 0])
    assert two["kl"] == pytest.approx(miss * 0.5, rel=0.1)
    # One label throughout: every resample is the real shares.
    assert noise_floor_scores(_record("p", 0, [0] * 8, real=[0] * 8))["kl"] == 0.0
    assert NOISE_FLOOR_RESAMPLES >= 1000
    rng = np.random.default_rng(0)
    assert resampled_divergences([1, 1], 2, resamples=4000, rng=rng)["kl"] == pytest.approx(
        miss * 0.5, rel=0.05
    )


@pytest.mark.parametrize("horizon", [0, -1, 1.5, math.nan, "2", True])
def test_horizons_that_are_not_counts_are_named(horizon):
    """They were numpy casting errors or slice TypeErrors."""
    with pytest.raises(ValueError, match=f"horizon must be an integer >= 1 .*got {horizon!r}"):
        horizon_kl([0, 1, 2, 3], [0, 1, 2, 3], 4, 1, horizon)
    with pytest.raises(ValueError, match=f"horizon must be an integer >= 1 .*got {horizon!r}"):
        shares_metrics([0, 1, 1], [0.5, 0.5], warmup=1, step_size=1, ordered=False,
                       horizons=[horizon])  # fmt: skip


def test_a_negative_warmup_is_refused_not_read_from_the_end():
    with pytest.raises(ValueError, match=r"warmup must be an integer >= 0 .*got -1"):
        shares_metrics([0, 1, 1, 1], [0.5, 0.5], warmup=-1, step_size=1, ordered=False)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"resamples": 0}, "resamples must be an integer >= 1 and <= 1000000, got 0"),
        ({"resamples": 10**12}, "resamples must be an integer >= 1 and <= 1000000, got 10"),
        ({"resamples": 1.5}, "resamples must be an integer >= 1 .*got 1.5"),
        ({"level": 1.5}, "level must be a number strictly between 0 and 1, got 1.5"),
        ({"level": math.nan}, "level must be a number strictly between 0 and 1, got nan"),
        ({"seed": -1}, "seed must be .*an integer >= 0, got -1"),
        ({"seed": None}, "seed must be an integer >= 0, got None"),
    ],
)
def test_paired_comparison_options_are_checked(option, message):
    """A level of 1.5 or NaN gave NaN intervals and a silent 'within the noise'; bad
    resamples and seeds failed inside scipy and numpy (10**12: a MemoryError)."""
    runs = _runs({("a", 0): 1.0, ("b", 0): 2.0, ("c", 0): 3.0})
    with pytest.raises(ValueError, match=message):
        paired_comparison(runs, runs, "kl", **option)


def test_leaderboard_keys_given_as_one_string_are_refused():
    with pytest.raises(TypeError, match="keys must be a sequence of metric names, got the"):
        leaderboard({"p": {"runs": _runs({("a", 0): 1.0})}}, "kl")


def test_read_records_refuses_foreign_files(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps({"episode": "e"}) + "\n")
    with pytest.raises(ValueError, match=r"episodes\.jsonl:1 is not a benchmark"):
        read_records(path, RECORD_KEYS, "a benchmark episode record")


# -- the command --------------------------------------------------------------------------


def test_bench_writes_records_leaderboard_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    assert _bench(out) == 0
    records = _records(out)
    # 2 policies x 2 seeds x 2 episodes, each with the whole episode's labels.
    assert len(records) == 8
    assert {(r["policy"], r["seed"]) for r in records} == {
        (p, s) for p in ("random", "mf-classifier") for s in (0, 1)
    }
    first = records[0]
    assert first["warmup"] == 16 and len(first["real_label_ids"]) == 48
    assert len(first["sim_label_ids"]) == 48 and first["settings"]["kind"] == "non-LLM"
    # Every policy plays an episode under a seed with the same episode seed; all differ.
    seeds = {(r["seed"], r["episode"]): r["episode_seed"] for r in records}
    assert len(set(seeds.values())) == 4
    assert all(r["episode_seed"] == seeds[r["seed"], r["episode"]] for r in records)
    board = json.loads((out / "leaderboard.json").read_text())
    table = board["leaderboard"]
    assert list(table) == ["random", "mf-classifier", *NAIVE_FORECASTERS, NOISE_FLOOR]
    assert table["random"]["kl"]["n"] == 2 and table["random"]["seeds"] == 2
    assert table["naive: last observed"]["micro_f1"]["mean"] is None
    assert set(table["random"]) >= {"kl", "js", "tv", "w1", "dtw", "micro_f1", "kl@8", "kl@32"}
    # Pooled for every row; expected where the row has a distribution (the classifier's
    # probabilities, the forecasters' shares), not for random's draws nor the noise floor.
    assert all(table[p]["kl_pooled"]["n"] == 2 for p in table)
    assert {p for p in table if "kl_expected" in table[p]} == {"mf-classifier", *NAIVE_FORECASTERS}
    for name in NAIVE_FORECASTERS:
        assert table[name]["kl_pooled"] == table[name]["kl_expected"] == table[name]["kl"]
    # Pooling two seeds' labels counts twice the reactions: less noise than one seed's.
    assert table["mf-classifier"]["kl_pooled"]["mean"] < table["mf-classifier"]["kl"]["mean"]
    floor = table[NOISE_FLOOR]
    assert floor["seeds"] == 1 and floor["micro_f1"]["mean"] is None
    assert 0 < floor["kl_pooled"]["mean"] < floor["kl"]["mean"] < table["random"]["kl"]["mean"]
    assert len(board["prior"]) == 4 and sum(board["prior"]) == pytest.approx(1.0)
    assert set(board["comparisons"]) == {"kl", "kl_pooled", "kl_expected"}
    assert board["comparisons"]["kl"]["vs_best"] and board["comparisons"]["kl_pooled"]["vs_best"]
    assert NOISE_FLOOR not in json.dumps(board["comparisons"])
    # mf-classifier against the best forecaster on the expected KL: random has none.
    assert "random" not in json.dumps(board["comparisons"]["kl_expected"])
    markdown = (out / "leaderboard.md").read_text()
    assert "| random | 2 × 2 |" in markdown and "KL@16" in markdown
    assert "| KL pooled | KL expected |" in markdown and f"| {NOISE_FLOOR} | 2 × 1 |" in markdown
    assert "### expected KL: each row against the best" in markdown
    csv_lines = (out / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0].startswith(
        "policy,episodes,seeds,runs,kl_mean,kl_stderr,kl_pooled_mean,kl_pooled_stderr,"
        "kl_expected_mean,kl_expected_stderr"
    )
    assert len(csv_lines) == 1 + 5
    # The classifier's records hold the probabilities its labels were drawn from.
    classifier = next(r for r in records if r["policy"] == "mf-classifier")
    distributions = classifier["label_distributions"]
    assert len(distributions) == 48 and all(len(d) == 4 for d in distributions)
    assert all(sum(d) == pytest.approx(1.0, abs=1e-5) for d in distributions)
    assert all("label_distributions" not in r for r in records if r["policy"] == "random")
    for png in ("kl_by_policy.png", "horizons.png", f"trajectories/{file_name('synthetic/0')}.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "naive: last observed" in capsys.readouterr().out


def test_same_seeds_give_the_same_leaderboard(tmp_path):
    assert _bench(tmp_path / "a") == 0 and _bench(tmp_path / "b") == 0
    assert _fidelity(tmp_path / "a") == _fidelity(tmp_path / "b")
    assert _bench(tmp_path / "c", "--seeds", "2,3") == 0
    assert _fidelity(tmp_path / "c")[0]["random"] != _fidelity(tmp_path / "a")[0]["random"]


def test_resume_plays_only_the_missing_episodes(tmp_path, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _bench(full) == 0 and _bench(cut) == 0
    lines = (cut / "episodes.jsonl").read_text().splitlines(keepends=True)
    # An interruption: three finished episodes and half a line.
    (cut / "episodes.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    capsys.readouterr()
    assert _bench(cut) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert _bench(cut, "--resume") == 0
    err = capsys.readouterr().err
    assert "dropped the truncated last line 4" in err and "(5 to play)" in err
    # The broken line is gone; every episode is there once, in the uninterrupted order.
    assert (cut / "episodes.jsonl").read_bytes() == (full / "episodes.jsonl").read_bytes()
    records = read_records(cut / "episodes.jsonl")
    assert len(records) == 8
    assert len({(r["policy"], r["seed"], r["episode"]) for r in records}) == 8
    assert _fidelity(cut) == _fidelity(full)
    # Nothing left: a resume only rewrites the report; more seeds are added.
    assert _bench(cut, "--resume") == 0 and "(0 to play)" in capsys.readouterr().err
    assert _bench(cut, "--resume", "--seeds", "0,1,2") == 0
    assert len(read_records(cut / "episodes.jsonl")) == 12
    # The report covers the seeds asked for, even where the folder holds more.
    assert _bench(cut, "--resume", "--seeds", "2") == 0
    assert _fidelity(cut)[0]["random"]["seeds"] == 1


def test_resume_refuses_other_episode_settings(tmp_path, capsys):
    out = tmp_path / "bench"
    assert _bench(out, "--seeds", "0") == 0
    capsys.readouterr()
    assert _bench(out, "--seeds", "0", "--resume", "--warmup", "8") == 2
    err = capsys.readouterr().err
    assert "warmup: 16 -> 8" in err and "may not change" in err


def test_resume_gives_an_adapter_only_with_its_policy(tmp_path, capsys):
    out, adapter = tmp_path / "bench", tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")  # what the argument checks
    assert _bench(out, "--seeds", "0") == 0
    capsys.readouterr()
    # Without sft, an adapter would pin a setting no episode used.
    assert _bench(out, "--seeds", "0", "--resume", "--sft-adapter", str(adapter)) == 2
    assert f"sft_adapter: None -> '{adapter}'" in capsys.readouterr().err


def test_forecast_warms_up_on_a_share_of_each_episode(tmp_path):
    out = tmp_path / "bench"
    assert _bench(out, "--seeds", "0", "--forecast", "25", "--max-reactions", "40") == 0
    records = _records(out)
    assert {r["warmup"] for r in records} == {10}
    assert "first 25% of each episode" in (out / "leaderboard.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policies", "random,oracle"], "--policies must list distinct names"),
        (["--policies", "sft"], "policy sft needs --sft-adapter"),
        (["--seeds", "0,x"], "argument --seeds: item 2 of '0,x' must be an integer"),
        (["--seeds", "1,1"], "argument --seeds: lists 1 more than once"),
        (["--forecast", "100"], "argument --forecast: must be a number > 0 and < 100"),
        (["--horizons", "0,8"], "argument --horizons: item 1 of '0,8' must be an integer >= 1"),
        (["--warmup", "200"], "--warmup 200 leaves nothing to simulate"),
        (["--seeds", "-1"], "argument --seeds: item 1 of '-1' must be an integer >= 0"),
        (["--scenarios", "jsonl:nowhere.jsonl"], "mf-classifier needs --fit SPEC for 'jsonl'"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, extra, message):
    assert _bench(tmp_path / "bench", *extra) == 2
    assert message in capsys.readouterr().err


def test_without_a_preset_scenarios_policies_and_seeds_are_required(tmp_path, capsys):
    assert main(["bench", "--policies", "random", "--out", str(tmp_path / "b")]) == 2
    assert "--scenarios is required" in capsys.readouterr().err


def test_full_preset_leaves_out_what_it_cannot_run(tmp_path, capsys):
    args = build_parser().parse_args(["bench", "--preset", "full", "--out", str(tmp_path)])
    resolved = resolve(args)
    assert "sft" not in resolved.policy_list and "mf-ib-tune" not in resolved.policy_list
    assert {"mf", "state", "recent", "popular", "mf-classifier"} <= set(resolved.policy_list)
    assert resolved.seed_list == [0, 1, 2] and resolved.warmup == 50
    assert "left out sft (no --sft-adapter DIR)" in capsys.readouterr().err


def test_without_a_warmup_there_is_nothing_to_carry_forward(tmp_path):
    out = tmp_path / "bench"
    assert _bench(out, "--seeds", "0", "--warmup", "0") == 0
    assert list(_fidelity(out)[0]) == [
        "random",
        "mf-classifier",
        "naive: training prior",
        NOISE_FLOOR,
    ]


def test_llm_policies_record_tokens_and_nll(tmp_path, tiny_model_dir):
    out = tmp_path / "bench"
    argv = ["bench", "--preset", "ci", "--scenarios", "synthetic:0", "--policies", "state,mf",
            "--seeds", "0", "--model", str(tiny_model_dir), "--max-new-tokens", "4",
            "--summary-tokens", "4", "--max-reactions", "24", "--nll", "--threads", "1",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    records = {r["policy"]: r for r in _records(out)}
    assert records["state"]["metrics"]["completion_tokens"] > 0
    assert records["mf"]["metrics"]["mean_field_calls"] == 3  # 24 reactions / 8 per step
    assert records["mf"]["settings"]["mean_field"] == "llm"
    table = json.loads((out / "leaderboard.json").read_text())["leaderboard"]
    assert table["state"]["nll_per_token"]["mean"] > 0
    assert "| mf |" in (out / "leaderboard.md").read_text()
    compared = _fidelity(out)[1]["kl"]["mean_field_vs_baseline"]
    assert list(compared) == ["mf vs state"] and compared["mf vs state"]["n"] == 1.0


def test_real_texts_score_the_labeller_itself(tmp_path):
    """On the synthetic event the labeller recovers every template's label, so replaying
    the real texts scores a perfect simulation; on real data it shows the labeller's error."""
    out = tmp_path / "bench"
    assert _bench(out, "--policies", "real-texts", "--seeds", "0") == 0
    row = _fidelity(out)[0]["real-texts"]
    assert row["micro_f1"]["mean"] == 1.0 and row["tv"]["mean"] == 0.0
    assert "real-texts" not in json.dumps(_fidelity(out)[1])


def test_real_reactions_without_human_labels_are_counted_and_noted(tmp_path, capsys):
    """Each record counts its scored real reactions with no human label (scored against
    the labeller's labels); the bench says so once, over episodes (every policy and seed
    replays the same real reactions), in its output and its report."""
    from dataclasses import replace

    from mfllm_env import synthetic_scenario, write_scenarios_jsonl

    scenarios = [synthetic_scenario(seed=s, n_reactions=48) for s in (0, 1)]
    # Every fourth reaction unlabelled: 8 of the 32 scored ones of each episode.
    write_scenarios_jsonl(
        [
            replace(s, reactions=[replace(r, labels={}) if i % 4 == 0 else r
                                  for i, r in enumerate(s.reactions)])
            for s in scenarios
        ],
        tmp_path / "s.jsonl",
    )  # fmt: skip
    out = tmp_path / "bench"
    extra = ["--scenarios", f"jsonl:{tmp_path / 's.jsonl'}", "--policies", "random,herding"]
    assert _bench(out, *extra) == 0
    note = (
        "16 of 64 scored real reactions have no human label; they are scored against the "
        "labeller's labels"
    )
    assert capsys.readouterr().out.count(f"note: {note}") == 1
    records = _records(out)
    assert len(records) == 8
    assert {(r["scored_real_reactions"], r["real_labels_from_labeller"]) for r in records} == {
        (32, 8)
    }
    assert f"Note: {note}." in (out / "leaderboard.md").read_text()
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["label_sources"] == {"scored_real_reactions": 64, "real_labels_from_labeller": 16}

    assert _bench(tmp_path / "human", "--seeds", "0") == 0
    assert "no human label" not in capsys.readouterr().out
    assert "no human label" not in (tmp_path / "human" / "leaderboard.md").read_text()


def test_samples_per_agent_record_distributions_and_score_kl_expected(tmp_path, tiny_model_dir):
    """--samples-per-agent 3: the LLM records hold each agent's label distribution (shares
    of 3 samples) and the leaderboard their expected KL; --samples-per-agent 1 writes the
    bytes of a bench without the flag."""
    argv = ["bench", "--preset", "ci", "--scenarios", "synthetic:0-1", "--policies", "state",
            "--seeds", "0", "--model", str(tiny_model_dir), "--max-new-tokens", "4",
            "--max-reactions", "24", "--threads", "1", "--no-progress"]  # fmt: skip
    for name, extra in (("plain", []), ("one", ["--samples-per-agent", "1"])):
        assert main([*argv, *extra, "--out", str(tmp_path / name)]) == 0
    for file in ("episodes.jsonl", "leaderboard.json", "leaderboard.md"):
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "plain" / file).read_bytes()
    plain_config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "samples_per_agent" not in plain_config
    out = tmp_path / "three"
    assert main([*argv, "--samples-per-agent", "3", "--out", str(out)]) == 0
    records = _records(out)
    assert all(r["settings"]["samples_per_agent"] == 3 for r in records)
    for record in records:
        shares = np.asarray(record["label_distributions"])
        assert shares.shape == (24, 4)
        np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-5)
        assert np.allclose(shares * 3, np.round(shares * 3), atol=1e-4)  # thirds
        # Each agent's action is one of its samples: its label has a share.
        sim = record["sim_label_ids"]
        assert all(shares[i, label] > 0 for i, label in enumerate(sim))
    table = _fidelity(out)[0]
    assert table["state"]["kl_expected"]["n"] == 2
    assert json.loads((out / "config.json").read_text())["samples_per_agent"] == 3


def test_min_reactions_keeps_the_long_episodes(tmp_path, capsys):
    from mfllm_env import synthetic_scenario, write_scenarios_jsonl

    sizes = (48, 24, 64)
    write_scenarios_jsonl(
        [synthetic_scenario(seed=s, n_reactions=n) for s, n in enumerate(sizes)],
        tmp_path / "s.jsonl",
    )
    out = tmp_path / "bench"
    extra = ["--scenarios", f"jsonl:{tmp_path / 's.jsonl'}", "--policies", "random",
             "--max-reactions", "40", "--seeds", "0"]  # fmt: skip
    assert _bench(out, *extra, "--min-reactions", "40") == 0
    assert [r["episode"] for r in _records(out)] == ["synthetic/0", "synthetic/2"]
    assert json.loads((out / "config.json").read_text())["min_reactions"] == 40
    assert _bench(tmp_path / "b", *extra, "--min-reactions", "40", "--limit", "1") == 0
    assert [r["episode"] for r in _records(tmp_path / "b")] == ["synthetic/0"]
    capsys.readouterr()
    assert _bench(tmp_path / "c", *extra, "--min-reactions", "65") == 2
    assert "no scenarios found with at least 65 reactions" in capsys.readouterr().err
