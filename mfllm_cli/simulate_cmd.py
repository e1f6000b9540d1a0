"""``mfllm simulate``: run a policy on scenarios and write a run folder with its report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from dataclasses import fields
from itertools import chain

from agents.backends.base import GENERATION_DTYPES
from agents.policy_factory import (
    LLM_POLICIES,
    MEAN_FIELDS,
    POLICIES,
    PolicyOptions,
    build_policy,
    llm_parts,
    mean_field_choice,
)
from mfllm_cli.arg_types import (
    TOKENS_MAX,
    adapter_folder,
    given_path,
    non_negative_float,
    non_negative_int,
    positive_int,
    seed,
    thread_count,
    token_count,
)
from mfllm_env.bench_pipeline import check_one_scheme
from mfllm_env.labels import scheme_for
from mfllm_env.population_env import PopulationEnv
from mfllm_env.registry import family
from mfllm_env.runs import RunFolder
from mfllm_env.scenario import Scenario
from mfllm_env.simulation import EpisodeSkippedWarning, label_source_note, simulate
from mfllm_env.specs import has_fit_set, iter_spec

RESULTS = ("trajectory.jsonl",)  # a run folder with steps in it is kept if the run fails


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
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="mf-classifier",
        help="non-LLM: random, herding, state-classifier, mf-classifier; LLM (the MF-LLM paper's"
        " variants): mf, state, recent, popular, sft (state + --adapter)",
    )
    parser.add_argument(
        "--mean-field",
        choices=MEAN_FIELDS,
        help="histogram (rule-rendered shares), llm (the MF-LLM summariser) or cos (Chain of "
        "Summarization); default: llm for --policy mf, histogram otherwise; recent and popular "
        "bring their own",
    )
    parser.add_argument(
        "--adapter", type=adapter_folder, help="PEFT adapter folder for the policy's model"
    )
    parser.add_argument(
        "--mean-field-adapter",
        type=adapter_folder,
        help="PEFT adapter folder for the llm/cos mean field's model (e.g. from mfllm train "
        "ib-tune); default: the policy's model",
    )
    add_episode_arguments(parser, RUN_DEFAULTS)
    parser.add_argument("--out", required=True, type=given_path, help="run folder to write")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out: keep its finished episodes, play the rest",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="remove what --out holds and run afresh"
    )
    parser.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the run, 0 .. 2**32-1; episode e plays with a seed derived from (seed, e)",
    )
    parser.set_defaults(func=run)


RUMOUR = family("rumour")
"""The family ``simulate`` plays; its population env is built through the registry."""

# Defaults of the episode and LLM settings (``mfllm bench`` presets override them); the
# episode's own from the population env's.
RUN_DEFAULTS: dict[str, object] = {
    "model": "smollm2",
    "parallel": 8,
    "k": 5,
    "max_new_tokens": 48,
    "summary_tokens": 96,
    "temperature": 0.7,
    "cos_every": 4,
    "warmup": RUMOUR.defaults()["warmup"],
    "agents_per_step": RUMOUR.defaults()["agents_per_step"],
    "show_shares": False,
    "nll": False,
    "generation_dtype": "auto",
    "draft_tokens": 8,
}


def add_episode_arguments(parser: argparse.ArgumentParser, defaults: dict[str, object]) -> None:
    """The settings of how episodes are played, shared by ``simulate`` and ``bench``; each
    takes its default from ``defaults`` (``None`` where missing)."""
    llm = parser.add_argument_group("LLM policies and mean fields")
    llm.add_argument(
        "--model",
        default=defaults.get("model"),
        help="smollm2 (offline default) | a local model folder | a hub id (needs network) | "
        "http://HOST:PORT/v1 (an OpenAI-compatible server) | vllm:MODEL (vLLM in-process, "
        "where vllm is installed: docs/vllm.md)",
    )
    llm.add_argument(
        "--tokenizer",
        help="with an http --model: tokenizer that renders prompts client-side (smollm2, a "
        "folder or a hub id); needed for --nll",
    )
    llm.add_argument(
        "--parallel",
        type=positive_int,
        default=defaults.get("parallel"),
        help="episodes stepped together (batched calls)",
    )
    llm.add_argument(
        "--k",
        type=positive_int,
        default=defaults.get("k"),
        help="reactions shown by recent and popular",
    )
    llm.add_argument(
        "--max-new-tokens",
        type=token_count,
        default=defaults.get("max_new_tokens"),
        help=f"per action (at most {TOKENS_MAX:,})",
    )
    llm.add_argument(
        "--summary-tokens",
        type=token_count,
        default=defaults.get("summary_tokens"),
        help="per mean-field rewrite",
    )
    llm.add_argument(
        "--temperature",
        type=non_negative_float,
        default=defaults.get("temperature"),
        help="sampling temperature (0: greedy)",
    )
    llm.add_argument(
        "--cos-every",
        type=positive_int,
        default=defaults.get("cos_every"),
        help="cos: LLM rewrite every N steps",
    )
    llm.add_argument(
        "--show-shares",
        action="store_true",
        default=defaults.get("show_shares"),
        help="add the numeric shares to the mf context",
    )
    llm.add_argument(
        "--nll",
        action="store_true",
        default=defaults.get("nll"),
        help="score the real reactions' NLL under the policy",
    )
    llm.add_argument("--threads", type=thread_count, help="torch threads for a local model")
    llm.add_argument(
        "--generation-dtype",
        choices=GENERATION_DTYPES,
        default=defaults.get("generation_dtype"),
        help="a local model's weights when generating: auto (default) = bfloat16 where the CPU "
        "multiplies bf16 in hardware (about 2x faster prompts), else float32; float32 keeps a "
        "prompt's sample independent of the rest of its batch (scores are always fp32)",
    )
    llm.add_argument(
        "--draft-tokens",
        type=non_negative_int,
        default=defaults.get("draft_tokens"),
        help="a local model decoding one row looks up drafts of up to N tokens in the row's "
        "own text and verifies them in one pass (speculative sampling: the same distribution, "
        "other draws); 0: plain decoding",
    )
    parser.add_argument(
        "--fit",
        help="scenarios the classifier policies are fitted on (default: 20 other synthetic "
        "seeds for synthetic, the train split for rumoureval)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=defaults.get("warmup"),
        help="real reactions that drive the mean field",
    )
    parser.add_argument(
        "--agents-per-step", type=positive_int, default=defaults.get("agents_per_step")
    )
    parser.add_argument(
        "--max-reactions",
        type=positive_int,
        default=defaults.get("max_reactions"),
        help="cut each episode to this many reactions",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=defaults.get("limit"),
        help="play at most this many episodes",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def policy_options(args: argparse.Namespace) -> PolicyOptions:
    """The settings of ``args`` that build its policy (``--policy``, ``--scenario`` and
    the flags named as :class:`PolicyOptions`' fields)."""
    return PolicyOptions(**{f.name: getattr(args, f.name) for f in fields(PolicyOptions)})


def check_episode_options(args: argparse.Namespace) -> None:
    """Refuse episode settings that contradict each other (``simulate`` and ``bench``): a
    warm-up that leaves no reaction to simulate (unless bench's ``--forecast`` replaces
    it), an NLL that cannot be scored."""
    cut = args.max_reactions
    if getattr(args, "forecast", None) is None and cut is not None and args.warmup >= cut:
        raise ValueError(
            f"--warmup {args.warmup} leaves nothing to simulate in episodes cut to "
            f"--max-reactions {cut}: give a warm-up below {cut}"
        )
    if args.nll and args.model.startswith("http") and not args.tokenizer:
        raise ValueError("--nll over HTTP needs --tokenizer (smollm2, a folder or a hub id)")


def validate(args: argparse.Namespace) -> None:
    """Refuse options that contradict each other before any work: ``run`` calls it first,
    before it reads a scenario or touches ``--out``."""
    check_episode_options(args)
    source = args.scenario.partition(":")[0]
    if args.policy.endswith("classifier"):
        if not has_fit_set(args.scenario, args.fit):
            raise ValueError(f"classifier policies need --fit SPEC for {source!r} scenarios")
    elif args.fit:
        raise ValueError(f"--fit is for the classifier policies, not --policy {args.policy}")
    if args.policy not in LLM_POLICIES:
        for flag, given in (
            ("--adapter", args.adapter is not None),
            ("--mean-field-adapter", args.mean_field_adapter is not None),
            (f"--mean-field {args.mean_field}", args.mean_field in ("llm", "cos")),
            ("--nll", args.nll),
        ):
            if given:
                raise ValueError(f"{flag} needs an LLM policy ({', '.join(LLM_POLICIES)})")
        note_unused_options(args, f"--policy {args.policy} (not an LLM policy)", LLM_OPTIONS)
        return
    if args.policy == "sft" and args.adapter is None:
        raise ValueError(
            "--policy sft is the State policy with a fine-tuned adapter: pass --adapter"
        )
    # refuses --mean-field for recent and popular
    mean_field = mean_field_choice(policy_options(args))
    if args.mean_field_adapter is not None and mean_field not in ("llm", "cos"):
        raise ValueError("--mean-field-adapter needs an LLM mean field: --mean-field llm|cos")
    if args.policy not in ("recent", "popular"):
        note_unused_options(args, f"--policy {args.policy}", ("k",))
    if mean_field not in ("llm", "cos"):
        note_unused_options(args, f"the {mean_field} mean field", ("summary_tokens",))
    if mean_field != "cos":
        note_unused_options(args, f"the {mean_field} mean field", ("cos_every",))


LLM_OPTIONS = (
    "model",
    "tokenizer",
    "k",
    "max_new_tokens",
    "summary_tokens",
    "temperature",
    "cos_every",
    "show_shares",
    "generation_dtype",
    "draft_tokens",
)
"""Options that only LLM policies and mean fields read."""


def note_unused_options(args: argparse.Namespace, what: str, names: tuple[str, ...]) -> None:
    """Say on stderr which of the options ``names`` were set away from their defaults
    although ``what`` does not read them (the run goes on; ``config.json`` still holds
    them as given)."""
    unused = [
        f"--{name.replace('_', '-')} {shlex.quote(str(getattr(args, name)))}"
        for name in names
        if getattr(args, name) != RUN_DEFAULTS.get(name)
    ]
    if unused:
        verb = "has" if len(unused) == 1 else "have"
        print(
            f"mfllm simulate: note: {', '.join(unused)} {verb} no effect with {what}; ignored",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    validate(args)
    folder = RunFolder(args.out, "simulate", resume=args.resume, overwrite=args.overwrite)
    needs_fit = args.policy.endswith("classifier")
    # Stream the scenarios (a whole CED archive need not fit in memory), except where the
    # fit must know them all to leave them out.
    stream = iter_spec(args.scenario, limit=args.limit)
    evaluated = list(stream) if needs_fit else [next(stream)]
    scenarios = evaluated if needs_fit else chain(evaluated, stream)
    env_options = {"agents_per_step": args.agents_per_step, "max_reactions": args.max_reactions}
    scheme = scheme_for(evaluated[0].default_label_dimension)
    options = policy_options(args)
    if args.policy in LLM_POLICIES:
        if args.no_progress:  # transformers' loading bars too
            from training.run_folder import hide_progress_bars

            hide_progress_bars()
        policy, new_mean_field = llm_parts(options, scheme, evaluated[0].language)
    else:
        policy, new_mean_field = build_policy(options, scheme, evaluated), None
    mean_field = mean_field_choice(options) if args.policy in LLM_POLICIES else "histogram"

    def make_env(scenario: Scenario) -> PopulationEnv:
        check_one_scheme(scenario, scheme)
        return RUMOUR.population_env(
            scenario,
            warmup=args.warmup,
            action_mode=policy.action_mode,
            mean_field=new_mean_field() if new_mean_field else None,
            **env_options,
        )

    config = {
        **vars(args),
        "out": str(args.out),
        "adapter": str(args.adapter) if args.adapter else None,
        "mean_field_adapter": str(args.mean_field_adapter) if args.mean_field_adapter else None,
        "label_scheme": scheme.name,
        "mean_field": mean_field,
    }
    # What "auto" became on this machine (bf16 samples differ from fp32's).
    generation_dtype = getattr(getattr(policy, "backend", None), "generation_dtype", None)
    if generation_dtype:
        config["generation_dtype"] = generation_dtype
    if args.resume and folder.previous and policy.action_mode == "text" and args.parallel > 1:
        print(
            f"note: with --parallel {args.parallel} an LLM policy's episodes are batched "
            "together, so the episodes played now (in other batches than an uninterrupted "
            "run's) may sample other texts; --parallel 1 resumes to the byte",
            file=sys.stderr,
        )
    with (
        folder.writing(config, may_change={"no_progress", "threads"}, results=RESULTS),
        warnings.catch_warnings(),
    ):
        # Reported below in the command's own words.
        warnings.simplefilter("ignore", EpisodeSkippedWarning)
        summary = simulate(
            scenarios,
            make_env,
            policy,
            args.out,
            seed=args.seed,
            parallel=args.parallel,
            progress=not args.no_progress,
            resume=args.resume,
        )
    if summary["skipped"]:
        print(f"skipped {summary['skipped']} episode(s) shorter than the warm-up ({args.warmup})")
    note = label_source_note(summary)
    if note:
        print(f"note: {note}")
    episodes = summary["episodes"]
    if episodes == 1:
        print(f"1 episode, policy {args.policy}:")
    else:
        print(f"{episodes} episodes, policy {args.policy}; mean ± standard error over episodes:")
    for name, stats in summary["metrics"].items():
        spread = f" ± {stats['stderr']:.4f}" if episodes > 1 else ""
        print(f"  {name:18s} {stats['mean']:.4f}{spread}")
    speed = json.loads((args.out / "timing.json").read_text())
    line = f"  wall time {speed['wall_seconds']:.1f} s ({speed['episodes_played']:.0f} played now)"
    if "generated_tokens_per_second" in speed:
        line += f", {speed['generated_tokens_per_second']:.1f} generated tokens/s"
    print(line)
    if generation_dtype:
        drafts = policy.backend.draft_tokens
        print(f"  generation in {generation_dtype}, drafts of up to {drafts} tokens")
    files = "config.json, trajectory.jsonl, episodes.jsonl, metrics.json, timing.json, shares.png"
    print(f"wrote {args.out}/ ({files})")
    return 0
