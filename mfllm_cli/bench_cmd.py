"""``mfllm bench``: every policy on every episode under every seed, and a leaderboard.

The bench folder (``--out``, a run folder: see :mod:`mfllm_env.runs`) holds:

- ``config.json``: the settings every episode was played with (a resume must match them);
- ``episodes.jsonl``: one record per played episode (:func:`mfllm_env.benchmark.episode_record`:
  policy, seed, settings, token counts, the real and simulated label ids), appended as
  each episode finishes, so an interrupted bench keeps every finished episode and
  ``--resume`` plays only the missing ones; put in a fixed order (policy, seed, episode)
  at the end;
- ``timing.jsonl`` (the wall time of each episode) and ``timing.json`` (per policy, the
  mean wall time per episode): the only wall-clock figures of the folder;
- ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``: mean ± standard error per
  policy, the KL by rollout horizon, paired comparisons, cost in tokens and fallbacks
  (rewritten at most once a minute while a bench runs, and at the end);
- ``kl_by_policy.png``, ``horizons.png`` and ``trajectories/<episode>.png`` (names from
  :func:`mfllm_env.runs.file_name`).

Episode ``e`` under seed ``s`` is played with a seed derived from ``(s, e)``
(:func:`mfllm_env.simulation.episode_seed`) and the LLM mean field is seeded with ``s``;
episodes are stepped one at a time by default (``--parallel 1``), so each episode's result
depends only on its seeds and a resumed bench writes the records and leaderboard of an
uninterrupted one, to the byte.
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
    CLASSIFIER_POLICIES,
    FIT_DEFAULTS,
    LLM_POLICIES,
    MEAN_FIELDS,
    RUN_DEFAULTS,
    add_episode_arguments,
    build_policy,
    check_episode_options,
    check_one_scheme,
    fit_scenarios,
    llm_parts,
    load_llm_backends,
)
from mfllm_cli.specs import iter_spec
from mfllm_env import runs
from mfllm_env.benchmark import (
    LEADERBOARD_METRICS,
    NAIVE_FORECASTERS,
    NOISE_AWARE_METRICS,
    NOISE_FLOOR,
    NOISE_FLOOR_RESAMPLES,
    RECORD_KEYS,
    DistributionRecorder,
    comparison_lines,
    csv_text,
    episode_record,
    leaderboard,
    markdown_table,
    paired_comparison,
    scored_rows,
)
from mfllm_env.labelers import default_labeler
from mfllm_env.labels import ActionLabeler, LabelScheme, scheme_for
from mfllm_env.mean_field import MeanFieldModel
from mfllm_env.metrics import share_trajectory
from mfllm_env.population_env import PopulationEnv
from mfllm_env.report import plot_horizons, plot_metric_bars, plot_policy_shares
from mfllm_env.runs import RunFolder
from mfllm_env.scenario import Scenario
from mfllm_env.simulation import (
    Policy,
    episode_seed,
    json_ready,
    label_source_note,
    label_source_totals,
    play_episodes,
)

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
# Settings that change what an episode's result is; a resume must keep them.
EPISODE_SETTINGS = (
    "scenarios", "warmup", "forecast", "max_reactions", "agents_per_step", "limit", "fit",
    "model", "tokenizer", "max_new_tokens", "summary_tokens", "temperature", "k", "cos_every",
    "show_shares", "nll", "mean_field", "sft_adapter", "ib_tune", "parallel",
)  # fmt: skip
# Episode settings written into config.json only when they differ from their default, so
# a bench without them keeps the config (and resumes the folders) of earlier versions.
NEW_EPISODE_SETTINGS = {"samples_per_agent": 1, "min_reactions": None}
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
    args.seed_list, args.horizon_list = args.seeds, args.horizons
    check_episode_options(args)
    return args


def warmup_of(args: argparse.Namespace, scenario: Scenario) -> int:
    """``--warmup``, or with ``--forecast`` that share of the episode (at least one
    reaction on each side)."""
    if args.forecast is None:
        return args.warmup
    total = len(scenario.reactions[: args.max_reactions])
    return min(max(round(total * args.forecast / 100), 1), max(total - 1, 1))


def folder_config(args: argparse.Namespace) -> dict[str, Any]:
    """The bench's ``config.json``: the episode settings (a resume must keep them) and the
    command line (which may change)."""
    settings = {name: getattr(args, name) for name in EPISODE_SETTINGS}
    for name, default in NEW_EPISODE_SETTINGS.items():
        if getattr(args, name) != default:
            settings[name] = getattr(args, name)
    return {**json.loads(json.dumps(settings, default=str)), "argv": sys.argv[1:]}


class PolicyFactory:
    """Builds each policy once per seed, loading each model and fitting each classifier
    once per bench. With ``--samples-per-agent`` K > 1, the LLM policies draw K samples per
    agent and label them with ``labeler``, the one the bench's environments label with."""

    def __init__(
        self,
        args: argparse.Namespace,
        scheme: LabelScheme,
        evaluated: list[Scenario],
        labeler: ActionLabeler | None = None,
    ) -> None:
        self.args, self.scheme, self.evaluated = args, scheme, evaluated
        self.labeler = labeler
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
        settings = {
            "kind": "LLM",
            "model": options.model,
            "adapter": str(options.adapter) if options.adapter else None,
            "mean_field": options.mean_field or ("llm" if options.policy == "mf" else None),
            "mean_field_adapter": (
                str(options.mean_field_adapter) if options.mean_field_adapter else None
            ),
        }
        if self.args.samples_per_agent > 1:  # one sample: the records of earlier versions
            settings["samples_per_agent"] = self.args.samples_per_agent
        return settings

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
        policy, new_mean_field = llm_parts(options, self.scheme, language, backends)
        if self.args.samples_per_agent > 1:
            policy = policy.sampling(self.args.samples_per_agent, self.labeler)
        return policy, new_mean_field


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


