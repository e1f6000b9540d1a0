"""Does RLlib's planner training scale with env runners? Episodes per second of
``mfllm/Planner-v0`` (synthetic population) with 1, 2, ... remote env runners.

For each runner count an RLlib PPO algorithm (:func:`training.planner_rllib.
build_planner_algorithm`) is built on a local Ray cluster of ``--cpus`` CPUs and timed two
ways, after one warm-up iteration:

- **sampling**: ``--episodes`` episodes split evenly over the runners, which sample them
  in parallel with the current policy (``EnvRunner.sample(num_episodes=...)``);
  episodes / wall-clock second;
- **training**: ``--iterations`` calls of ``algorithm.train()`` (sampling
  ``--batch`` decisions, then PPO's update in the driver); episodes sampled / second.

Every process uses one torch thread. On a machine of 2 cores, 2 runners can at best
double the sampling rate, and the driver's learner shares the cores with them.

    python benchmarks/rllib_scaling.py [--runners 1 2] [--cpus 2] [--json]

On a multi-node cluster (``ray start --head --port=6379`` on one machine, ``ray start
--address=HEAD_IP:6379`` on the others) pass ``--address auto`` and larger ``--runners``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import functools
import json
import time
from typing import Any

import mfllm_env
from mfllm_env.planner import PlannerEnv
from training.planner_rllib import RLlibPlannerConfig, build_planner_algorithm


def measure(runners: int, args: argparse.Namespace) -> dict[str, Any]:
    """Sampling and training rates of an algorithm with ``runners`` env runners."""
    make_env = functools.partial(
        PlannerEnv,
        mfllm_env.synthetic_scenario(seed=0, n_reactions=args.reactions),
        every=2,
        budget=3,
    )
    config = RLlibPlannerConfig(env_runners=runners, train_batch_size=args.batch, seed=0)
    algorithm = build_planner_algorithm(make_env, config)
    try:
        algorithm.train()  # warm-up: workers started, first weights synced
        group = algorithm.env_runner_group
        share = -(-args.episodes // runners)
        started = time.perf_counter()
        sampled = group.foreach_env_runner(
            lambda runner: len(runner.sample(num_episodes=share, explore=True)),
            local_env_runner=False,
        )
        sampling_seconds = time.perf_counter() - started
        episodes = 0
        started = time.perf_counter()
        for _ in range(args.iterations):
            result = algorithm.train()
            episodes += int(result["env_runners"]["num_episodes"])
        training_seconds = time.perf_counter() - started
    finally:
        algorithm.stop()
    return {
        "runners": runners,
        "sampled_episodes": int(sum(sampled)),
        "sampling_seconds": sampling_seconds,
        "sampling_episodes_per_s": sum(sampled) / sampling_seconds,
        "training_episodes": episodes,
        "training_seconds": training_seconds,
        "training_episodes_per_s": episodes / training_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runners", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--address", help="an existing cluster (auto: the one started here)")
    parser.add_argument("--episodes", type=int, default=96, help="episodes sampled, in all")
    parser.add_argument("--iterations", type=int, default=3, help="timed training iterations")
    parser.add_argument("--batch", type=int, default=512, help="decisions per iteration")
    parser.add_argument("--reactions", type=int, default=112, help="reactions per episode")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args()
    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for runners in args.runners:
            row = measure(runners, args)
            rows.append(row)
            if args.json:
                print(json.dumps(row))
    finally:
        ray.shutdown()
    if not args.json:
        print("| env runners | sampling episodes/s | training episodes/s |")
        print("|---|---|---|")
        for row in rows:
            print(
                f"| {row['runners']} | {row['sampling_episodes_per_s']:.1f} "
                f"({row['sampled_episodes']} in {row['sampling_seconds']:.1f} s) | "
                f"{row['training_episodes_per_s']:.1f} ({row['training_episodes']} in "
                f"{row['training_seconds']:.1f} s) |"
            )


if __name__ == "__main__":
    main()
