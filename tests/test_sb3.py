"""Stable-Baselines3 + SuperSuit on our envs: the README's example, the PPO planner trainer
(run folder, resume), ``mfllm train planner --method ppo`` and ``planner-eval ppo=``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import mfllm_env
from mfllm_cli.main import main
from mfllm_env.planner import PlannerEnv, run_planner_episode
from training.planner_sb3 import PPOPlannerConfig, SB3Planner, train_ppo_planner

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> str:
    """The python block of the README's "Bring your own RL algorithm" section that
    contains ``marker``."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring your own RL algorithm", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if marker in b]
    assert len(blocks) == 1, f"the README's section lost its example with {marker!r}"
    return blocks[0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_readme_sb3_example_trains_on_every_env():
    code = readme_block("stable_baselines3")
    code, count = re.subn(r"^timesteps = [\d_]+", "timesteps = 256", code, flags=re.M)
    assert count == 1, "the example's timesteps variable is gone"
    namespace: dict = {}
    exec(compile(code, "README-sb3-example", "exec"), namespace)
    assert namespace["planner"].num_timesteps >= 256
    assert namespace["government"].num_timesteps >= 256


@pytest.fixture(scope="module")
def scenarios():
    return [mfllm_env.synthetic_scenario(seed=i, n_reactions=64) for i in range(2)]


def small_config(**changes) -> PPOPlannerConfig:
    options = dict(updates=4, rollout_steps=8, batch_size=16, epochs=2, hidden=8, save_steps=2)
    return PPOPlannerConfig(**{**options, **changes})


def weights(path: Path) -> list[torch.Tensor]:
    from stable_baselines3 import PPO

    return list(PPO.load(path, device="cpu").policy.parameters())


def test_a_resumed_ppo_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, scenarios):
    def make_env(i):
        return PlannerEnv(scenarios[i], every=2, budget=3)

    whole = train_ppo_planner(make_env, 2, small_config(), tmp_path / "a", progress=False)
    assert whole["timesteps"] == 4 * 8 * 2
    train_ppo_planner(make_env, 2, small_config(updates=2), tmp_path / "b", progress=False)
    resumed = train_ppo_planner(
        make_env, 2, small_config(), tmp_path / "b", resume=True, progress=False
    )
    assert resumed["resumed_from"] == 2
    a, b = weights(tmp_path / "a" / "planner.zip"), weights(tmp_path / "b" / "planner.zip")
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    other = train_ppo_planner(
        make_env, 2, small_config(seed=1), tmp_path / "c", progress=False
    )  # another seed, other weights: the comparison above can fail
    c = weights(tmp_path / "c" / "planner.zip")
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    assert other["updates"] == 4
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]  # each update once
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == [
        "step-2.zip",
        "step-4.zip",
    ]


def test_sb3_planner_plays_and_refuses_another_env(tmp_path, scenarios):
    def make_env(i):
        return PlannerEnv(scenarios[i], every=2, budget=3)

    train_ppo_planner(make_env, 1, small_config(updates=1), tmp_path, progress=False)
    env = make_env(0)
    planner = SB3Planner.load(tmp_path / "planner.zip", env)
    record = run_planner_episode(env, planner, seed=0)
    assert record["decisions"] == env.num_decisions
    assert record == run_planner_episode(env, planner, seed=0)  # deterministic
    with pytest.raises(ValueError, match="observes"):
        SB3Planner.load(tmp_path / "planner.zip", PlannerEnv(scenarios[0], every=1))
    with pytest.raises(ValueError, match="no such file"):
        SB3Planner.load(tmp_path / "missing.zip", env)
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="not a zip file"):
        SB3Planner.load(tmp_path / "bad.zip", env)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"updates": 0}, "updates must be an integer >= 1"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"gamma": 1.5}, "gamma must be <= 1"),
        ({"rollout_steps": 1}, "rollout_steps must be an integer >= 2"),
    ],
)
def test_ppo_config_refuses_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        small_config(**changes)


def test_cli_trains_resumes_and_evaluates_a_ppo_planner(tmp_path):
    out = tmp_path / "ppo"
    argv = [
        "train", "planner", "--method", "ppo", "--scenarios", "synthetic:0-1", "--horizon",
        "32", "--rollout-steps", "8", "--save-steps", "2", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main([*argv, "--max-steps", "2"]) == 0
    assert main([*argv, "--max-steps", "3", "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "ppo" and summary["resumed_from"] == 2
    assert {"config.json", "log.jsonl", "planner.zip", "report.png"} <= {
        p.name for p in out.iterdir()
    }
    assert main([*argv, "--max-steps", "3"]) == 2  # the folder holds a run: not overwritten
    evaluation = tmp_path / "eval"
    eval_argv = [
        "planner-eval", "--scenarios", "synthetic:100-101", "--horizon", "32", "--seeds",
        "0,1", "--no-progress", "--out", str(evaluation),
    ]  # fmt: skip
    assert main([*eval_argv, "--planners", f"threshold,ppo={out / 'planner.zip'}"]) == 0
    results = json.loads((evaluation / "results.json").read_text())
    ppo = results[f"ppo={out / 'planner.zip'}"]
    assert ppo["episodes"] == 4 and np.isfinite(ppo["return"]["mean"])
    assert "ppo (trained)" in (evaluation / "results.md").read_text()
    bad = [*eval_argv[:-1], str(tmp_path / "bad-eval")]
    assert main([*bad, "--planners", f"ppo={out / 'log.jsonl'}"]) == 2
    assert main([*bad, "--planners", f"ppo={tmp_path / 'none.zip'}"]) == 2