def bench_labeler(scheme: LabelScheme) -> ActionLabeler:
    """The labeller a bench's environments and sampling LLM policies share: the scheme's
    default (``ValueError`` naming the scheme where it has none)."""
    try:
        return default_labeler(scheme)
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"--samples-per-agent labels each sample, but the {scheme.name!r} labels have no "
            f"default labeller: {error}"
        ) from None


def run(args: argparse.Namespace) -> int:
    folder = RunFolder(args.out, "bench", resume=args.resume, overwrite=args.overwrite)
    args = resolve(args)
    scenarios = list(iter_spec(args.scenarios, limit=args.limit, min_reactions=args.min_reactions))
    scheme = scheme_for(scenarios[0].default_label_dimension)
    for scenario in scenarios:
        check_one_scheme(scenario, scheme)
    playable = [
        (e, s)
        for e, s in enumerate(scenarios)
        if warmup_of(args, s) < len(s.reactions[: args.max_reactions])
    ]
    skipped = len(scenarios) - len(playable)
    args.episode_ids = {s.scenario_id for _, s in playable}
    if not playable:
        raise ValueError(f"every episode of {args.scenarios} is shorter than the warm-up")
    evaluated = [s for _, s in playable]
    prior = training_prior(args, scheme, evaluated)
    sampling = args.samples_per_agent > 1 and any(p not in NON_LLM for p in args.policy_list)
    # The labeller of the environments and of the sampling LLM policies (None: the env's
    # default, loaded by each env where it needs one).
    labeler = bench_labeler(scheme) if sampling else None
    factory = PolicyFactory(args, scheme, evaluated, labeler)
    with folder.writing(folder_config(args), may_change={"argv"}, results=RESULTS):
        records = play_bench(args, playable, factory, scenarios[0].language, prior, skipped)
    table, note = write_report(args, records, prior)
    printed = ("kl", "kl_pooled", "kl_expected", "kl_mean_over_time", "dtw")
    print(markdown_table(table, [(k, t) for k, t, _ in LEADERBOARD_METRICS if k in printed]))
    if note:
        print(f"note: {note}")
    print(f"wrote {args.out}/ (episodes.jsonl, leaderboard.md/.csv/.json, timing.json, "
          "kl_by_policy.png, horizons.png, trajectories/)")  # fmt: skip
    return 0


RESULTS = ("episodes.jsonl",)  # a bench folder with records in it is kept if the bench fails


