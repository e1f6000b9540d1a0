"""How fast is the environment itself? Agent-steps per second on one core.

The environment must never be the bottleneck next to an LLM. This script steps
:class:`~mfllm_env.PopulationEnv` over synthetic scenarios of 10,000 (and, for the
linearity check, 100,000) reactions at 16 agents per step, in two modes:

- ``label``: ``Discrete`` actions (random label ids drawn up front);
- ``text``: string actions, labelled by the default SDQC labeller, with the default
  histogram mean field; the texts are real RumourEval posts, shuffled (the synthetic
  scenario's own texts where the data is absent -- then the texts are less varied).

It pins itself to one core and prints agent-steps per second for each mode and size (best
of ``--repeats`` runs, by wall clock and by CPU time: on a shared machine the wall clock
also counts other processes' turns) and the wall-time ratio between the two sizes (linear
growth means ~10x for 10x the reactions).

    python benchmarks/env_speed.py [--json] [--sizes 10000 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mfllm_env import PopulationEnv, synthetic_scenario
from mfllm_env.labelers import default_labeler
from mfllm_env.loaders import load_scenarios

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def text_pool(data_dir: Path) -> tuple[list[str], str]:
    """Real RumourEval post texts if the data is there, else ``([], reason)``."""
    path = data_dir / "rumoureval2019" / "rumoureval-2019-training-data"
    if not path.exists():
        return [], f"no RumourEval data at {path}"
    texts = [r.text for s in load_scenarios("rumoureval", path) for r in (s.source, *s.reactions)]
    return texts, f"{len(texts)} real RumourEval posts"


def run_once(env: PopulationEnv, actions: list) -> tuple[float, float]:
    """Wall and CPU seconds to play one whole episode with pre-drawn actions (policy cost
    excluded). CPU time leaves out what other processes of a shared machine take."""
    env.reset(seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    cursor = 0
    while env.agents:
        agents = env.agents
        env.step(dict(zip(agents, actions[cursor : cursor + len(agents)], strict=True)))
        cursor += len(agents)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(mode: str, n: int, pool: list[str], repeats: int, agents_per_step: int) -> dict:
    scenario = synthetic_scenario(seed=0, n_reactions=n, n_users=max(1, n // 3))
    rng = np.random.default_rng(0)
    if mode == "label":
        actions: list = rng.integers(0, 4, size=n).tolist()
    else:
        source = pool or [r.text for r in scenario.reactions]
        actions = [source[i] for i in rng.integers(0, len(source), size=n)]
    env = PopulationEnv(scenario, action_mode=mode, agents_per_step=agents_per_step, warmup=50)
    runs = [run_once(env, actions) for _ in range(repeats)]
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    return {
        "mode": mode,
        "reactions": n,
        "seconds": wall,
        "cpu_seconds": cpu,
        "agent_steps_per_s": n / wall,
        "agent_steps_per_cpu_s": n / cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    parser.add_argument("--agents-per-step", type=int, default=16)
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MFLLM_DATA", DEFAULT_DATA))
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    default_labeler("stance")  # load the labeller outside the timed region
    pool, pool_note = text_pool(args.data)
    rows = [
        measure(mode, n, pool, args.repeats, args.agents_per_step)
        for mode in ("label", "text")
        for n in args.sizes
    ]
    small, large = args.sizes
    ratios = {
        mode: next(r["seconds"] for r in rows if r["mode"] == mode and r["reactions"] == large)
        / next(r["seconds"] for r in rows if r["mode"] == mode and r["reactions"] == small)
        for mode in ("label", "text")
    }
    result = {
        "agents_per_step": args.agents_per_step,
        "cores": 1,
        "text_actions": pool_note,
        "runs": rows,
        "time_ratio": {mode: ratio for mode, ratio in ratios.items()},
        "size_ratio": large / small,
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"PopulationEnv speed, one core, {args.agents_per_step} agents per step")
    print(f"text actions: {pool_note}")
    for r in rows:
        rate, cpu_rate = r["agent_steps_per_s"], r["agent_steps_per_cpu_s"]
        print(
            f"  {r['mode']:5s} {r['reactions']:>7d} reactions: {rate:>9,.0f} agent-steps/s "
            f"(wall), {cpu_rate:>9,.0f} per CPU-second"
        )
    for mode, ratio in ratios.items():
        print(f"  {mode:5s} time ratio for {large / small:.0f}x the reactions: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
