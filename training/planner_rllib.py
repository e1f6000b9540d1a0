"""The intervention planner by RLlib PPO on a Ray cluster (the ``ray`` extra).

RLlib steps environments in remote *env runners* (one process each, on any machine of the
cluster) and learns in the driver. Each runner builds its env from the creator registered
here: ``make_env()`` (a picklable callable that returns a PettingZoo parallel planner env,
shipped to the runners by Ray), wrapped in
:class:`~mfllm_env.wrappers.FlattenObservations` and RLlib's ``ParallelPettingZooEnv``.
One policy, ``"planner"``, acts for the planner agent. With ``seed`` set, runner ``w``
resets its env with ``seed + w`` once; later episodes continue that env's seeded stream,
so the same seed samples the same episodes (tested).

On one machine, ``ray.init(num_cpus=...)`` before :func:`build_planner_algorithm` starts a
local cluster. On several: ``ray start --head --port=6379`` on one machine, ``ray start
--address=HEAD_IP:6379`` on each of the others (the same Python environment and this
package installed on all), then ``ray.init(address="auto")`` in the driver and
``env_runners`` up to the cluster's CPUs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from training.run_folder import check_config

ENV_NAME = "mfllm_planner"
POLICY = "planner"


@dataclass
class RLlibPlannerConfig:
    env_runners: int = field(default=2, metadata={"help": "remote env runner processes"})
    train_batch_size: int = field(default=256, metadata={"help": "decisions per iteration"})
    minibatch_size: int = 64
    epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 1.0
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(
            self,
            counts={
                "env_runners": 0,
                "train_batch_size": 2,
                "minibatch_size": 2,
                "epochs": 1,
                "hidden": 1,
            },
            positive=("learning_rate",),
            non_negative=("gamma",),
        )
        if self.gamma > 1:
            raise ValueError(f"RLlibPlannerConfig.gamma must be <= 1, got {self.gamma!r}")


def rllib_env(env_config: Any) -> Any:
    """The env creator RLlib calls in each runner: ``env_config["make_env"]()``, its
    observations flattened, as an RLlib multi-agent env."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    from mfllm_env.wrappers import FlattenObservations

    return ParallelPettingZooEnv(FlattenObservations(env_config["make_env"]()))


def build_planner_algorithm(make_env: Callable[[], Any], config: RLlibPlannerConfig) -> Any:
    """An RLlib PPO algorithm (new API stack) over the planner env ``make_env()`` with
    ``config.env_runners`` remote runners; Ray must be initialised (``ray.init``)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    if not callable(make_env):
        raise TypeError(f"make_env must be callable, got {type(make_env).__name__}")
    register_env(ENV_NAME, rllib_env)
    ppo = (
        PPOConfig()
        .environment(ENV_NAME, env_config={"make_env": make_env})
        .multi_agent(
            policies={POLICY},
            policy_mapping_fn=lambda agent_id, episode, **kwargs: POLICY,
        )
        .env_runners(num_env_runners=config.env_runners, num_envs_per_env_runner=1)
        .training(
            train_batch_size_per_learner=config.train_batch_size,
            minibatch_size=config.minibatch_size,
            num_epochs=config.epochs,
            lr=config.learning_rate,
            gamma=config.gamma,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[config.hidden] * 2))
        .debugging(seed=config.seed)
    )
    return ppo.build_algo()


def train_iterations(algorithm: Any, iterations: int) -> list[dict[str, Any]]:
    """``iterations`` calls of ``algorithm.train()``; per iteration, the episodes sampled,
    their mean return and the seconds it took."""
    import time

    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN, NUM_EPISODES

    rows = []
    for iteration in range(iterations):
        started = time.perf_counter()
        result = algorithm.train()
        runners = result.get(ENV_RUNNER_RESULTS, {})
        rows.append(
            {
                "iteration": iteration + 1,
                "episodes": int(runners.get(NUM_EPISODES, 0)),
                "return": runners.get(EPISODE_RETURN_MEAN),
                "seconds": time.perf_counter() - started,
            }
        )
    return rows
