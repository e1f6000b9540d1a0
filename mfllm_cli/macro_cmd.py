"""The macro-economy on the command line: ``mfllm macro-train`` (mean-field RL households
and a government, :func:`training.macro.train_macro`) and ``mfllm macro-eval``
(governments x household populations, :func:`training.macro_eval.evaluate_macro`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mfllm_cli.arg_types import (
    float_in,
    given_path,
    int_in,
    positive_float,
    positive_int,
    seed,
    seed_list,
    thread_count,
)
from mfllm_env.registry import family
from mfllm_env.runs import RunFolder

TRAIN_RESULTS = ("log.jsonl", "checkpoints")
TRAIN_COUNTS = ("warmup_iterations", "rounds", "leader_iterations", "follower_iterations")
TRAIN_OPTIONS = (
    "mode",
    "households",
    "horizon",
    *TRAIN_COUNTS,
    "episodes_per_iteration",
    "leader_reward",
    "gamma",
    "household_learning_rate",
    "leader_learning_rate",
    "seed",
)
EVAL_RESULTS = ("episodes.jsonl",)


def trained_run(text: str) -> tuple[str, Path]:
    """``LABEL=RUN_FOLDER``."""
    label, equals, folder = text.partition("=")
    if not equals or not label.strip() or not folder.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=RUN_FOLDER, got {text!r}")
    return label.strip(), Path(folder)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """How a command runs: torch threads and what to do with an existing run folder."""
    parser.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "macro-train",
        help="train mean-field RL households and a government on the macro-economy",
        description="Mean-field RL households, then leader/follower rounds (Stackelberg, "
        "or an ablation: simultaneous moves, no mean field), PPO on one core. Options left "
        "out take training.macro.MacroTrainConfig's defaults.",
    )
    train.add_argument("--out", type=given_path, required=True, help="run folder")
    train.add_argument(
        "--mode",
        help="stackelberg (default); the ablations: simultaneous, no_mean_field, "
        "simultaneous_no_mean_field",
    )
    train.add_argument("--households", type=int_in(10, 100_000))
    train.add_argument("--horizon", type=positive_int, help="years per training episode")
    for name in TRAIN_COUNTS:
        train.add_argument("--" + name.replace("_", "-"), type=int_in(0))
    train.add_argument("--episodes-per-iteration", type=positive_int)
    train.add_argument("--leader-reward", help="gdp (default), gini, social_welfare, gdp_gini")
    train.add_argument("--gamma", type=float_in(0, 1))
    train.add_argument("--household-learning-rate", type=positive_float)
    train.add_argument("--leader-learning-rate", type=positive_float)
    train.add_argument("--seed", type=seed)
    _add_run_options(train)
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "macro-eval",
        help="governments x household populations on the macro-economy, into a table",
        description="Baseline governments (free market, Saez, US federal 2022) against rule "
        "and RL households, trained governments against their own households and the rule "
        "ones, optionally LLM households; mean +- standard error over seeds, with plots.",
    )
    evaluate.add_argument("--out", type=given_path, required=True, help="report folder")
    evaluate.add_argument("--trained", type=trained_run, nargs="*", default=[],
                          metavar="LABEL=RUN", help="macro-train run folders")  # fmt: skip
    evaluate.add_argument("--households", type=int_in(10, 100_000),
                          default=family("macro").defaults()["n_households"])  # fmt: skip
    evaluate.add_argument("--years", type=positive_int, default=300, help="year cap")
    evaluate.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    evaluate.add_argument("--llm-model", help="LLM households on this model (smollm2, a folder)")
    evaluate.add_argument("--llm-governments", default="free_market,us_federal_2022",
                          help="comma-separated baseline names or trained labels")  # fmt: skip
    evaluate.add_argument("--llm-households", type=int_in(10, 1000), default=10)
    evaluate.add_argument("--llm-years", type=positive_int, default=5)
    evaluate.add_argument("--llm-seeds", type=seed_list, default=[0])
    _add_run_options(evaluate)
    evaluate.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from training.macro import MacroTrainConfig, train_macro
    from training.run_folder import command_config

    given = {name: getattr(args, name) for name in TRAIN_OPTIONS}
    config = MacroTrainConfig(**{k: v for k, v in given.items() if v is not None})
    folder = RunFolder(args.out, "macro-train", resume=args.resume, overwrite=args.overwrite)
    torch.set_num_threads(args.threads)
    settings = command_config(args, {"func", "no_progress"})
    with folder.writing(settings, may_change={"threads"}, results=TRAIN_RESULTS):
        summary = train_macro(config, args.out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {args.out}/; evaluate with: mfllm macro-eval --trained {config.mode}={args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from training.macro_eval import evaluate_macro, llm_matchups, standard_matchups
    from training.run_folder import command_config

    trained = dict(args.trained)
    if len(trained) != len(args.trained):
        raise ValueError("--trained: each LABEL must be given once")
    folder = RunFolder(args.out, "macro-eval", resume=args.resume, overwrite=args.overwrite)
    matchups = standard_matchups(trained, households=args.households, years=args.years)
    torch.set_num_threads(args.threads)
    if args.llm_model:
        from agents.backends import load_backend

        governments = [g.strip() for g in args.llm_governments.split(",") if g.strip()]
        backend = load_backend(args.llm_model, threads=args.threads)
        llm = llm_matchups(
            backend, governments, trained, households=args.llm_households, years=args.llm_years
        )
    settings = command_config(args, {"func", "no_progress"})
    with folder.writing(settings, may_change={"threads"}, results=EVAL_RESULTS):
        rows = evaluate_macro(matchups, args.seeds, args.out, progress=not args.no_progress)
        if args.llm_model:
            (args.out / "llm").mkdir(exist_ok=True)
            rows += evaluate_macro(
                llm, args.llm_seeds, args.out / "llm", progress=not args.no_progress
            )
    from training.macro_eval import markdown_table

    print(markdown_table(rows), end="")
    print(f"wrote {args.out}/", file=sys.stderr)
    return 0
