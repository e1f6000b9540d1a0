"""``mfllm simulate`` and the run folder it writes."""

from __future__ import annotations

import json
import re
from functools import partial

import pytest

from agents.baselines import HerdingPolicy
from mfllm_cli.main import main
from mfllm_env import PopulationEnv, synthetic_scenario, write_scenarios_jsonl
from mfllm_env.runs import file_name
from mfllm_env.simulation import simulate


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_simulate_synthetic_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["simulate", "--scenario", "synthetic:3", "--policy", "mf-classifier"]
    code = main([*argv, "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "kl" in printed and "1 episode, policy mf-classifier" in printed
    steps = _lines(out / "trajectory.jsonl")
    assert len(steps) == 19  # 300 reactions / 16 per step
    assert [s["step"] for s in steps] == list(range(19))
    assert steps[0]["episode"] == "synthetic/3" and len(steps[0]["sim_labels"]) == 16
    assert sum(s["warmup"] for s in steps) == 50
    episodes = _lines(out / "episodes.jsonl")
    assert len(episodes) == 1 and episodes[0]["metrics"]["n_reactions"] == 250
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["episodes"] == 1
    assert {"kl", "js", "tv", "w1", "dtw", "micro_f1"} <= set(metrics["metrics"])
    assert json.loads((out / "config.json").read_text())["policy"] == "mf-classifier"
    assert (out / "shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_metrics(tmp_path):
    results = []
    for name in ("a", "b"):
        main(["simulate", "--policy", "random", "--seed", "7", "--out", str(tmp_path / name)])
        results.append(_lines(tmp_path / name / "trajectory.jsonl"))
    assert results[0] == results[1]


def test_seed_range_gives_one_episode_per_seed(tmp_path):
    out = tmp_path / "run"
    argv = ["simulate", "--scenario", "synthetic:4-6", "--policy", "herding", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    episodes = [e["episode"] for e in _lines(out / "episodes.jsonl")]
    assert episodes == ["synthetic/4", "synthetic/5", "synthetic/6"]
    assert json.loads((out / "metrics.json").read_text())["metrics"]["kl"]["n"] == 3
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        f"{file_name(f'synthetic/{seed}')}.png" for seed in (5, 6)
    ]


def test_library_warns_about_skipped_episodes(tmp_path):
    from mfllm_env.simulation import EpisodeSkippedWarning

    scenarios = [synthetic_scenario(seed=1, n_reactions=20), synthetic_scenario(seed=2)]
    make_env = partial(PopulationEnv, action_mode="label")
    with pytest.warns(EpisodeSkippedWarning, match="skipped 1 episode"):
        summary = simulate(scenarios, make_env, HerdingPolicy(), tmp_path, progress=False)
    assert summary["skipped"] == 1 and summary["episodes"] == 1


def test_interrupted_run_keeps_finished_steps_and_resumes(tmp_path):
    class Crashing(HerdingPolicy):
        calls = 0

        def act(self, observations):
            Crashing.calls += 1
            if Crashing.calls == 6:
                raise KeyboardInterrupt
            return super().act(observations)

    make_env = partial(PopulationEnv, action_mode="label")
    with pytest.raises(KeyboardInterrupt):
        simulate([synthetic_scenario(seed=1)], make_env, Crashing(), tmp_path, progress=False)
    assert len(_lines(tmp_path / "trajectory.jsonl")) == 5
    with pytest.raises(ValueError, match=r"already holds trajectory\.jsonl"):
        simulate([synthetic_scenario(seed=1)], make_env, HerdingPolicy(), tmp_path)
    summary = simulate(
        [synthetic_scenario(seed=1)], make_env, HerdingPolicy(), tmp_path, progress=False,
        resume=True,
    )  # fmt: skip
    assert summary["episodes"] == 1
    steps = _lines(tmp_path / "trajectory.jsonl")
    assert [s["step"] for s in steps] == list(range(19))  # the cut episode played anew


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "nosuch:x", "--policy", "herding"], "unknown scenario source"),
        (["--scenario", "synthetic:abc", "--policy", "herding"], "FIRST-LAST"),
        (["--scenario", "synthetic:5-2", "--policy", "herding"], "empty"),
        (
            ["--scenario", "synthetic:\u0663", "--policy", "herding"],
            "synthetic seeds must be SEED or FIRST-LAST in ASCII digits, got '\u0663'",
        ),
        (["--scenario", "jsonl:/does/not/exist.jsonl", "--policy", "herding"], "no such file"),
        (["--scenario", "ced:/tmp", "--policy", "mf-classifier"], "--fit"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, argv, message):
    code = main(["simulate", "--out", str(tmp_path / "run"), "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def _strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_metrics_json_is_standard_json_for_one_episode(tmp_path):
    out = tmp_path / "run"
    assert main(["simulate", "--policy", "herding", "--out", str(out), "--no-progress"]) == 0
    metrics = _strict_json(out / "metrics.json")
    assert metrics["metrics"]["kl"]["stderr"] is None and metrics["metrics"]["kl"]["n"] == 1
    assert "seconds" not in metrics["metrics"]


def test_episodes_shorter_than_warmup_are_skipped_and_counted(tmp_path, capsys):
    from mfllm_env import write_scenarios_jsonl

    scenarios = [synthetic_scenario(seed=s, n_reactions=n) for s, n in ((1, 30), (2, 80))]
    write_scenarios_jsonl(scenarios, tmp_path / "s.jsonl")
    out = tmp_path / "run"
    argv = ["simulate", "--scenario", f"jsonl:{tmp_path / 's.jsonl'}", "--policy", "herding"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "skipped 1 episode(s) shorter than the warm-up (50)" in capsys.readouterr().out
    episodes = _lines(out / "episodes.jsonl")
    assert "skipped" in episodes[0] and "metrics" in episodes[1]
    summary = _strict_json(out / "metrics.json")
    assert summary["episodes"] == 1 and summary["skipped"] == 1


def test_all_episodes_too_short_is_a_clear_error(tmp_path, capsys):
    argv = ["simulate", "--policy", "herding", "--warmup", "400", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "shorter than the warm-up" in capsys.readouterr().err


def test_default_fit_leaves_out_the_evaluated_event(rumoureval_dir, tmp_path, capsys):
    argv = ["simulate", "--scenario", f"rumoureval:{rumoureval_dir}:ottawashooting"]
    argv += ["--policy", "state-classifier", "--warmup", "16", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "less 1 scenario(s) sharing reactions with the evaluated ones" in err


def test_limit_must_be_positive(tmp_path, capsys):
    argv = ["simulate", "--policy", "herding", "--limit", "0", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "argument --limit: must be an integer >= 1 and" in capsys.readouterr().err


def test_real_reactions_without_human_labels_are_counted_and_noted(tmp_path, capsys):
    """Scored real reactions with no human label are scored against the labeller's labels:
    counted per episode and in metrics.json, and said once; none without them."""
    from dataclasses import replace

    from mfllm_env import write_scenarios_jsonl

    scenario = synthetic_scenario(seed=1, n_reactions=80)
    # Every fourth reaction unlabelled: 4 of the 16 of the warm-up (not scored) and 16 of
    # the 64 scored ones.
    reactions = [
        replace(r, labels={}) if i % 4 == 0 else r for i, r in enumerate(scenario.reactions)
    ]
    write_scenarios_jsonl([replace(scenario, reactions=reactions)], tmp_path / "s.jsonl")
    argv = ["simulate", "--scenario", f"jsonl:{tmp_path / 's.jsonl'}", "--policy", "herding"]
    argv += ["--warmup", "16", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    note = (
        "note: 16 of 64 scored real reactions have no human label; they are scored against "
        "the labeller's labels"
    )
    assert capsys.readouterr().out.count(note) == 1
    (episode,) = _lines(tmp_path / "run" / "episodes.jsonl")
    assert episode["scored_real_reactions"] == 64
    assert episode["real_labels_from_labeller"] == 16
    summary = _strict_json(tmp_path / "run" / "metrics.json")
    assert summary["scored_real_reactions"] == 64 and summary["real_labels_from_labeller"] == 16

    argv[2] = "synthetic:1"
    assert main([*argv, "--out", str(tmp_path / "human")]) == 0
    assert "no human label" not in capsys.readouterr().out
    summary = _strict_json(tmp_path / "human" / "metrics.json")
    assert summary["real_labels_from_labeller"] == 0


def test_label_source_note_counts_records_written_before_the_counts():
    from mfllm_env.simulation import label_source_note, label_source_totals

    records = [{"scored_real_reactions": 10, "real_labels_from_labeller": 0}, {"index": 1}]
    totals = label_source_totals(records)
    assert totals == {
        "scored_real_reactions": 10,
        "real_labels_from_labeller": 0,
        "episodes_without_label_sources": 1,
    }
    assert label_source_note(totals).endswith(
        "(1 episodes, recorded by an earlier version, not counted)"
    )
    assert label_source_note(label_source_totals(records[:1])) is None


@pytest.mark.parametrize(
    "seeds",
    ["\u0663", "1-\u0663", "\uff13", "\U0001d7d1", " 3", "3 ", "+3", "1_0", "3-", "-3", "0x3"],
)
def test_synthetic_seeds_are_ascii_digits_only(seeds):
    """``int`` alone takes Arabic-Indic, full-width and mathematical digits, spaces, signs
    and underscores: a spec holding any of them is refused, naming it."""
    from mfllm_env.specs import iter_spec

    with pytest.raises(ValueError, match="in ASCII digits, got " + re.escape(repr(seeds))):
        next(iter_spec(f"synthetic:{seeds}"))


def test_synthetic_seed_specs_that_are_well_formed():
    from mfllm_env.specs import iter_spec

    ids = [s.scenario_id for s in iter_spec("synthetic:007-8")]
    assert ids == [synthetic_scenario(seed=s).scenario_id for s in (7, 8)]
    assert [s.scenario_id for s in iter_spec("synthetic")] == [synthetic_scenario().scenario_id]


def test_a_spec_path_may_start_with_the_home_folder(tmp_path, monkeypatch):
    """The shell leaves ``~`` after ``jsonl:`` as it is; the spec expands it."""
    from mfllm_env.specs import iter_spec

    monkeypatch.setenv("HOME", str(tmp_path))
    write_scenarios_jsonl([synthetic_scenario(seed=3)], tmp_path / "s.jsonl")
    assert [s.scenario_id for s in iter_spec("jsonl:~/s.jsonl")] == ["synthetic/3"]


def test_a_spec_with_an_empty_selector_is_refused(rumoureval_dir):
    """``rumoureval:PATH:`` (a selector left out) would load every event."""
    from mfllm_env.specs import iter_spec

    with pytest.raises(ValueError, match="nothing after the last ':'; give an event or a split"):
        next(iter_spec(f"rumoureval:{rumoureval_dir}:"))


def test_no_progress_hides_the_model_loading_bar_too(tmp_path, tiny_model_dir, capfd):
    from transformers.utils import logging

    logging.enable_progress_bar()
    argv = ["simulate", "--policy", "state", "--model", str(tiny_model_dir), "--warmup", "16"]
    argv += ["--max-reactions", "24", "--max-new-tokens", "4", "--no-progress"]
    try:
        assert main([*argv, "--out", str(tmp_path / "run")]) == 0
        assert "Loading weights" not in capfd.readouterr().err
    finally:
        logging.enable_progress_bar()


@pytest.mark.parametrize("command", ["simulate", "bench"])
def test_scenarios_of_two_label_dimensions_are_refused(tmp_path, capsys, command):
    """Policies and scores are built for the first scenario's label scheme: a later
    scenario labelled on another dimension was played and averaged in."""
    import dataclasses

    weibo = dataclasses.replace(
        synthetic_scenario(seed=1), scenario_id="weibo-labelled", default_label_dimension="weibo"
    )
    data = tmp_path / "mixed.jsonl"
    write_scenarios_jsonl([synthetic_scenario(seed=0), weibo], data)
    argv = [command, "--max-reactions", "24", "--warmup", "8", "--no-progress"]
    if command == "simulate":
        argv += ["--policy", "random", "--scenario", f"jsonl:{data}"]
    else:
        argv += ["--policies", "random", "--seeds", "0", "--scenarios", f"jsonl:{data}"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert (
        "scenario 'weibo-labelled' is labelled on 'weibo', the first one on 'stance': give "
        "scenarios of one label dimension"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "note"),
    [
        (
            ["--policy", "random", "--temperature", "0.5", "--k", "3"],
            "--k 3, --temperature 0.5 have no effect with --policy random (not an LLM policy)",
        ),
        (["--policy", "herding", "--model", "elsewhere"], "--model elsewhere has no effect"),
        (["--policy", "herding", "--model", ""], "--model '' has no effect"),
    ],
)
def test_options_a_policy_does_not_read_are_named_not_silently_kept(
    tmp_path, capsys, options, note
):
    argv = ["simulate", *options, "--max-reactions", "60", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert f"mfllm simulate: note: {note}" in capsys.readouterr().err
    assert main([*argv[:3], "--max-reactions", "60", "--out", str(tmp_path / "plain")]) == 0
    assert "note:" not in capsys.readouterr().err
