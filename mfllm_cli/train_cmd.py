"""``mfllm train sft|ib-tune|planner``: fine-tune the policy (SFT) or the mean-field model
and the policy (IB-Tune) on real reactions, or train an intervention planner
(:mod:`mfllm_cli.planner_cmd`), into a run folder (see :mod:`training.run_folder`)."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from mfllm_cli import planner_cmd
from mfllm_cli.arg_types import (
    LORA_RANK_MAX,
    adapter_folder,
    float_in,
    given_path,
    int_in,
    lora_rank,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    seed,
    thread_count,
    token_count,
)
from mfllm_env.scenario import Scenario
from mfllm_env.specs import iter_spec
from training.speed import DEFAULT_THREADS, PRECISIONS, THREADS_HELP

MEAN_FIELD_CONTEXTS = ("histogram", "llm")
DEV_FRACTION = 0.2
"""The share of the training events held out for dev when no dev scenarios are given."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune policies (sft), the mean-field model and policy (ib-tune), or train "
        "an intervention planner (planner)",
        description="Fine-tune with TRL and LoRA on real reactions. Writes config.json, "
        "data/*.jsonl, checkpoints, the adapters, log.jsonl, report.png and summary.json "
        "into --out; an interrupted run continues with --resume.",
    )
    methods = parser.add_subparsers(dest="method", required=True, metavar="METHOD")
    sft = methods.add_parser("sft", help="supervised fine-tuning of a policy (State or MF)")
    _common_arguments(sft)
    sft.add_argument(
        "--context",
        choices=("none", "mean_field", "recent", "popular"),
        default="none",
        help="none: the State-SFT baseline; mean_field: the MF policy; recent, popular: the "
        "Recent(k) and Popular(k) policies (default: none)",
    )
    sft.add_argument(
        "--k", type=positive_int, default=5, help="recent and popular: reactions shown"
    )
    sft.add_argument(
        "--mean-field",
        choices=MEAN_FIELD_CONTEXTS,
        default="llm",
        help="with --context mean_field: the model that writes the contexts over the real "
        "history (default: llm, the untuned MF-LLM summariser)",
    )
    sft.add_argument(
        "--mean-field-adapter",
        type=adapter_folder,
        help="adapter of the llm mean field (e.g. IB-Tuned)",
    )
    sft.add_argument(
        "--sampling-prob",
        type=probability,
        default=0.0,
        help="scheduled sampling: probability that a step's actions are the untuned "
        "policy's own generations instead of the real reactions (default 0)",
    )
    sft.add_argument("--batch-size", type=positive_int, default=4)
    sft.add_argument("--learning-rate", type=positive_float, default=2e-4)
    sft.set_defaults(func=run_sft, max_steps_default=100, command="train sft")

    ib = methods.add_parser(
        "ib-tune", help="IB-Tune: the mean-field model by GRPO, then the MF policy by SFT"
    )
    _common_arguments(ib)
    ib.add_argument(
        "--policy-steps", type=positive_int, default=50, help="SFT steps of the policy"
    )
    ib.add_argument(
        "--rounds", type=positive_int, default=1, help="alternations of the two stages"
    )
    ib.add_argument(
        "--beta", type=non_negative_float, default=0.02, help="weight of the compression term"
    )
    ib.add_argument("--relevance-weight", type=non_negative_float, default=1.0)
    ib.add_argument(
        "--generations", type=int_in(2), default=4, help="G: summaries per history (>= 2)"
    )
    ib.add_argument(
        "--max-targets", type=positive_int, default=8, help="next reactions scored per history"
    )
    ib.add_argument(
        "--summary-tokens",
        type=token_count,
        default=96,
        help="longest summary (as simulate's default)",
    )
    ib.add_argument("--prior", choices=("base", "none"), default="base")
    ib.add_argument(
        "--learning-rate", type=positive_float, default=5e-5, help="GRPO learning rate"
    )
    ib.add_argument("--policy-learning-rate", type=positive_float, default=2e-4)
    ib.add_argument("--batch-size", type=positive_int, default=4, help="policy SFT batch size")
    ib.add_argument(
        "--generation-engine",
        choices=("transformers", "vllm"),
        default="transformers",
        help="what samples the GRPO summaries: transformers (the model itself; default) or "
        "vllm (TRL's vLLM integration, colocated with training on a CUDA GPU; needs vllm "
        "installed -- untested: built and tested on a CPU-only machine)",
    )
    ib.set_defaults(func=run_ib_tune, max_steps_default=20, command="train ib-tune")
    planner_cmd.register_training(methods)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios",
        required=True,
        help="training scenarios: rumoureval:PATH:train | synthetic:FIRST-LAST | ced:PATH | ...",
    )
    parser.add_argument(
        "--dev-scenarios",
        help="dev scenarios (default: --dev-fraction of the training events, split by event)",
    )
    parser.add_argument(
        "--dev-fraction",
        type=float_in(0, 1, low_open=True, high_open=True),
        help=f"share of the training events held out for dev (default {DEV_FRACTION}); not "
        "with --dev-scenarios",
    )
    parser.add_argument(
        "--dev-examples",
        type=non_negative_int,
        default=64,
        help="dev reactions scored before and after SFT",
    )
    parser.add_argument("--model", default="smollm2", help="smollm2 | a model folder | a hub id")
    parser.add_argument("--out", required=True, type=given_path, help="run folder")
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        help="optimiser steps (sft: default 100; ib-tune: GRPO steps of mu, default 20)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument(
        "--overwrite", action="store_true", help="remove what --out holds and train afresh"
    )
    parser.add_argument("--save-steps", type=positive_int, help="checkpoint every N steps")
    parser.add_argument(
        "--max-reactions", type=positive_int, default=64, help="per event, for data"
    )
    parser.add_argument("--agents-per-step", type=positive_int, default=16)
    parser.add_argument(
        "--lora-r", type=lora_rank, default=16, help=f"LoRA rank (at most {LORA_RANK_MAX})"
    )
    parser.add_argument("--lora-alpha", type=positive_int, default=32)
    parser.add_argument("--seed", type=seed, default=0, help="0 .. 2**32-1")
    parser.add_argument(
        "--lora-dropout",
        type=float_in(0, 0.99),
        default=0.0,
        help="dropout on the LoRA branch (default 0: it costs ~17%% of a CPU step)",
    )
    parser.add_argument("--threads", type=thread_count, default=DEFAULT_THREADS, help=THREADS_HELP)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="training arithmetic: fp32, bf16 (autocast) or auto (default: bf16 where the CPU "
        "has bf16 matrix instructions, avx512_bf16 or AMX, fp32 elsewhere)",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass to save memory (slower; for long "
        "histories that do not fit; a resumed run may add or drop it)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def validate_training(args: argparse.Namespace) -> None:
    """Refuse options of both training methods that contradict each other, before any
    work, and settle ``--dev-fraction`` (:data:`DEV_FRACTION` unless dev scenarios are
    given, ``None`` with them)."""
    if args.dev_scenarios is not None and args.dev_fraction is not None:
        raise ValueError(
            "--dev-fraction holds out a share of the training events for dev and "
            "--dev-scenarios gives the dev events: give one of them, not both"
        )
    if args.dev_scenarios is None:
        args.dev_fraction = DEV_FRACTION if args.dev_fraction is None else args.dev_fraction


def _scenarios(args: argparse.Namespace) -> tuple[list[Scenario], list[Scenario]]:
    from training.datasets import check_disjoint, split_by_event

    train = list(iter_spec(args.scenarios))
    if args.dev_scenarios is not None:
        dev = list(iter_spec(args.dev_scenarios))
    else:
        train, dev = split_by_event(train, args.dev_fraction, seed=args.seed)
    check_disjoint(train, dev)
    cut = args.max_reactions

    def used(scenarios: list[Scenario]) -> int:  # the reactions training sees
        return sum(len(s) if cut is None else min(len(s), cut) for s in scenarios)

    print(
        f"{len(train)} training and {len(dev)} dev scenario(s) ({used(train)} and "
        f"{used(dev)} reactions{'' if cut is None else f', at most {cut} per scenario'})",
        file=sys.stderr,
    )
    return train, dev


def validate_sft(args: argparse.Namespace) -> None:
    """Refuse ``train sft`` options that contradict each other before any work
    (``run_sft`` calls it first; :func:`validate_training` included)."""
    validate_training(args)
    if args.context != "mean_field" and (args.sampling_prob or args.mean_field_adapter):
        raise ValueError("--sampling-prob and --mean-field-adapter need --context mean_field")
    if args.mean_field_adapter and args.mean_field != "llm":
        raise ValueError("--mean-field-adapter needs --mean-field llm")


def _set_up(args: argparse.Namespace) -> None:
    """The default ``--max-steps``, progress bars and torch threads (one unless
    ``--threads`` says more; every value was checked as it was parsed)."""
    if args.max_steps is None:
        args.max_steps = args.max_steps_default
    if args.no_progress:
        from training.run_folder import hide_progress_bars

        hide_progress_bars()
    from training.speed import set_training_threads

    set_training_threads(args.threads)


def _folder(args: argparse.Namespace) -> Any:
    """The run folder of ``mfllm train METHOD`` (checked, not created yet)."""
    from mfllm_env.runs import RunFolder

    return RunFolder(
        args.out, f"train {args.method}", resume=args.resume, overwrite=args.overwrite
    )


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from training.run_folder import command_config

    return command_config(args, {"func", "max_steps_default", "resume", "no_progress"})


def _policy_config(
    args: argparse.Namespace, context: str, max_steps: int, learning_rate: float
) -> Any:
    """The policy's SFT settings from the command line (``mfllm train sft``, and the policy
    stage of ``mfllm train ib-tune``)."""
    from training.sft import PolicySFTConfig

    return PolicySFTConfig(
        context=context,
        max_steps=max_steps,
        batch_size=args.batch_size,
        learning_rate=learning_rate,
        max_dev_examples=args.dev_examples,
        save_steps=args.save_steps or 25,
        seed=args.seed,
        lora=_lora(args),
        speed=_speed(args),
    )


def _lora(args: argparse.Namespace) -> Any:
    from training.run_folder import LoraSettings

    return LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout)