def play_bench(
    args: argparse.Namespace,
    playable: list[tuple[int, Scenario]],
    factory: PolicyFactory,
    language: str,
    prior: list[float] | None,
    skipped: int,
) -> list[dict[str, Any]]:
    """Play the episodes the folder lacks, appending each record (and its wall time, in
    ``timing.jsonl``) as it ends; then put both files in a fixed order (policy, seed,
    episode), so a resumed bench writes the files an uninterrupted one would. Returns
    every record of the folder."""
    records_path, timing_path = args.out / "episodes.jsonl", args.out / "timing.jsonl"
    records = runs.read_records(
        records_path,
        RECORD_KEYS,
        "a benchmark episode record",
        unique=("policy", "seed", "episode"),
    )
    _check_records(records_path, records, args, playable)
    done = {(r["policy"], r["seed"], r["episode"]) for r in records}
    timing = [t for t in runs.read_records(timing_path, TIMING_KEYS) if _key(t) in done]
    runs.write_atomic(timing_path, runs.jsonl_text(timing))  # none of an unfinished episode
    total = len(args.policy_list) * len(args.seed_list) * len(playable)
    finished = sum(
        (name, seed, s.scenario_id) in done
        for name in args.policy_list
        for seed in args.seed_list
        for _, s in playable
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
    with (
        open(records_path, "a", encoding="utf-8") as out,
        open(timing_path, "a", encoding="utf-8") as timing_out,
    ):
        for name, seed in todo:
            bar.set_description(f"{name} seed {seed}")
            policy, new_mean_field = factory.build(name, seed, language)
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
                        labeler=factory.labeler,
                        mean_field=new_mean_field() if new_mean_field else None,
                    )
                    yield env, episode_seed(seed, index)

            recorder = DistributionRecorder(policy)
            for result in play_episodes(episodes(), recorder, parallel=args.parallel):
                record = episode_record(
                    result.env,
                    policy=name,
                    seed=seed,
                    episode_seed=result.seed,
                    metrics=result.metrics,
                    settings=settings,
                    label_distributions=recorder.take(result.index, result.env),
                )
                # Timing first: the record is what marks the episode done.
                seconds = {"seconds": result.metrics["seconds"]}
                runs.append_record(timing_out, {**_identity(record), **seconds})
                runs.append_record(out, record)
                records.append(record)
                bar.update(1)
            if time.monotonic() - reported > REPORT_EVERY_SECONDS:
                write_report(args, records, prior)
                reported = time.monotonic()
    bar.close()
    position = {s.scenario_id: e for e, s in playable}

    def order(row: dict[str, Any]) -> tuple:
        return (
            BENCH_POLICIES.index(row["policy"]) if row["policy"] in BENCH_POLICIES else -1,
            row["policy"],
            row["seed"],
            position.get(row["episode"], len(position)),
            row["episode"],
        )

    _sorted_file(timing_path, runs.read_records(timing_path, TIMING_KEYS), order)
    return _sorted_file(records_path, records, order)


def _check_records(
    path: Path,
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    playable: list[tuple[int, Scenario]],
) -> None:
    """Refuse a record of ``path`` for an episode of this bench that was not played as this
    bench plays it (another warm-up, step size, episode seed or episode length): a line of
    another run that would be scored as this one's."""
    scenarios = {s.scenario_id: (e, s) for e, s in playable}
    for record in records:
        if record["episode"] not in scenarios or record["seed"] not in args.seed_list:
            continue
        index, scenario = scenarios[record["episode"]]
        expected = {
            "warmup": warmup_of(args, scenario),
            "agents_per_step": args.agents_per_step,
            "episode_seed": episode_seed(record["seed"], index),
            "reactions": len(scenario.reactions[: args.max_reactions]),
        }
        held = {**record, "reactions": len(record["real_label_ids"])}
        for field, value in expected.items():
            if held.get(field) != value:
                raise ValueError(
                    f"{path}: the record of {record['policy']} seed {record['seed']} on "
                    f"{record['episode']!r} has {field} {held.get(field)!r}, this bench "
                    f"{value!r}: it holds lines of another run"
                )


def _sorted_file(path: Path, rows: list[dict[str, Any]], key: Callable) -> list[dict[str, Any]]:
    """``rows`` (the records of ``path``) sorted by ``key``, ``path`` rewritten so if
    that changed their order."""
    ordered = sorted(rows, key=key)
    if ordered != rows:
        runs.write_atomic(path, runs.jsonl_text(ordered))
    return ordered


TIMING_KEYS = ("policy", "seed", "episode", "seconds")


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    return {"policy": row["policy"], "seed": row["seed"], "episode": row["episode"]}


def _key(row: dict[str, Any]) -> tuple:
    return (row["policy"], row["seed"], row["episode"])


