"""Intervention planners on the command line: ``mfllm train planner`` (registered by
:mod:`mfllm_cli.train_cmd`) and ``mfllm planner-eval`` (trained planners against the
baselines, into a report folder)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mfllm_cli.arg_types import (
    LORA_RANK_MAX,
    adapter_folder,
    given_path,
    int_in,
    lora_rank,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    seed,
    seed_list,
    thread_count,
    token_count,
)
from mfllm_env import runs
from mfllm_env.planner import DISTANCES, PlannerEnv
from mfllm_env.planner_results import RESULT_FILES, evaluate_planners, results_markdown
from mfllm_env.registry import family
from mfllm_env.runs import RunFolder
from mfllm_env.scenario import Scenario
from mfllm_env.specs import iter_spec

POPULATIONS = ("synthetic", "mf")
RUMOUR = family("rumour")
"""The family whose leader env (the intervention planner's) these commands build."""
PLANNER_DEFAULTS = RUMOUR.defaults("leader")


def add_planner_env_arguments(parser: argparse.ArgumentParser) -> None:
    """How planner episodes are played (shared by training and evaluation)."""
    parser.add_argument(
        "--scenarios",
        required=True,
        help="synthetic:FIRST-LAST | rumoureval:PATH:SPLIT|EVENT | jsonl:PATH ...",
    )
    parser.add_argument(
        "--population",
        choices=POPULATIONS,
        default="synthetic",
        help="synthetic: the synthetic scenario's ground-truth response model; mf: the "
        "MF-LLM population (mf policy + llm mean field on --model) (default: synthetic)",
    )
    parser.add_argument("--limit", type=positive_int, help="use at most this many scenarios")
    parser.add_argument(
        "--every", type=positive_int, default=2, help="population steps per decision"
    )
    parser.add_argument(
        "--budget",
        type=non_negative_int,
        default=PLANNER_DEFAULTS["budget"],
        help="interventions per episode",
    )
    parser.add_argument(
        "--cost",
        type=non_negative_float,
        default=PLANNER_DEFAULTS["cost"],
        help="cost per intervention",
    )
    parser.add_argument(
        "--horizon", type=positive_int, help="reactions after warm-up (default: all)"
    )
    parser.add_argument(
        "--target",
        type=target_shares,
        help="target shares, e.g. support=0.1,deny=0.4,query=0.3,comment=0.2 (default: that)",
    )
    parser.add_argument(
        "--distance", choices=sorted(DISTANCES), default=PLANNER_DEFAULTS["distance"]
    )
    parser.add_argument("--warmup", type=non_negative_int, default=PLANNER_DEFAULTS["warmup"])
    parser.add_argument(
        "--agents-per-step", type=positive_int, default=PLANNER_DEFAULTS["agents_per_step"]
    )
    llm = parser.add_argument_group("LLM population and planner")
    llm.add_argument("--model", default="smollm2", help="smollm2 | a model folder | a hub id")
    llm.add_argument(
        "--population-adapter", type=adapter_folder, help="adapter of the mf population policy"
    )
    llm.add_argument(
        "--mean-field-adapter",
        type=adapter_folder,
        help="adapter of the population's llm mean field",
    )
    llm.add_argument(
        "--max-new-tokens", type=token_count, default=16, help="per population action"
    )
    llm.add_argument(
        "--summary-tokens", type=token_count, default=48, help="per mean-field rewrite"
    )
    llm.add_argument("--threads", type=thread_count, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def target_shares(text: str) -> dict[str, float]:
    """``--target``: ``LABEL=SHARE,...`` with each label once and finite shares >= 0 (the
    env checks the labels against the scenario's scheme and normalises the shares)."""
    target: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = (piece.strip() for piece in part.partition("="))
        if not (sep and name):
            raise argparse.ArgumentTypeError(f"takes LABEL=SHARE,... (got {part!r})")
        if name in target:
            raise argparse.ArgumentTypeError(f"names {name!r} twice in {text!r}")
        try:
            target[name] = non_negative_float(value)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"the share of {name!r} {error}") from None
    return target


def validate(args: argparse.Namespace) -> None:
    """Refuse planner options that contradict each other before any work (``train
    planner`` and ``planner-eval`` call it first)."""
    if args.population == "synthetic":
        for flag, given in (
            ("--population-adapter", args.population_adapter),
            ("--mean-field-adapter", args.mean_field_adapter),
        ):
            if given is not None:
                raise ValueError(f"{flag} needs --population mf (the synthetic one has no LLM)")


def planner_env_factory(
    args: argparse.Namespace, scenarios: Sequence[Scenario]
) -> Callable[..., PlannerEnv]:
    """``make_env(i, action_mode="menu")``: a planner env for scenario ``i`` with a fresh
    population (an LLM population's models are loaded once, here)."""
    options = {
        "every": args.every,
        "budget": args.budget,
        "cost": args.cost,
        "horizon": args.horizon,
        "target": args.target,
        "distance": args.distance,
        "warmup": args.warmup,
        "agents_per_step": args.agents_per_step,
    }
    if args.population == "synthetic":
        return lambda i, action_mode="menu": RUMOUR.leader_env(
            scenarios[i], "synthetic", action_mode=action_mode, **options
        )
    from agents.policy_factory import planner_population

    policy, new_mean_field = planner_population(
        args.model,
        scenarios[0],
        population_adapter=args.population_adapter,
        mean_field_adapter=args.mean_field_adapter,
        threads=args.threads,
        max_new_tokens=args.max_new_tokens,
        summary_tokens=args.summary_tokens,
    )
    return lambda i, action_mode="menu": RUMOUR.leader_env(
        scenarios[i],
        policy,
        action_mode=action_mode,
        mean_field=new_mean_field(seed=i),
        **options,
    )


def _scenarios(spec: str, limit: int | None) -> list[Scenario]:
    scenarios = list(iter_spec(spec, limit=limit))
    if not scenarios:
        raise ValueError(f"--scenarios {spec!r} selects no scenario")
    return scenarios


# -- mfllm train planner -----------------------------------------------------------------


def register_training(methods: argparse._SubParsersAction) -> None:
    parser = methods.add_parser(
        "planner",
        help="an intervention planner against a frozen population (reinforce, ppo or grpo)",
        description="reinforce: a linear softmax planner over the intervention menu, by "
        "REINFORCE (numpy, seconds). ppo: an MLP planner over the menu, by Stable-Baselines3 "
        "PPO on a SuperSuit vector env (the rl extra). grpo: a language-model planner writing "
        "free-text messages, by TRL GRPO with LoRA (the environment is stepped in "
        "rollout_func).",
    )
    add_planner_env_arguments(parser)
    parser.add_argument("--method", choices=("reinforce", "ppo", "grpo"), default="reinforce")
    parser.add_argument("--out", required=True, type=given_path, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument(
        "--overwrite", action="store_true", help="remove what --out holds and train afresh"
    )
    parser.add_argument("--seed", type=seed, default=0, help="0 .. 2**32-1")
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        help="updates (reinforce: iterations, default 200; ppo: PPO updates, default 60; "
        "grpo: GRPO steps, default 30)",
    )
    parser.add_argument("--save-steps", type=positive_int, help="checkpoint every N updates")
    parser.add_argument(
        "--learning-rate", type=positive_float, help="reinforce 2.0, ppo 3e-4, grpo 5e-5"
    )
    reinforce = parser.add_argument_group("reinforce")
    reinforce.add_argument("--episodes-per-step", type=positive_int, default=16)
    reinforce.add_argument(
        "--entropy-weight", type=non_negative_float, default=0.01, help="also ppo's"
    )
    ppo = parser.add_argument_group("ppo")
    ppo.add_argument(
        "--rollout-steps",
        type=int_in(2),
        default=64,
        help="decisions per training scenario in each update's rollout",
    )
    grpo = parser.add_argument_group("grpo")
    grpo.add_argument(
        "--generations", type=int_in(2), default=4, help="G: messages per decision (>= 2)"
    )
    grpo.add_argument(
        "--states-per-step", type=positive_int, default=2, help="decision points per step"
    )
    grpo.add_argument("--message-tokens", type=token_count, default=32)
    grpo.add_argument("--temperature", type=positive_float, default=1.0)
    grpo.add_argument(
        "--lora-r", type=lora_rank, default=16, help=f"LoRA rank (at most {LORA_RANK_MAX})"
    )
    grpo.add_argument("--lora-alpha", type=positive_int, default=32)
    parser.set_defaults(func=run_train, command="train planner")


def run_train(args: argparse.Namespace) -> int:
    from training.planner import (
        GRPOPlannerConfig,
        ReinforceConfig,
        train_grpo_planner,
        train_reinforce,
    )
    from training.report import plot_training_report
    from training.run_folder import (
        RESUMABLE_CHANGES,
        TRAINING_RESULTS,
        LoraSettings,
        command_config,
        hide_progress_bars,
        load_trainable,
    )

    validate(args)
    folder = RunFolder(args.out, "train planner", resume=args.resume, overwrite=args.overwrite)
    grpo = args.method == "grpo"
    if args.max_steps is None:
        args.max_steps = {"grpo": 30, "ppo": 60, "reinforce": 200}[args.method]
    if args.learning_rate is None:
        args.learning_rate = {"grpo": 5e-5, "ppo": 3e-4, "reinforce": 2.0}[args.method]
    if args.save_steps is None:
        args.save_steps = {"grpo": 10, "ppo": 10, "reinforce": 25}[args.method]
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.no_progress:
        hide_progress_bars()
    scenarios = _scenarios(args.scenarios, args.limit)
    new_env = planner_env_factory(args, scenarios)
    mode = "text" if grpo else "menu"

    def make_env(i: int) -> PlannerEnv:
        return new_env(i, action_mode=mode)

    if grpo:
        config: Any = GRPOPlannerConfig(
            max_steps=args.max_steps,
            num_generations=args.generations,
            states_per_step=args.states_per_step,
            message_tokens=args.message_tokens,
            temperature=args.temperature,
            learning_rate=args.learning_rate,
            save_steps=args.save_steps,
            seed=args.seed,
            lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha),
        )
    elif args.method == "ppo":
        from training.planner_sb3 import PPOPlannerConfig

        config = PPOPlannerConfig(
            updates=args.max_steps,
            rollout_steps=args.rollout_steps,
            learning_rate=args.learning_rate,
            entropy_weight=args.entropy_weight,
            save_steps=args.save_steps,
            seed=args.seed,
        )
    else:
        config = ReinforceConfig(
            iterations=args.max_steps,
            episodes_per_iteration=args.episodes_per_step,
            learning_rate=args.learning_rate,
            entropy_weight=args.entropy_weight,
            save_steps=args.save_steps,
            seed=args.seed,
        )
    model, tokenizer = load_trainable(args.model) if grpo else (None, None)
    settings = command_config(args, {"func", "no_progress"})
    with folder.writing(settings, may_change=RESUMABLE_CHANGES, results=TRAINING_RESULTS):
        print(
            f"training a {args.method} planner on {len(scenarios)} scenario(s)", file=sys.stderr
        )
        if grpo:
            summary = train_grpo_planner(
                make_env,
                len(scenarios),
                config,
                args.out,
                model=model,
                tokenizer=tokenizer,
                resume=args.resume,
                progress=not args.no_progress,
            )
            trained = args.out / "planner" / "adapter"
        else:
            if args.method == "ppo":
                from training.planner_sb3 import PPO_PLANNER_FILE
                from training.planner_sb3 import train_ppo_planner as train

                trained = args.out / PPO_PLANNER_FILE
            else:
                train, trained = train_reinforce, args.out / "planner.json"
            summary = train(
                make_env,
                len(scenarios),
                config,
                args.out,
                resume=args.resume,
                progress=not args.no_progress,
            )
    runs.write_json(args.out / "summary.json", summary)
    plot_training_report(args.out / "log.jsonl", args.out / "report.png")
    print(json.dumps(summary, indent=2, default=str))
    kind = {"grpo": "llm"}.get(args.method, args.method)
    print(f"wrote {args.out}/; evaluate with: mfllm planner-eval --planners {kind}={trained} ...")
    return 0


