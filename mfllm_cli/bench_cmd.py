"""``mfllm bench``: every policy on every episode under every seed, and a leaderboard.

The bench folder (``--out``) holds:

- ``config.json``: the settings every episode was played with (a resume must match them);
- ``episodes.jsonl``: one record per played episode (:func:`mfllm_env.benchmark.episode_record`:
  policy, seed, settings, token counts, wall time, the real and simulated label ids),
  appended as each episode finishes, so an interrupted bench keeps every finished episode
  and ``--resume`` plays only the missing ones;
- ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``: mean ± standard error per
  policy, the KL by rollout horizon, paired comparisons, cost (rewritten at most once a
  minute while a bench runs, and at the end);
- ``kl_by_policy.png``, ``horizons.png`` and ``trajectories/<episode>.png``.

Episode ``e`` under seed ``s`` is played with a seed derived from ``(s, e)`` and the LLM
mean field is seeded with ``s``; episodes are stepped one at a time by default
(``--parallel 1``), so each episode's result depends only on its seeds and a resumed
bench gives the same leaderboard as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.backends import Backend
from agents.baselines import RealTextPolicy
from mfllm_cli.simulate_cmd import (
    CLASSIFIER_POLICIES,
    FIT_DEFAULTS,
    LLM_POLICIES,
    MEAN_FIELDS,
    RUN_DEFAULTS,
    add_episode_arguments,
    build_policy,
    fit_scenarios,
    llm_parts,
    load_llm_backends,
)
from mfllm_cli.specs import iter_spec
from mfllm_env.benchmark import (
    LEADERBOARD_METRICS,
    NAIVE_FORECASTERS,
    comparison_lines,
    csv_text,
    episode_record,
    leaderboard,
    markdown_table,
    paired_comparison,
    read_records,
    scored_rows,
)
from mfllm_env.labels import LabelScheme, scheme_for
from mfllm_env.mean_field import MeanFieldModel
from mfllm_env.metrics import share_trajectory
from mfllm_env.population_env import PopulationEnv
from mfllm_env.report import plot_horizons, plot_metric_bars, plot_policy_shares
from mfllm_env.scenario import Scenario
from mfllm_env.simulation import Policy, file_slug, json_ready, play_episodes

REAL_TEXTS = "real-texts"
BENCH_POLICIES = (*CLASSIFIER_POLICIES, *LLM_POLICIES, "mf-ib-tune", REAL_TEXTS)
NON_LLM = (*CLASSIFIER_POLICIES, REAL_TEXTS)
MEAN_FIELD_POLICIES = ("mf", "mf-ib-tune")
NON_MEAN_FIELD_LLM = ("state", "recent", "popular", "sft")
PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a 2-core CPU: two short synthetic episodes, two seeds, small generations,
    # the LLM policies' NLL of the real reactions.
    "ci": {
        "scenarios": "synthetic:0-1",
        "policies": "random,herding,state-classifier,mf-classifier,state,mf,real-texts",
        "seeds": "0,1",
        "warmup": 16,
        "max_reactions": 48,
        "agents_per_step": 8,
        "max_new_tokens": 12,
        "summary_tokens": 32,
        "horizons": "8,16,32",
        "nll": True,
    },
    # Every policy (sft and mf-ib-tune when their adapters are given), ten synthetic
    # episodes at the simulation's defaults, three seeds; README "Benchmarks" says how long.
    "full": {
        "scenarios": "synthetic:0-9",
        "policies": ",".join(BENCH_POLICIES),
        "seeds": "0,1,2",
        "horizons": "16,32,64,128",
    },
}
BENCH_DEFAULTS = {**RUN_DEFAULTS, "parallel": 1, "horizons": "16,32,64"}
# Settings that change what an episode's result is; a resume must keep them.
EPISODE_SETTINGS = (
    "scenarios", "warmup", "forecast", "max_reactions", "agents_per_step", "limit", "fit",
    "model", "tokenizer", "max_new_tokens", "summary_tokens", "temperature", "k", "cos_every",
    "show_shares", "nll", "mean_field", "sft_adapter", "ib_tune", "parallel",
)  # fmt: skip
TRAJECTORY_PLOTS = 3
REPORT_EVERY_SECONDS = 60.0  # during a bench, the leaderboard is rewritten at most this often


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
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--out", required=True, type=Path, help="bench folder")
    parser.add_argument("--resume", action="store_true", help="continue an existing folder")
    parser.add_argument(
        "--forecast",
        type=float,
        metavar="PCT",
        help="trend forecasting: warm up on the first PCT%% of each episode (instead of "
        "--warmup reactions) and forecast the rest",
    )
    parser.add_argument(
        "--horizons",
        help="rollout lengths (reactions after warm-up) at which to report the KL, e.g. "
        "16,32,64 (episodes with shorter rollouts do not count at that horizon)",
    )
    parser.add_argument(
        "--mean-field",
        choices=MEAN_FIELDS,
        help="the mean field of the mf policy (default llm)",
    )
    parser.add_argument("--sft-adapter", type=Path, help="adapter of the sft policy")
    parser.add_argument(
        "--ib-tune",
        type=Path,
        help="an mfllm train ib-tune folder: mf-ib-tune uses its adapters/policy and "
        "adapters/mean_field",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=2000, help="bootstrap resamples per comparison"
    )
    add_episode_arguments(parser, {})
    parser.set_defaults(func=run)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{flag} must list distinct integers, got {text!r}")
    return values


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill what the user left out from the preset, then from the defaults, and check it."""
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
    fit_flag = None if args.fit or source in FIT_DEFAULTS else f"--fit SPEC for {source!r}"
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
    args.seed_list = _int_list(str(args.seeds), "--seeds")
    if min(args.seed_list) < 0:
        raise ValueError(f"--seeds must be >= 0, got {args.seeds!r}")
    args.horizon_list = _int_list(str(args.horizons), "--horizons")
    if min(args.horizon_list) < 1:
        raise ValueError(f"--horizons must be >= 1, got {args.horizons!r}")
    if args.forecast is not None and not 0 < args.forecast < 100:
        raise ValueError(f"--forecast must be a percentage in (0, 100), got {args.forecast}")
    for name in ("warmup", "agents_per_step", "parallel", "bootstrap", "limit", "max_reactions"):
        value = getattr(args, name)
        least = 0 if name == "warmup" else 1
        if value is not None and value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")
    return args


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` under bench seed ``seed`` (distinct for every pair)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def warmup_of(args: argparse.Namespace, scenario: Scenario) -> int:
    """``--warmup``, or with ``--forecast`` that share of the episode (at least one
    reaction on each side)."""
    if args.forecast is None:
        return args.warmup
    total = len(scenario.reactions[: args.max_reactions])
    return min(max(round(total * args.forecast / 100), 1), max(total - 1, 1))


def prepare_folder(args: argparse.Namespace) -> None:
    """Create the bench folder, or check that a resumed one has the same episode
    settings, and write its ``config.json``."""
    settings = {name: getattr(args, name) for name in EPISODE_SETTINGS}
    settings = json.loads(json.dumps(settings, default=str))
    path = args.out / "config.json"
    if path.exists():
        if not args.resume:
            raise ValueError(f"{args.out} holds a bench already: pass --resume to continue it")
        saved = json.loads(path.read_text())["settings"]
        changed = sorted(k for k in settings if saved.get(k) != settings[k])
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {settings[k]!r}" for k in changed)
            raise ValueError(
                f"--resume with other episode settings than {path} ({details}); policies, "
                "seeds, horizons and threads may change, these may not"
            )
    elif args.resume and args.out.exists() and any(args.out.iterdir()):
        raise ValueError(f"--resume: {args.out} has no config.json; is it a bench folder?")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": settings, "command": sys.argv}, indent=2))
    tmp.replace(path)


class PolicyFactory:
    """Builds each policy once per seed, loading each model and fitting each classifier
    once per bench."""

    def __init__(
        self, args: argparse.Namespace, scheme: LabelScheme, evaluated: list[Scenario]
    ) -> None:
        self.args, self.scheme, self.evaluated = args, scheme, evaluated
        self.backends: dict[tuple, Backend] = {}
        self.classifiers: dict[str, Policy] = {}

    def options(self, name: str, seed: int) -> argparse.Namespace:
        """The ``mfllm simulate`` arguments that describe policy ``name``."""
        options = argparse.Namespace(**vars(self.args))
        options.seed = seed
        options.policy = "mf" if name == "mf-ib-tune" else name
        options.adapter = options.mean_field_adapter = None
        options.mean_field = self.args.mean_field if name in MEAN_FIELD_POLICIES else None
        options.scenario = self.args.scenarios
        if name == "sft":
            options.adapter = self.args.sft_adapter
        if name == "mf-ib-tune":
            options.mean_field = "llm"
            options.adapter = self.args.ib_tune / "adapters" / "policy"
            options.mean_field_adapter = self.args.ib_tune / "adapters" / "mean_field"
        return options

    def settings(self, name: str) -> dict[str, Any]:
        options = self.options(name, 0)
        if name in NON_LLM:
            return {"kind": "non-LLM", "fit": self.args.fit if name != REAL_TEXTS else None}
        return {
            "kind": "LLM",
            "model": options.model,
            "adapter": str(options.adapter) if options.adapter else None,
            "mean_field": options.mean_field or ("llm" if options.policy == "mf" else None),
            "mean_field_adapter": (
                str(options.mean_field_adapter) if options.mean_field_adapter else None
            ),
        }

    def build(
        self, name: str, seed: int, language: str
    ) -> tuple[Policy, Callable[[], MeanFieldModel] | None]:
        options = self.options(name, seed)
        if name == REAL_TEXTS:
            return RealTextPolicy(), None
        if name in CLASSIFIER_POLICIES:
            if name not in self.classifiers:
                env_options = {
                    "agents_per_step": self.args.agents_per_step,
                    "max_reactions": self.args.max_reactions,
                }
                self.classifiers[name] = build_policy(
                    options, self.scheme, env_options, self.evaluated
                )
            return self.classifiers[name], None
        backends = load_llm_backends(options, self.backends)
        return llm_parts(options, self.scheme, language, backends)


def training_prior(
    args: argparse.Namespace, scheme: LabelScheme, evaluated: list[Scenario]
) -> list[float] | None:
    """The label shares of the data the classifier baselines are fitted on, or ``None``
    where the source has no default fit and no ``--fit`` was given."""
    source = args.scenarios.partition(":")[0]
    if not args.fit and source not in FIT_DEFAULTS:
        return None
    fitted, _ = fit_scenarios(argparse.Namespace(fit=args.fit, scenario=args.scenarios), evaluated)
    counts = np.zeros(scheme.size)
    for scenario in fitted:
        env = PopulationEnv(
            scenario, warmup=0, max_reactions=args.max_reactions, label_dimension=scheme
        )
        counts += np.bincount(env.real_label_ids, minlength=scheme.size)
    return (counts / counts.sum()).tolist()


def run(args: argparse.Namespace) -> int:
    args = resolve(args)
    scenarios = list(iter_spec(args.scenarios, limit=args.limit))
    scheme = scheme_for(scenarios[0].default_label_dimension)
    playable = [
        (e, s)
        for e, s in enumerate(scenarios)
        if warmup_of(args, s) < len(s.reactions[: args.max_reactions])
    ]
    skipped = len(scenarios) - len(playable)
    args.episode_ids = {s.scenario_id for _, s in playable}
    if not playable:
        raise ValueError(f"every episode of {args.scenarios} is shorter than the warm-up")
    prepare_folder(args)
    records_path = args.out / "episodes.jsonl"
    records, broken = read_records(records_path)
    if broken:
        print(
            f"{broken} unreadable line(s) in {records_path} (an interrupted write): dropped, "
            "and those episodes played again",
            file=sys.stderr,
        )
        rewritten = records_path.with_suffix(".tmp")
        rewritten.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        rewritten.replace(records_path)
    done = {(r["policy"], r["seed"], r["episode"]) for r in records}
    evaluated = [s for _, s in playable]
    prior = training_prior(args, scheme, evaluated)
    factory = PolicyFactory(args, scheme, evaluated)
    total = len(args.policy_list) * len(args.seed_list) * len(playable)
    finished = sum(
        (name, seed, s.scenario_id) in done
        for name in args.policy_list
        for seed in args.seed_list
        for s in evaluated
    )
    todo = [
        (name, seed)
        for name in args.policy_list
        for seed in args.seed_list
        if any((name, seed, s.scenario_id) not in done for _, s in playable)
    ]
    print(
        f"bench: {len(args.policy_list)} policies x {len(args.seed_list)} seeds x "
        f"{len(playable)} episodes = {total} runs ({total - finished} to "
        f"play){f'; skipped {skipped} episode(s) shorter than the warm-up' if skipped else ''}",
        file=sys.stderr,
    )
    bar = tqdm(total=total, initial=finished, unit="ep", disable=args.no_progress)
    reported = time.monotonic()
    with open(records_path, "a", encoding="utf-8") as out:
        for name, seed in todo:
            bar.set_description(f"{name} seed {seed}")
            policy, new_mean_field = factory.build(name, seed, scenarios[0].language)
            settings = factory.settings(name)

            def episodes(
                name: str = name, seed: int = seed, new_mean_field=new_mean_field, policy=policy
            ):
                for index, scenario in playable:
                    if (name, seed, scenario.scenario_id) in done:
                        continue
                    env = PopulationEnv(
                        scenario,
                        warmup=warmup_of(args, scenario),
                        agents_per_step=args.agents_per_step,
                        max_reactions=args.max_reactions,
                        action_mode=policy.action_mode,
                        mean_field=new_mean_field() if new_mean_field else None,
                    )
                    yield env, episode_seed(seed, index)

            for result in play_episodes(episodes(), policy, parallel=args.parallel):
                record = episode_record(
                    result.env,
                    policy=name,
                    seed=seed,
                    episode_seed=result.seed,
                    metrics=result.metrics,
                    settings=settings,
                )
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                records.append(record)
                bar.update(1)
            if time.monotonic() - reported > REPORT_EVERY_SECONDS:
                write_report(args, records, prior)
                reported = time.monotonic()
    bar.close()
    table = write_report(args, records, prior)
    print(
        markdown_table(
            table, [(k, t) for k, t, _ in LEADERBOARD_METRICS[:1] + LEADERBOARD_METRICS[5:7]]
        )
    )
    print(f"wrote {args.out}/ (episodes.jsonl, leaderboard.md/.csv/.json, kl_by_policy.png, "
          "horizons.png, trajectories/)")  # fmt: skip
    return 0


def comparisons(
    rows: dict[str, dict[str, list]], table: dict[str, dict[str, Any]], resamples: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired bootstraps on the macro KL: each row against the best row (real-texts, the
    labeller's ceiling, is not ranked), and each mean-field policy against the best
    non-mean-field LLM baseline (the paper's question)."""
    ranked = sorted(
        (p for p in table if p != REAL_TEXTS and not math.isnan(table[p]["kl"]["mean"])),
        key=lambda p: table[p]["kl"]["mean"],
    )
    result: dict[str, dict[str, dict[str, float]]] = {"vs_best": {}, "mean_field_vs_baseline": {}}
    if not ranked:
        return result
    best = ranked[0]
    for policy in ranked[1:]:
        result["vs_best"][f"{policy} vs {best}"] = paired_comparison(
            rows[policy]["runs"], rows[best]["runs"], "kl", resamples=resamples
        )
    baselines = [p for p in ranked if p in NON_MEAN_FIELD_LLM]
    for policy in (p for p in ranked if p in MEAN_FIELD_POLICIES):
        if baselines:
            result["mean_field_vs_baseline"][f"{policy} vs {baselines[0]}"] = paired_comparison(
                rows[policy]["runs"], rows[baselines[0]]["runs"], "kl", resamples=resamples
            )
    return result


def cost_rows(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per policy: mean seconds, prompt and completion tokens per episode, and fallbacks
    (unusable actions given the fallback label) per simulated reaction."""
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_policy.setdefault(record["policy"], []).append(record)
    rows = {}
    for policy, group in by_policy.items():
        reactions = sum(len(r["real_label_ids"]) for r in group)
        usage = [r["metrics"] for r in group]

        def per_episode(key: str, usage: list[dict[str, Any]] = usage) -> float:
            """Mean over episodes of the policy's and the mean field's ``key`` together."""
            return float(np.mean([u.get(key, 0) + u.get(f"mean_field_{key}", 0) for u in usage]))

        rows[policy] = {
            "seconds_per_episode": float(np.mean([r["seconds"] for r in group])),
            "prompt_tokens_per_episode": per_episode("prompt_tokens"),
            "completion_tokens_per_episode": per_episode("completion_tokens"),
            "fallbacks_per_reaction": sum(u.get("fallbacks", 0) for u in usage) / reactions,
            "backend_errors": float(sum(u.get("backend_errors", 0) for u in usage)),
        }
    return rows


def write_report(
    args: argparse.Namespace, records: list[dict[str, Any]], prior: list[float] | None
) -> dict[str, dict[str, Any]]:
    """Rewrite the leaderboard files and plots from the ``records`` of the policies,
    seeds and episodes asked for (a folder may hold others); returns the table."""
    records = [
        r
        for r in records
        if r["policy"] in args.policy_list
        and r["seed"] in args.seed_list
        and r["episode"] in args.episode_ids
    ]
    keys = [key for key, _, _ in LEADERBOARD_METRICS]
    horizon_keys = [f"kl@{h}" for h in args.horizon_list]
    rows = scored_rows(records, horizons=args.horizon_list, prior=prior)
    order = [p for p in BENCH_POLICIES if p in rows] + [p for p in NAIVE_FORECASTERS if p in rows]
    table = leaderboard({p: rows[p] for p in order}, keys + horizon_keys)
    compared = comparisons(rows, table, args.bootstrap)
    costs = cost_rows(records)
    lines = [
        f"# Benchmark: {args.scenarios}",
        "",
        _settings_line(args, prior),
        "",
        "## Leaderboard",
        "",
        "Mean ± standard error over episodes (each episode's mean over its seeds); metrics "
        "over the rollout, the reactions after warm-up. Lower is better except the F1s. "
        "Naive forecasters predict shares, not reactions: no F1. real-texts posts the real "
        "reactions, so where the real labels come from the data (human or ground truth) its "
        "row is the labeller's own error -- its micro-F1 the labeller's accuracy -- and no "
        "text policy can be expected to score better; label-mode policies (random, herding, "
        "the classifiers) bypass the labeller and can.",
        "",
        markdown_table(table, [(k, t) for k, t, _ in LEADERBOARD_METRICS]),
        "",
        "## KL by rollout horizon",
        "",
        "KL between the real and simulated label shares of the first H reactions after "
        "warm-up; an episode counts at H only if its rollout is that long. Short horizons "
        "hold fewer reactions, so their KL carries more sampling noise: compare rows at one H.",
        "",
        markdown_table(table, [(k, f"KL@{k[3:]}") for k in horizon_keys]),
        "",
        "## Is the difference larger than the noise?",
        "",
        "Paired over the episodes both rows played: a sign-flip permutation test (p) gives "
        f"the verdict at 5%; a paired bootstrap ({args.bootstrap} resamples) the 95% "
        "intervals of the difference and of the relative change. The best row and the best "
        "baseline are chosen on the same episodes they are then compared on, and each line "
        "is a test of its own (no correction for multiple comparisons): read a lone p near "
        "0.05 as a hint, not a finding.",
        "",
        comparison_lines(compared["vs_best"], "KL") or "- one row only",
        "",
        "## Mean-field policies against the best non-mean-field LLM baseline",
        "",
        comparison_lines(compared["mean_field_vs_baseline"], "KL")
        or "- needs an mf policy and one of state, recent, popular, sft",
        "",
        "## Cost",
        "",
        "| policy | s / episode | prompt tokens / episode | generated tokens / episode | "
        "fallbacks / reaction | backend errors |",
        "|---|---|---|---|---|---|",
    ]
    for policy, cost in costs.items():
        lines.append(
            f"| {policy} | {cost['seconds_per_episode']:.1f} | "
            f"{cost['prompt_tokens_per_episode']:.0f} | "
            f"{cost['completion_tokens_per_episode']:.0f} | "
            f"{cost['fallbacks_per_reaction']:.3f} | {cost['backend_errors']:.0f} |"
        )
    out = args.out
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "leaderboard.csv").write_text(csv_text(table, keys + horizon_keys), encoding="utf-8")
    payload = {"leaderboard": table, "comparisons": compared, "cost": costs, "prior": prior}
    (out / "leaderboard.json").write_text(
        json.dumps(json_ready(payload), indent=2, allow_nan=False), encoding="utf-8"
    )
    write_plots(args, records, table)
    return table


def _settings_line(args: argparse.Namespace, prior: list[float] | None) -> str:
    warmup = (
        f"warm-up on the first {args.forecast:g}% of each episode (forecasting the rest)"
        if args.forecast is not None
        else f"{args.warmup} reactions of warm-up"
    )
    llm = any(p not in NON_LLM for p in args.policy_list)
    prior_text = (
        "no training prior (no fit data)"
        if prior is None
        else "training prior " + ", ".join(f"{p:.3f}" for p in prior)
    )
    model = (
        f"model {args.model}, {args.max_new_tokens} tokens per action, {args.summary_tokens} "
        f"per summary, temperature {args.temperature}; "
        if llm
        else ""
    )
    return (
        f"Seeds {args.seeds}; {warmup}; {args.agents_per_step} agents per step; "
        f"max reactions {args.max_reactions or 'all'}; {model}{prior_text}."
    )


def write_plots(
    args: argparse.Namespace, records: list[dict[str, Any]], table: dict[str, dict[str, Any]]
) -> None:
    names = [p for p in table if not math.isnan(table[p]["kl"]["mean"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN horizons
        plot_metric_bars(
            [table[p]["kl"]["mean"] for p in names],
            [table[p]["kl"]["stderr"] for p in names],
            names,
            args.out / "kl_by_policy.png",
            metric="macro KL(real ‖ sim), final shares of the rollout",
            title="KL by policy (grey: naive forecasters), mean ± s.e. over episodes",
            highlight=[p in NAIVE_FORECASTERS for p in names],
        )
        curves = {
            p: (
                [table[p][f"kl@{h}"]["mean"] for h in args.horizon_list],
                [table[p][f"kl@{h}"]["stderr"] for h in args.horizon_list],
            )
            for p in names
        }
        plot_horizons(
            args.horizon_list, curves, args.out / "horizons.png", title="KL by rollout horizon"
        )
    first_seed = min(r["seed"] for r in records)
    episodes = list(dict.fromkeys(r["episode"] for r in records))[:TRAJECTORY_PLOTS]
    for episode in episodes:
        chosen = [r for r in records if r["episode"] == episode and r["seed"] == first_seed]
        if not chosen:
            continue
        first = chosen[0]
        k, step = len(first["labels"]), first["agents_per_step"]
        real = np.asarray(first["real_label_ids"])
        sims = {}
        for record in chosen:
            world = np.concatenate(
                [real[: record["warmup"]], np.asarray(record["sim_label_ids"])[record["warmup"] :]]
            )
            sims[record["policy"]] = share_trajectory(world, k, step_size=step)
        x = np.minimum(np.arange(1, len(next(iter(sims.values()))) + 1) * step, real.size)
        plot_policy_shares(
            share_trajectory(real, k, step_size=step),
            sims,
            first["labels"],
            args.out / "trajectories" / f"{file_slug(episode)}.png",
            x_values=x,
            warmup=first["warmup"],
            title=f"{episode}: real vs simulated shares (seed {first_seed})",
        )