NOISE_AWARE_COLUMNS = (
    ("kl", "macro KL"),
    ("kl_pooled", "KL pooled"),
    ("js_pooled", "JS pooled"),
    ("tv_pooled", "TV pooled"),
    ("kl_expected", "KL expected"),
    ("js_expected", "JS expected"),
    ("tv_expected", "TV expected"),
)
"""The columns of the report's sampling-noise table: per-seed, pooled, expected."""
COMPARED_METRICS = ("kl", "kl_pooled", "kl_expected")
"""The columns the paired comparisons are made on: per-seed, seed-pooled, expected KL."""
UNRANKED = (REAL_TEXTS, NOISE_FLOOR)  # reference rows, never "the best" policy


def comparisons(
    rows: dict[str, dict[str, list]], table: dict[str, dict[str, Any]], resamples: int
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per metric of :data:`COMPARED_METRICS`, paired comparisons (permutation test and
    bootstrap intervals): each row with that metric against the best such row (real-texts,
    the labeller's ceiling, and the noise floor are not ranked), and each mean-field
    policy against the best non-mean-field LLM baseline (the paper's question)."""
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for key in COMPARED_METRICS:
        ranked = sorted(
            (p for p in table if p not in UNRANKED and not math.isnan(table[p][key]["mean"])),
            key=lambda p, key=key: table[p][key]["mean"],
        )
        compared: dict[str, dict[str, dict[str, float]]] = {
            "vs_best": {},
            "mean_field_vs_baseline": {},
        }
        result[key] = compared
        if not ranked:
            continue
        best = ranked[0]
        for policy in ranked[1:]:
            compared["vs_best"][f"{policy} vs {best}"] = paired_comparison(
                rows[policy]["runs"], rows[best]["runs"], key, resamples=resamples
            )
        baselines = [p for p in ranked if p in NON_MEAN_FIELD_LLM]
        for policy in (p for p in ranked if p in MEAN_FIELD_POLICIES):
            if baselines:
                compared["mean_field_vs_baseline"][f"{policy} vs {baselines[0]}"] = (
                    paired_comparison(
                        rows[policy]["runs"], rows[baselines[0]]["runs"], key, resamples=resamples
                    )
                )
    return result


def cost_rows(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per policy: mean prompt and completion tokens per episode, and fallbacks (unusable
    actions given the fallback label) per simulated reaction (wall times: timing.json)."""
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
            "prompt_tokens_per_episode": per_episode("prompt_tokens"),
            "completion_tokens_per_episode": per_episode("completion_tokens"),
            "fallbacks_per_reaction": sum(u.get("fallbacks", 0) for u in usage) / reactions,
            "backend_errors": float(sum(u.get("backend_errors", 0) for u in usage)),
        }
    return rows


def seconds_per_episode(
    args: argparse.Namespace, records: Sequence[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """``timing.json``: per policy, the mean wall time of the episodes of ``records``
    (from ``timing.jsonl``)."""
    wanted = {_key(r) for r in records}
    seconds: dict[str, list[float]] = {}
    for row in runs.read_records(args.out / "timing.jsonl", TIMING_KEYS):
        if _key(row) in wanted:
            seconds.setdefault(row["policy"], []).append(row["seconds"])
    return {
        policy: {"seconds_per_episode": float(np.mean(values)), "episodes": len(values)}
        for policy, values in seconds.items()
    }


def write_report(
    args: argparse.Namespace, records: list[dict[str, Any]], prior: list[float] | None
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Rewrite the leaderboard files and plots from the ``records`` of the policies,
    seeds and episodes asked for (a folder may hold others); returns the table and the
    note on scored real reactions without a human label (``None`` when there are none)."""
    records = [
        r
        for r in records
        if r["policy"] in args.policy_list
        and r["seed"] in args.seed_list
        and r["episode"] in args.episode_ids
    ]
    keys = [key for key, _, _ in LEADERBOARD_METRICS + NOISE_AWARE_METRICS]
    horizon_keys = [f"kl@{h}" for h in args.horizon_list]
    rows = scored_rows(records, horizons=args.horizon_list, prior=prior)
    references = (*NAIVE_FORECASTERS, NOISE_FLOOR)
    order = [p for p in BENCH_POLICIES if p in rows] + [p for p in references if p in rows]
    table = leaderboard({p: rows[p] for p in order}, keys + horizon_keys)
    compared = comparisons(rows, table, args.bootstrap)
    costs = cost_rows(records)
    # Every policy and seed of an episode is scored against the same real labels.
    label_sources = label_source_totals({r["episode"]: r for r in records}.values())
    note = label_source_note(label_sources)
    lines = [
        f"# Benchmark: {args.scenarios}",
        "",
        _settings_line(args, prior),
        "",
        *([f"Note: {note}.", ""] if note else []),
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
        "## Sampling noise: pooled and expected shares, and the noise floor",
        "",
        "A rollout of n simulated reactions is an n-sample draw, and its KL to the real "
        "window carries that draw's noise, which a naive forecaster's smooth shares do not. "
        "*Pooled*: the simulated labels of all seeds of an episode counted together (the "
        "simulator's expected shares as seeds grow). *Expected*: the mean of the rollout "
        "agents' own label distributions, where the policy reports them (an LLM policy with "
        "--samples-per-agent > 1: the histogram of its samples' labels; a classifier: its "
        "predicted probabilities). The naive forecasters' shares are an expectation already: "
        "their pooled and expected scores are their plain ones. "
        f"'{NOISE_FLOOR}': the mean score of {NOISE_FLOOR_RESAMPLES} multinomial resamples of "
        "the real rollout's size from its own shares (the pooled columns: of all seeds' "
        "size), with KL's usual smoothing (1e-3 on both vectors): what a simulator whose "
        "label distribution is the real shares scores from sampling alone.",
        "",
        markdown_table(table, NOISE_AWARE_COLUMNS),
        "",
        "## KL by rollout horizon",
        "",
        "KL between the real and simulated label shares of the first H reactions after "
        "warm-up; an episode counts at H only if its rollout is that long. Short horizons "
        "hold fewer reactions, so their KL carries more sampling noise (the noise floor row "
        "shows how much): compare rows at one H.",
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
        "0.05 as a hint, not a finding. Each comparison is made on the per-seed, the "
        "seed-pooled and (among the rows that have it) the expected KL.",
        "",
    ]
    titles = {"kl": "KL", "kl_pooled": "pooled KL", "kl_expected": "expected KL"}
    for key in COMPARED_METRICS:
        lines += [
            f"### {titles[key]}: each row against the best",
            "",
            comparison_lines(compared[key]["vs_best"], titles[key]) or "- one row only",
            "",
            f"### {titles[key]}: mean-field policies against the best non-MF LLM baseline",
            "",
            comparison_lines(compared[key]["mean_field_vs_baseline"], titles[key])
            or "- needs an mf policy and one of state, recent, popular, sft with this score",
            "",
        ]
    lines += [
        "## Cost",
        "",
        "Wall time per episode is in timing.json (this report holds no wall-clock figure, "
        "so the same bench writes the same report).",
        "",
        "| policy | prompt tokens / episode | generated tokens / episode | "
        "fallbacks / reaction | backend errors |",
        "|---|---|---|---|---|",
    ]
    for policy, cost in costs.items():
        lines.append(
            f"| {policy} | {cost['prompt_tokens_per_episode']:.0f} | "
            f"{cost['completion_tokens_per_episode']:.0f} | "
            f"{cost['fallbacks_per_reaction']:.3f} | {cost['backend_errors']:.0f} |"
        )
    out = args.out
    runs.write_atomic(out / "leaderboard.md", "\n".join(lines) + "\n")
    runs.write_atomic(out / "leaderboard.csv", csv_text(table, keys + horizon_keys))
    payload = {
        # kl_expected and its kin only in the rows that have them (sampled or predicted)
        "leaderboard": {
            policy: {
                key: value
                for key, value in entry.items()
                if not (key.endswith("_expected") and value["n"] == 0)
            }
            for policy, entry in table.items()
        },
        "comparisons": compared,
        "cost": costs,
        "prior": prior,
        "label_sources": label_sources,
    }
    runs.write_atomic(
        out / "leaderboard.json", json.dumps(json_ready(payload), indent=2, allow_nan=False)
    )
    runs.write_json(out / "timing.json", seconds_per_episode(args, records))
    write_plots(args, records, table)
    return table, note


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
        f"Seeds {', '.join(map(str, args.seed_list))}; {warmup}; "
        f"{args.agents_per_step} agents per step; "
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
            title="KL by policy (grey: naive forecasters, noise floor), mean ± s.e.",
            highlight=[p in NAIVE_FORECASTERS or p == NOISE_FLOOR for p in names],
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
            args.out / "trajectories" / f"{runs.file_name(episode)}.png",
            x_values=x,
            warmup=first["warmup"],
            title=f"{episode}: real vs simulated shares (seed {first_seed})",
        )
