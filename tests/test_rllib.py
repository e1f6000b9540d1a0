"""RLlib on our envs: the README's example on a local Ray cluster (2 env runners), the
planner trainer of training.planner_rllib, and envs pickled into Ray workers re-seeding
there as they do here."""

from __future__ import annotations

import functools
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import ray

import mfllm_env
from mfllm_env.planner import PLANNER, PlannerEnv, RandomPlanner, run_planner_episode
from training.planner_rllib import RLlibPlannerConfig, build_planner_algorithm, train_iterations

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def signal_handlers_put_back():
    """``ray.init`` installs its own SIGTERM handler and ``ray.shutdown`` leaves it: put
    the handlers back, so that later tests (and their checks of ours) see the defaults."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_readme_rllib_example_runs_as_written(capsys):
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring your own RL algorithm", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "rllib" in b]
    assert len(blocks) == 1, "the README's section lost its RLlib example"
    exec(compile(blocks[0], "README-rllib-example", "exec"), {})  # starts and stops Ray
    printed = capsys.readouterr().out.split("\n")
    iterations = [line.split() for line in printed if re.match(r"[01] \d+ ", line)]
    assert [row[0] for row in iterations] == ["0", "1"]
    assert all(int(row[1]) > 0 and np.isfinite(float(row[2])) for row in iterations)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# Shipped to Ray's workers by value (a module-level function here would be pickled by
# reference to this test module, which the workers cannot import).
make_env = functools.partial(
    PlannerEnv, mfllm_env.synthetic_scenario(seed=0, n_reactions=64), every=2, budget=3
)


def test_an_env_pickled_into_a_ray_worker_reseeds_there(local_ray):
    env = make_env()
    run_planner_episode(env, RandomPlanner(env), 99)  # its generators have moved on
    play = ray.remote(run_planner_episode)  # the library's function: importable in workers
    remote = ray.get([play.remote(env, RandomPlanner(env), seed) for seed in (7, 8, 7)])
    local = [run_planner_episode(make_env(), RandomPlanner(env), seed) for seed in (7, 8)]
    assert remote[0] == remote[2] == local[0]
    assert remote[1] == local[1]
    assert local[1]["trajectory"] != local[0]["trajectory"]


def sampled(algorithm):
    """Two episodes from each remote env runner: actions and return of each."""

    def sample(runner):
        return [
            (episode.agent_episodes[PLANNER].get_actions().tolist(), episode.get_return())
            for episode in runner.sample(num_episodes=2, explore=True)
        ]

    return algorithm.env_runner_group.foreach_env_runner(sample, local_env_runner=False)


def test_rllib_trains_on_two_runners_and_samples_reproducibly(local_ray):
    config = RLlibPlannerConfig(env_runners=2, train_batch_size=128, seed=0)
    first = build_planner_algorithm(make_env, config)
    try:
        episodes = sampled(first)
    finally:
        first.stop()
    algorithm = build_planner_algorithm(make_env, config)
    try:
        assert sampled(algorithm) == episodes  # the same seed, the same episodes
        rows = train_iterations(algorithm, 2)
    finally:
        algorithm.stop()
    assert len(episodes) == 2 and all(len(runner) == 2 for runner in episodes)
    assert episodes[0] != episodes[1]  # runner w resets its env with seed + w
    assert [row["iteration"] for row in rows] == [1, 2]
    assert all(row["episodes"] > 0 and np.isfinite(row["return"]) for row in rows)


def test_rllib_config_refuses_bad_values():
    with pytest.raises(ValueError, match="env_runners must be an integer >= 0"):
        RLlibPlannerConfig(env_runners=-1)
    with pytest.raises(ValueError, match="gamma must be <= 1"):
        RLlibPlannerConfig(gamma=2.0)
    with pytest.raises(TypeError, match="make_env must be callable"):
        build_planner_algorithm(None, RLlibPlannerConfig())
