"""``mfllm bench``: every policy on every episode under every seed, and a leaderboard.

The command parses its flags, fills them from a preset and the defaults, and runs
:func:`agents.bench.run_bench` (the pipeline and the folder it writes:
:mod:`mfllm_env.bench_pipeline`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from agents.bench import run_bench
from mfllm_cli.arg_types import (
    BOOTSTRAP_MAX,
    adapter_folder,
    bootstrap_resamples,
    float_in,
    given_path,
    positive_int,
    positive_int_list,
    seed_list,
)
from mfllm_cli.simulate_cmd import (
    MEAN_FIELDS,
    RUN_DEFAULTS,
    add_episode_arguments,
    check_episode_options,
)
from mfllm_env.bench_pipeline import BENCH_POLICIES, NON_LLM, BenchConfig
from mfllm_env.benchmark import LEADERBOARD_METRICS, markdown_table
from mfllm_env.runs import RunFolder
from mfllm_env.specs import has_fit_set

PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a 2-core CPU: two short synthetic episodes, two seeds, small generations,
    # the LLM policies' NLL of the real reactions.
    "ci": {
        "scenarios": "synthetic:0-1",
        "policies": "random,herding,state-classifier,mf-classifier,state,mf,real-texts",
        "seeds": [0, 1],
        "warmup": 16,
        "max_reactions": 48,
        "agents_per_step": 8,
        "max_new_tokens": 12,
        "summary_tokens": 32,
        "horizons": [8, 16, 32],
        "nll": True,
    },
    # Every policy (sft and mf-ib-tune when their adapters are given), ten synthetic
    # episodes at the simulation's defaults, three seeds; README "Benchmarks" says how long.
    "full": {
        "scenarios": "synthetic:0-9",
        "policies": ",".join(BENCH_POLICIES),
        "seeds": [0, 1, 2],
        "horizons": [16, 32, 64, 128],
    },
}
BENCH_DEFAULTS = {
    **RUN_DEFAULTS,
    "parallel": 1,
    "horizons": [16, 32, 64],
    "samples_per_agent": 1,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark policies against real events: a leaderboard with error bars",
        description="Play every policy of --policies on every episode of --scenarios under "
        "every seed of --seeds, with the same warm-up, and write per-episode records, a "
        "leaderboard (markdown, CSV, JSON) and plots into --out. Naive forecasters (the "
        "warm-up's shares carried forward; the training data's shares) are scored beside "
        "the policies. Flags left unset take the preset's value, else mfllm simulate's "
        "default, except --parallel (1: each episode's result depends only on its seeds).",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="ci: minutes on a 2-core CPU (synthetic:0-1, the non-LLM policies, state, mf "
        "and real-texts, 2 seeds, 48-reaction episodes, --nll); full: every policy, synthetic:0-9, "
        "3 seeds, the simulation's defaults. Flags given explicitly override the preset",
    )
    parser.add_argument("--scenarios", help="scenario spec, as mfllm simulate --scenario")
    parser.add_argument(
        "--policies",
        help=f"comma-separated, from {', '.join(BENCH_POLICIES)}; sft needs --sft-adapter, "
        "mf-ib-tune needs --ib-tune; real-texts posts the real reactions, so its score is the "
        "labeller's own error: the ceiling of any policy",
    )
    parser.add_argument(
        "--seeds", type=seed_list, help="comma-separated distinct seeds, e.g. 0,1,2 (0 .. 2**32-1)"
    )
    parser.add_argument("--out", required=True, type=given_path, help="bench folder")
    parser.add_argument("--resume", action="store_true", help="continue an existing folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="remove what --out holds and bench afresh"
    )
    parser.add_argument(
        "--forecast",
        type=float_in(0, 100, low_open=True, high_open=True),
        metavar="PCT",
        help="trend forecasting: warm up on the first PCT%% of each episode (instead of "
        "--warmup reactions) and forecast the rest",
    )
    parser.add_argument(
        "--horizons",
        type=positive_int_list,
        help="rollout lengths (reactions after warm-up) at which to report the KL, e.g. "
        "16,32,64 (episodes with shorter rollouts do not count at that horizon)",
    )
    parser.add_argument(
        "--mean-field",
        choices=MEAN_FIELDS,
        help="the mean field of the mf policy (default llm)",
    )
    parser.add_argument("--sft-adapter", type=adapter_folder, help="adapter of the sft policy")
    parser.add_argument(
        "--ib-tune",
        type=Path,
        help="an mfllm train ib-tune folder: mf-ib-tune uses its adapters/policy and "
        "adapters/mean_field",
    )
    parser.add_argument(
        "--samples-per-agent",
        type=positive_int,
        metavar="K",
        help="LLM policies: draw K completions per agent in the step's one batched call, "
        "label all K (their histogram is the agent's label distribution, scored as "
        "kl_expected) and act with one of them, drawn with the episode's seed (default 1: "
        "one completion, no distribution; classifiers always report their probabilities)",
    )
    parser.add_argument(
        "--min-reactions",
        type=positive_int,
        metavar="N",
        help="play only the episodes of --scenarios with at least N reactions (counted "
        "before --max-reactions; --limit counts the episodes kept)",
    )
    parser.add_argument(
        "--bootstrap",
        type=bootstrap_resamples,
        default=2000,
        help=f"bootstrap resamples per comparison (at most {BOOTSTRAP_MAX:,})",
    )
    add_episode_arguments(parser, {})
    parser.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill what the user left out from the preset, then from the defaults, and refuse
    what contradicts itself before any work (each value was checked as it was parsed);
    sets ``policy_list``, ``seed_list`` and ``horizon_list``."""
    if args.forecast is not None and args.warmup is not None:
        raise ValueError("--forecast sets the warm-up as a share of each episode: drop --warmup")
    preset = PRESETS.get(args.preset, {})
    for name, value in {**BENCH_DEFAULTS, **preset}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    for name in ("scenarios", "policies", "seeds"):
        if getattr(args, name) is None:
            raise ValueError(f"--{name} is required without a --preset")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in BENCH_POLICIES]
    if unknown or not policies or len(set(policies)) != len(policies):
        raise ValueError(
            f"--policies must list distinct names from {', '.join(BENCH_POLICIES)}; "
            f"got {args.policies!r}"
        )
    explicit = args.preset is None or args.policies != preset.get("policies")
    source = args.scenarios.partition(":")[0]
    fit_flag = None if has_fit_set(args.scenarios, args.fit) else f"--fit SPEC for {source!r}"
    missing = {
        "sft": None if args.sft_adapter else "--sft-adapter DIR",
        "mf-ib-tune": None if args.ib_tune else "--ib-tune DIR",
        "state-classifier": fit_flag,
        "mf-classifier": fit_flag,
    }
    for policy, flag in missing.items():
        if policy in policies and flag is not None:
            if explicit:
                raise ValueError(f"policy {policy} needs {flag}")
            policies.remove(policy)
            print(f"preset {args.preset}: left out {policy} (no {flag})", file=sys.stderr)
    if args.ib_tune is not None:
        for part in ("policy", "mean_field"):
            if not (args.ib_tune / "adapters" / part).is_dir():
                raise FileNotFoundError(f"--ib-tune: no adapters/{part} in {args.ib_tune}")
    args.policy_list = policies
    args.seed_list, args.horizon_list = args.seeds, args.horizons
    check_episode_options(args)
    return args


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` of resolved ``args`` (:func:`resolve`)."""
    names = {f.name for f in fields(BenchConfig)} - {"policies", "seeds", "horizons"}
    return BenchConfig(
        **{name: getattr(args, name) for name in names if hasattr(args, name)},
        policies=args.policy_list,
        seeds=args.seed_list,
        horizons=args.horizon_list,
        progress=not args.no_progress,
        argv=sys.argv[1:],
    )


def run(args: argparse.Namespace) -> int:
    folder = RunFolder(args.out, "bench", resume=args.resume, overwrite=args.overwrite)
    config = bench_config(resolve(args))
    if args.no_progress and any(p not in NON_LLM for p in config.policies):
        from training.run_folder import hide_progress_bars  # transformers' loading bars

        hide_progress_bars()
    table, note = run_bench(config, folder)
    printed = ("kl", "kl_pooled", "kl_expected", "kl_mean_over_time", "dtw")
    print(markdown_table(table, [(k, t) for k, t, _ in LEADERBOARD_METRICS if k in printed]))
    if note:
        print(f"note: {note}")
    print(f"wrote {args.out}/ (episodes.jsonl, leaderboard.md/.csv/.json, timing.json, "
          "kl_by_policy.png, horizons.png, trajectories/)")  # fmt: skip
    return 0