def _speed(args: argparse.Namespace) -> Any:
    from training.speed import SpeedSettings

    return SpeedSettings(
        threads=args.threads,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def _finish(out: Path, summary: dict[str, Any]) -> None:
    from training.report import plot_training_report
    from training.run_folder import write_json

    write_json(out / "summary.json", summary)
    plot_training_report(out / "log.jsonl", out / "report.png")
    print(json.dumps(summary, indent=2, default=str))
    held = sorted(f"{p.name}/" if p.is_dir() else p.name for p in out.iterdir())
    print(f"wrote {out}/ ({', '.join(held)})")


def run_sft(args: argparse.Namespace) -> int:
    from agents.backends import load_backend
    from agents.policies import llm_policy
    from training.datasets import context_mean_field, policy_sft_examples
    from training.run_folder import (
        RESUMABLE_CHANGES,
        TRAINING_RESULTS,
        cached_examples,
        load_trainable,
    )
    from training.sft import train_policy_sft

    validate_sft(args)
    folder = _folder(args)
    _set_up(args)
    train, dev = _scenarios(args)
    config = _policy_config(args, args.context, args.max_steps, args.learning_rate)
    uses_llm = args.context == "mean_field" and args.mean_field == "llm"
    backend = (
        load_backend(args.model, threads=args.threads) if uses_llm or args.sampling_prob else None
    )
    mf_backend = (
        load_backend(args.model, adapter=args.mean_field_adapter, threads=args.threads)
        if uses_llm and args.mean_field_adapter
        else backend
    )
    new_mean_field = context_mean_field(
        args.context, args.mean_field, backend=mf_backend, k=args.k, seed=args.seed
    )
    policy = (
        llm_policy("rumour", backend, speech={"context": args.context})
        if args.sampling_prob
        else None
    )
    build = partial(
        policy_sft_examples,
        context=args.context,
        new_mean_field=new_mean_field,
        agents_per_step=args.agents_per_step,
        max_reactions=args.max_reactions,
        policy=policy,
        sampling_prob=args.sampling_prob,
        seed=args.seed,
        lazy=uses_llm,  # summaries cost generation: stop early
    )

    model, tokenizer = load_trainable(args.model)
    with folder.writing(_config(args), may_change=RESUMABLE_CHANGES, results=TRAINING_RESULTS):
        examples = cached_examples(
            args.out / "data" / "train.jsonl",
            partial(build, train, args.max_steps * args.batch_size),
        )
        dev_examples = cached_examples(
            args.out / "data" / "dev.jsonl", partial(build, dev, config.max_dev_examples)
        )
        summary = train_policy_sft(
            examples,
            dev_examples,
            config,
            args.out / "policy",
            model=model,
            tokenizer=tokenizer,
            log_path=args.out / "log.jsonl",
            stage="policy",
            resume=args.resume,
            progress=not args.no_progress,
        )
    _finish(args.out, summary)
    print(
        f"simulate with: mfllm simulate --policy {SIMULATE_POLICY[args.context]} "
        f"--adapter {args.out / 'policy' / 'adapter'} ..."
    )
    return 0


SIMULATE_POLICY = {"none": "sft", "mean_field": "mf", "recent": "recent", "popular": "popular"}
"""The ``mfllm simulate --policy`` that runs a policy trained with each ``--context``."""


def run_ib_tune(args: argparse.Namespace) -> int:
    from agents.backends import load_backend
    from training.ib_tune import IBTuneConfig
    from training.ib_tune import run_ib_tune as run
    from training.run_folder import RESUMABLE_CHANGES, TRAINING_RESULTS, load_trainable
    from training.speed import check_generation_engine

    validate_training(args)
    check_generation_engine(args.generation_engine)
    folder = _folder(args)
    _set_up(args)
    train, dev = _scenarios(args)
    config = IBTuneConfig(
        rounds=args.rounds,
        beta=args.beta,
        relevance_weight=args.relevance_weight,
        num_generations=args.generations,
        max_targets=args.max_targets,
        summary_tokens=args.summary_tokens,
        prior=args.prior,
        mu_steps=args.max_steps,
        mu_learning_rate=args.learning_rate,
        policy=_policy_config(args, "mean_field", args.policy_steps, args.policy_learning_rate),
        agents_per_step=args.agents_per_step,
        max_reactions=args.max_reactions,
        save_steps=args.save_steps or 5,
        seed=args.seed,
        lora=_lora(args),
        speed=_speed(args),
        generation_engine=args.generation_engine,
    )
    base = load_backend(args.model, threads=args.threads)  # a --model that fails, fails here
    with folder.writing(_config(args), may_change=RESUMABLE_CHANGES, results=TRAINING_RESULTS):
        summary = run(
            train,
            dev,
            config,
            args.out,
            load_model=partial(load_trainable, args.model),
            load_backend=lambda adapter: (
                base
                if adapter is None
                else load_backend(args.model, adapter=adapter, threads=args.threads)
            ),
            resume=args.resume,
            progress=not args.no_progress,
        )
    _finish(args.out, summary)
    adapters = args.out / "adapters"
    print(
        f"simulate with: mfllm simulate --policy mf --mean-field llm --adapter "
        f"{adapters / 'policy'} --mean-field-adapter {adapters / 'mean_field'} ..."
    )
    return 0
