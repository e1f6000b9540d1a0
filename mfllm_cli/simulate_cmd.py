"""``mfllm simulate``: run a policy on scenarios and write a run folder with its report."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from functools import partial
from itertools import chain
from pathlib import Path

from agents.baselines import ClassifierPolicy, HerdingPolicy, UniformRandomPolicy, collect_examples
from mfllm_cli.specs import iter_spec, path_and_selector
from mfllm_env.labels import LabelScheme, scheme_for
from mfllm_env.population_env import PopulationEnv
from mfllm_env.scenario import Scenario
from mfllm_env.simulation import EpisodeSkippedWarning, Policy, simulate

POLICIES = ("random", "herding", "state-classifier", "mf-classifier")
SYNTHETIC_FIT_SEEDS = range(1000, 1020)
FIT_DEFAULTS = ("synthetic", "rumoureval")  # sources whose classifiers have a default --fit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a population on scenarios and report its fidelity",
        description="Run a policy on every scenario of --scenario and write trajectory.jsonl, "
        "episodes.jsonl, metrics.json and shares.png into --out.",
    )
    parser.add_argument(
        "--scenario",
        default="synthetic",
        help="synthetic[:SEED|:FIRST-LAST] | rumoureval:PATH[:EVENT|:SPLIT] | ced:PATH | "
        "rumdect:PATH | jsonl:PATH (default: synthetic)",
    )
    parser.add_argument("--policy", choices=POLICIES, default="mf-classifier")
    parser.add_argument(
        "--fit",
        help="scenarios the classifier policies are fitted on (default: 20 other synthetic "
        "seeds for synthetic, the train split for rumoureval)",
    )
    parser.add_argument("--out", required=True, type=Path, help="run folder to write")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of episode 0's policy (episode e: seed+e)"
    )
    parser.add_argument(
        "--warmup", type=int, default=50, help="real reactions that drive the mean field"
    )
    parser.add_argument("--agents-per-step", type=int, default=16)
    parser.add_argument("--max-reactions", type=int, help="cut each episode to this many reactions")
    parser.add_argument("--limit", type=int, help="simulate at most this many episodes")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def fit_scenarios(
    args: argparse.Namespace, evaluated: list[Scenario]
) -> tuple[list[Scenario], str]:
    """The scenarios classifier policies are fitted on, and a description of them.

    Any fit scenario that shares a reaction with an evaluated one is left out, so that a
    policy is never scored on reactions it was fitted on (for RumourEval events, the
    default fit is the train split less the evaluated events: leave-event-out).
    """
    if args.fit:
        fitted, described = list(iter_spec(args.fit)), args.fit
    else:
        source, _, rest = args.scenario.partition(":")
        if source == "synthetic":
            seeds = SYNTHETIC_FIT_SEEDS
            described = f"synthetic:{seeds.start}-{seeds.stop - 1}"
        else:  # rumoureval (run() checked there is a default)
            described = f"rumoureval:{path_and_selector(rest)[0]}:train"
        fitted = list(iter_spec(described))
    seen = {r.reaction_id for scenario in evaluated for r in scenario.reactions}
    kept = [s for s in fitted if seen.isdisjoint(r.reaction_id for r in s.reactions)]
    if len(kept) < len(fitted):
        left_out = len(fitted) - len(kept)
        described += f", less {left_out} scenario(s) sharing reactions with the evaluated ones"
    if not kept:
        raise ValueError(f"nothing left to fit on: every scenario of {described!r} is evaluated")
    return kept, described


def build_policy(
    args: argparse.Namespace, scheme: LabelScheme, env_options: dict, evaluated: list[Scenario]
) -> Policy:
    if args.policy == "random":
        return UniformRandomPolicy(scheme, seed=args.seed)
    if args.policy == "herding":
        return HerdingPolicy()
    features = "state" if args.policy == "state-classifier" else "state+mean_field"
    fitted, described = fit_scenarios(args, evaluated)
    examples = collect_examples(fitted, **env_options)
    print(
        f"fitted {args.policy} on {len(examples.labels)} reactions ({described})", file=sys.stderr
    )
    return ClassifierPolicy(scheme, features, seed=args.seed).fit(examples)


def run(args: argparse.Namespace) -> int:
    source = args.scenario.partition(":")[0]
    needs_fit = args.policy.endswith("classifier")
    if needs_fit and not args.fit and source not in FIT_DEFAULTS:
        raise ValueError(f"classifier policies need --fit SPEC for {source!r} scenarios")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    # Stream the scenarios (a whole CED archive need not fit in memory), except where the
    # fit must know them all to leave them out.
    stream = iter_spec(args.scenario, limit=args.limit)
    evaluated = list(stream) if needs_fit else [next(stream)]
    scenarios = evaluated if needs_fit else chain(evaluated, stream)
    env_options = {"agents_per_step": args.agents_per_step, "max_reactions": args.max_reactions}
    scheme = scheme_for(evaluated[0].default_label_dimension)
    policy = build_policy(args, scheme, env_options, evaluated)
    make_env: Callable[[Scenario], PopulationEnv] = partial(
        PopulationEnv, warmup=args.warmup, action_mode=policy.action_mode, **env_options
    )
    config = {**vars(args), "func": None, "out": str(args.out), "label_scheme": scheme.name}
    with warnings.catch_warnings():
        # Reported below in the command's own words.
        warnings.simplefilter("ignore", EpisodeSkippedWarning)
        summary = simulate(
            scenarios,
            make_env,
            policy,
            args.out,
            seed=args.seed,
            config=config,
            progress=not args.no_progress,
        )
    if summary["skipped"]:
        print(f"skipped {summary['skipped']} episode(s) shorter than the warm-up ({args.warmup})")
    episodes = summary["episodes"]
    if episodes == 1:
        print(f"1 episode, policy {args.policy}:")
    else:
        print(f"{episodes} episodes, policy {args.policy}; mean ± standard error over episodes:")
    for name, stats in summary["metrics"].items():
        spread = f" ± {stats['stderr']:.4f}" if episodes > 1 else ""
        print(f"  {name:18s} {stats['mean']:.4f}{spread}")
    files = "config.json, trajectory.jsonl, episodes.jsonl, metrics.json, shares.png"
    print(f"wrote {args.out}/ ({files})")
    return 0