# -- mfllm planner-eval ------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "planner-eval",
        help="intervention planners against the baselines, with a report",
        description="Play every planner on every scenario and seed; write episodes.jsonl "
        "(one line per episode, as it ends), results.md/json (mean ± standard error over "
        "seeds of the return, the final distance to the target and the final shares) and "
        "shares.png (share trajectories with and without intervention) into --out.",
    )
    add_planner_env_arguments(parser)
    parser.add_argument(
        "--planners",
        default="none,scripted,threshold,random",
        help="comma-separated: none, scripted, threshold, random, reinforce=PLANNER.json "
        "(played greedily), ppo=PLANNER.zip (its likeliest option), llm (untuned), "
        "llm=ADAPTER (default: the four baselines)",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default="0,1,2",
        help="comma-separated distinct episode seeds (0 .. 2**32-1)",
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        default=0.3,
        help="threshold planner's level: a share in [0, 1]",
    )
    parser.add_argument("--out", required=True, type=given_path, help="report folder")
    parser.add_argument("--resume", action="store_true", help="play only missing episodes")
    parser.add_argument(
        "--overwrite", action="store_true", help="remove what --out holds and evaluate afresh"
    )
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from training.named_planners import NamedPlanners, planner_names
    from training.run_folder import command_config, hide_progress_bars

    validate(args)
    folder = RunFolder(args.out, "planner-eval", resume=args.resume, overwrite=args.overwrite)
    names = planner_names(args.planners)
    if args.no_progress:
        hide_progress_bars()
    scenarios = _scenarios(args.scenarios, args.limit)
    new_env = planner_env_factory(args, scenarios)
    # Planners and seeds may be added on resume; every setting of how episodes are played
    # (threads included) must stay.
    config = command_config(args, {"func", "no_progress", "planners", "seeds"})
    planners = NamedPlanners(args.model, threads=args.threads, threshold=args.threshold)
    results, labels = evaluate_planners(
        folder,
        config,
        names,
        scenarios,
        args.seeds,
        new_env,
        planners,
        progress=not args.no_progress,
    )
    print(results_markdown(results, labels))
    print(f"wrote {args.out}/ ({', '.join(RESULT_FILES)})")
    return 0
