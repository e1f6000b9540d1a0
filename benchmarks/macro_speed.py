"""How fast is the macro-economy? Years (env steps) per second of ``mfllm/Macro-v0`` on one
core.

Each size plays ``--steps`` years (300 by default: one whole episode, reset if one ends
early) of :class:`~mfllm_env.games.macro.MacroEnv` in ``Box`` mode under the free-market
government, with :class:`~mfllm_env.games.macro.RuleHouseholds` acting for every
household, through the PettingZoo API: the households' policy call, the env's action
checks, the economy and the per-household observation, reward and info dicts are all
timed. For comparison it also times the economy alone (``Economy.advance`` on arrays, no
per-agent dicts). Best of ``--repeats`` runs, by wall clock and by CPU time (on a shared
machine the wall clock also counts other processes' turns).

numpy's BLAS and OpenMP pools are limited to one thread before numpy is imported, and the
process pins itself to one core. TaxAI reports 1,800 / 482 / 47 / 4 steps/s at N = 10 /
100 / 1,000 / 10,000 on one CPU thread; the target here is >= 470 at N = 1,000.

    python benchmarks/macro_speed.py [--json] [--sizes 10 100 1000 10000] [--repeats 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mfllm_env.games.macro import (  # noqa: E402
    FREE_MARKET_ACTION,
    Economy,
    EconomyParameters,
    HSVPolicy,
    MacroEnv,
    RuleHouseholds,
    synthetic_population,
)

TAXAI_STEPS_PER_S = {10: 1800, 100: 482, 1000: 47, 10000: 4}
"""The simulator speed TaxAI (the simulator the macro game builds on) reports on one CPU
thread, steps per second by number of households: the anchor."""


def time_env(n: int, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``steps`` years of the env with rule households."""
    env = MacroEnv(n)
    households = RuleHouseholds()
    observations, _ = env.reset(seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        if not env.agents:
            observations, _ = env.reset()
        observations, *_ = env.step(households.act(observations))
    return time.perf_counter() - wall, time.process_time() - cpu


def time_economy(n: int, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``steps`` years of the economy alone (arrays in, arrays
    out), at the rule households' shares."""
    parameters = EconomyParameters()
    rng = np.random.default_rng(0)
    economy = Economy(parameters)
    population = synthetic_population(n, rng, parameters)
    policy = HSVPolicy.from_action(FREE_MARKET_ACTION)
    rule = RuleHouseholds()
    saving, labour = np.full(n, rule.saving_share), np.full(n, rule.labour_share)
    economy.start(population, rng)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        if economy.advance(saving, labour, policy, rng).ended:
            economy.start(population, rng)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(n: int, steps: int, repeats: int) -> dict:
    env_runs = [time_env(n, steps) for _ in range(repeats)]
    economy_runs = [time_economy(n, steps) for _ in range(repeats)]
    env_wall, env_cpu = min(r[0] for r in env_runs), min(r[1] for r in env_runs)
    eco_wall, eco_cpu = min(r[0] for r in economy_runs), min(r[1] for r in economy_runs)
    return {
        "households": n,
        "steps": steps,
        "env_steps_per_s": steps / env_wall,
        "env_steps_per_cpu_s": steps / env_cpu,
        "economy_steps_per_s": steps / eco_wall,
        "economy_steps_per_cpu_s": steps / eco_cpu,
        "taxai_steps_per_s": TAXAI_STEPS_PER_S.get(n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--steps", type=int, default=300, help="years timed per run")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    time_env(10, 5)  # imports and first calls outside the timed runs
    rows = [measure(n, args.steps, args.repeats) for n in args.sizes]
    result = {"cores": 1, "threads": 1, "government": "free_market", "runs": rows}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print("Macro-v0 speed, one core, one thread: years (env steps) per second")
    for r in rows:
        taxai = r["taxai_steps_per_s"]
        print(
            f"  N = {r['households']:>6,d}: env {r['env_steps_per_s']:>8,.0f}/s "
            f"({r['env_steps_per_cpu_s']:,.0f} per CPU-s), economy alone "
            f"{r['economy_steps_per_s']:>8,.0f}/s" + (f", TaxAI {taxai:,}/s" if taxai else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
