"""Intervention planners on the command line: ``mfllm train planner`` (registered by
:mod:`mfllm_cli.train_cmd`) and ``mfllm planner-eval`` (trained planners against the
baselines, into a report folder)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
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
from mfllm_env.planner import BASELINE_PLANNERS, DISTANCES, PlannerEnv, run_planner_episode
from mfllm_env.planner_results import plot_planner_shares, results_markdown, summarise
from mfllm_env.runs import RunFolder
from mfllm_env.scenario import Scenario
from mfllm_env.specs import iter_spec

POPULATIONS = ("synthetic", "mf")
EPISODE_KEYS = ("planner", "scenario", "seed", "return", "final_shares", "trajectory")


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
        "--budget", type=non_negative_int, default=3, help="interventions per episode"
    )
    parser.add_argument(
        "--cost", type=non_negative_float, default=0.05, help="cost per intervention"
    )
    parser.add_argument(
        "--horizon", type=positive_int, help="reactions after warm-up (default: all)"
    )
    parser.add_argument(
        "--target",
        type=target_shares,
        help="target shares, e.g. support=0.1,deny=0.4,query=0.3,comment=0.2 (default: that)",
    )
    parser.add_argument("--distance", choices=sorted(DISTANCES), default="tv")
    parser.add_argument("--warmup", type=non_negative_int, default=16)
    parser.add_argument("--agents-per-step", type=positive_int, default=8)
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
        return lambda i, action_mode="menu": PlannerEnv(
            scenarios[i], "synthetic", action_mode=action_mode, **options
        )
    from agents.backends import load_backend
    from agents.mf_llm import mf_llm_population
    from mfllm_env.labels import scheme_for

    policy_backend = load_backend(args.model, adapter=args.population_adapter, threads=args.threads)
    mean_field_backend = (
        load_backend(args.model, adapter=args.mean_field_adapter, threads=args.threads)
        if args.mean_field_adapter
        else policy_backend
    )
    scheme = scheme_for(scenarios[0].default_label_dimension)
    policy, new_mean_field = mf_llm_population(
        policy_backend,
        mean_field_backend=mean_field_backend,
        max_new_tokens=args.max_new_tokens,
        summary_tokens=args.summary_tokens,
        share_labels=scheme.names(scenarios[0].language),
    )
    return lambda i, action_mode="menu": PlannerEnv(
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


def _planner(name: str, env: PlannerEnv, args: argparse.Namespace, cache: dict) -> Any:
    kind, _, path = name.partition("=")
    if kind in BASELINE_PLANNERS:
        if kind == "threshold":
            return BASELINE_PLANNERS[kind](env, threshold=args.threshold)
        return BASELINE_PLANNERS[kind](env)
    if kind == "reinforce":
        from training.planner import LinearMenuPlanner

        planner = LinearMenuPlanner.load(Path(path), greedy=True)  # its most likely option
        if planner.num_labels != env.scheme.size:
            raise ValueError(
                f"reinforce={path}: the planner was trained on {planner.num_labels} labels, "
                f"the population here has {env.scheme.size} {env.scheme.labels}"
            )
        return planner.for_options([option.name for option in env.menu])
    if kind == "ppo":
        from training.planner_sb3 import SB3Planner

        if ("ppo", path, id(env)) not in cache:  # loaded once per env
            cache["ppo", path, id(env)] = SB3Planner.load(Path(path), env)
        return cache["ppo", path, id(env)]
    from agents.backends import load_backend
    from agents.planners import LLMPlanner

    key = (args.model, path)
    if key not in cache:
        cache[key] = load_backend(args.model, adapter=path or None, threads=args.threads)
    return LLMPlanner.for_env(cache[key], env)


def _planner_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        kind, _, path = name.partition("=")
        if kind not in (*BASELINE_PLANNERS, "reinforce", "ppo", "llm"):
            raise ValueError(f"unknown planner {name!r}; see --help")
        if kind == "reinforce":
            if not Path(path).exists():
                raise ValueError(f"reinforce={path}: no such planner file")
            if not Path(path).is_file():
                raise ValueError(
                    f"reinforce={path}: not a file (give the planner.json of mfllm train planner)"
                )
            from training.planner import LinearMenuPlanner

            LinearMenuPlanner.load(Path(path))  # a damaged file: an error before any episode
        if kind == "ppo" and not (Path(path).is_file() and zipfile.is_zipfile(path)):
            raise ValueError(f"ppo={path}: not a zip file (give the planner.zip of a ppo run)")
        if kind == "llm" and path:
            try:
                adapter_folder(path)
            except argparse.ArgumentTypeError as error:
                raise ValueError(f"llm={path}: {error}") from None
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"--planners must name distinct planners, got {text!r}")
    return names


def run_eval(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from training.run_folder import command_config, hide_progress_bars

    validate(args)
    folder = RunFolder(args.out, "planner-eval", resume=args.resume, overwrite=args.overwrite)
    names = _planner_names(args.planners)
    seeds = args.seeds
    if args.no_progress:
        hide_progress_bars()
    scenarios = _scenarios(args.scenarios, args.limit)
    new_env = planner_env_factory(args, scenarios)
    # Planners and seeds may be added on resume; every setting of how episodes are played
    # (threads included) must stay.
    config = command_config(args, {"func", "no_progress", "planners", "seeds"})
    episodes_path, timing_path = args.out / "episodes.jsonl", args.out / "timing.jsonl"
    cache: dict = {}
    envs: dict[tuple[str, int], PlannerEnv] = {}
    with folder.writing(config, results=("episodes.jsonl",)):
        rows = runs.read_records(
            episodes_path,
            EPISODE_KEYS,
            "a planner episode record",
            unique=("planner", "scenario", "seed"),
        )
        done = {_episode_key(r) for r in rows}
        timing = [t for t in runs.read_records(timing_path, TIMING_KEYS) if _episode_key(t) in done]
        runs.write_atomic(timing_path, runs.jsonl_text(timing))  # none of an unfinished episode
        todo = [
            (name, i, seed)
            for name in names
            for i in range(len(scenarios))
            for seed in seeds
            if (name, scenarios[i].scenario_id, seed) not in done
        ]
        with (
            episodes_path.open("a", encoding="utf-8") as handle,
            timing_path.open("a", encoding="utf-8") as timing_handle,
        ):
            for name, i, seed in tqdm(todo, desc="planner episodes", disable=args.no_progress):
                text_mode = name.partition("=")[0] == "llm"
                key = ("text" if text_mode else "menu", i)
                if key not in envs:
                    envs[key] = new_env(i, action_mode=key[0])
                env = envs[key]
                started = time.perf_counter()
                record = run_planner_episode(env, _planner(name, env, args, cache), seed)
                record.update(planner=name, scenario=scenarios[i].scenario_id, seed=seed)
                # Timing first: the record is what marks the episode done.
                seconds = time.perf_counter() - started
                runs.append_record(timing_handle, {**_identity(record), "seconds": seconds})
                runs.append_record(handle, record)
                rows.append(record)
    # A fixed order (planner, scenario, seed as asked; others after), whatever was resumed.
    wanted = [(n, s.scenario_id, seed) for n in names for s in scenarios for seed in seeds]
    position = {key: k for k, key in enumerate(wanted)}
    rows = _sorted_records(episodes_path, rows, position)
    _sorted_records(timing_path, runs.read_records(timing_path, TIMING_KEYS), position)
    labels = (next(iter(envs.values())) if envs else new_env(0)).scheme.labels
    rows = [r for r in rows if _episode_key(r) in position]
    results = summarise(rows, names, labels)
    runs.write_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    runs.write_atomic(args.out / "results.md", results_markdown(results, labels))
    plot_planner_shares(rows, names, labels, args.out / "shares.png")
    print(results_markdown(results, labels))
    print(f"wrote {args.out}/ (episodes.jsonl, timing.jsonl, results.md, results.json, shares.png)")
    return 0


TIMING_KEYS = ("planner", "scenario", "seed", "seconds")


def _episode_key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row["planner"], row["scenario"], row["seed"])


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    return {"planner": row["planner"], "scenario": row["scenario"], "seed": row["seed"]}


def _sorted_records(
    path: Path, rows: list[dict[str, Any]], position: dict[tuple[str, str, int], int]
) -> list[dict[str, Any]]:
    """``rows`` (the records of ``path``) in the order of ``position`` (others after, as
    they were); ``path`` rewritten (atomically) if that changed their order."""
    ordered = sorted(rows, key=lambda r: position.get(_episode_key(r), len(position)))
    if ordered != rows:
        runs.write_atomic(path, runs.jsonl_text(ordered))
    return ordered
