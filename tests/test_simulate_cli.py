"""``mfllm simulate`` and the run folder it writes."""

from __future__ import annotations

import json
from functools import partial

import pytest

from agents.baselines import HerdingPolicy
from mfllm_cli.main import main
from mfllm_env import PopulationEnv, synthetic_scenario
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


def test_interrupted_run_keeps_finished_steps(tmp_path):
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
    assert (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "nosuch:x", "--policy", "herding"], "unknown scenario source"),
        (["--scenario", "synthetic:abc", "--policy", "herding"], "integer"),
        (["--scenario", "jsonl:/does/not/exist.jsonl", "--policy", "herding"], "no such file"),
        (["--scenario", "ced:/tmp", "--policy", "mf-classifier"], "--fit"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, argv, message):
    code = main(["simulate", "--out", str(tmp_path / "run"), "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
