"""The bench pipeline (the library half of ``mfllm bench`` that needs no model): every
policy on every episode under every seed, records written as they finish, and the
leaderboard built from them (:mod:`mfllm_env.benchmark` scores the records).

A bench folder (:attr:`BenchConfig.out`, a run folder: see :mod:`mfllm_env.runs`) holds:

- ``config.json``: the settings every episode was played with (a resume must match them);
- ``episodes.jsonl``: one record per played episode (:func:`mfllm_env.benchmark.episode_record`:
  policy, seed, settings, token counts, the real and simulated label ids), appended as
  each episode finishes, so an interrupted bench keeps every finished episode and a
  resumed one plays only the missing ones; put in a fixed order (policy, seed, episode)
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
with ``parallel=1`` (the default) episodes are stepped one at a time, so each episode's
result depends only on its seeds and a resumed bench writes the records and leaderboard
of an uninterrupted one, to the byte.

The policies come from a :class:`PolicySource` (:class:`agents.bench.BenchPolicies`
builds the classifiers and the LLM policies; :func:`agents.bench.run_bench` runs a bench
with them).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

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
from mfllm_env.registry import family
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
from mfllm_env.specs import fit_scenarios, has_fit_set, iter_spec

RUMOUR = family("rumour")
"""The family a bench plays (its episodes are built through the registry)."""

CLASSIFIER_POLICIES = ("random", "herding", "state-classifier", "mf-classifier")
"""Policies that act with label ids, without an LLM."""
LLM_POLICIES = ("mf", "state", "recent", "popular", "sft")
"""The MF-LLM paper's LLM policies (``sft``: ``state`` with a fine-tuned adapter)."""
REAL_TEXTS = "real-texts"
BENCH_POLICIES = (*CLASSIFIER_POLICIES, *LLM_POLICIES, "mf-ib-tune", REAL_TEXTS)
"""Every policy a bench can play, in the order of its files and leaderboard."""
NON_LLM = (*CLASSIFIER_POLICIES, REAL_TEXTS)
MEAN_FIELD_POLICIES = ("mf", "mf-ib-tune")
NON_MEAN_FIELD_LLM = ("state", "recent", "popular", "sft")
# Settings that change what an episode's result is; a resume must keep them.
EPISODE_SETTINGS = (
    "scenarios", "warmup", "forecast", "max_reactions", "agents_per_step", "limit", "fit",
    "model", "tokenizer", "max_new_tokens", "summary_tokens", "temperature", "k", "cos_every",
    "show_shares", "nll", "mean_field", "sft_adapter", "ib_tune", "parallel",
)  # fmt: skip
# Episode settings written into config.json only when they differ from their default, so
# a bench without them keeps the config (and resumes the folders) of earlier versions.
NEW_EPISODE_SETTINGS = {"samples_per_agent": 1, "min_reactions": None}
# The adapters of the policies that cannot play without them: unset in a folder, one may
# be given on a resume that adds its policy.
ADAPTER_SETTINGS = {"sft_adapter": "sft", "ib_tune": "mf-ib-tune"}
TRAJECTORY_PLOTS = 3
REPORT_EVERY_SECONDS = 60.0  # during a bench, the leaderboard is rewritten at most this often


@dataclass(kw_only=True)
class PolicySettings:
    """How the rumour family's policies play, the settings one policy
    (:class:`agents.policy_factory.PolicyOptions`) and a bench (:class:`BenchConfig`)
    share, with ``mfllm simulate``'s defaults: the classifiers' fit spec (``fit``) and
    the episodes' step size and cut; the LLM policies' mean field (``None``: the policy's
    default), model and generation settings."""

    fit: str | None = None
    agents_per_step: int = 16
    max_reactions: int | None = None
    mean_field: str | None = None
    model: str = "smollm2"
    tokenizer: str | None = None
    threads: int | None = None
    generation_dtype: str = "auto"
    draft_tokens: int = 8
    max_new_tokens: int = 48
    summary_tokens: int = 96
    temperature: float = 0.7
    k: int = 5
    cos_every: int = 4
    show_shares: bool = False
    nll: bool = False

    def policy_settings(self) -> dict[str, Any]:
        """These settings alone, by name (to build a :class:`PolicySettings` subclass)."""
        return {f.name: getattr(self, f.name) for f in fields(PolicySettings)}


@dataclass
class BenchConfig(PolicySettings):
    """One bench: the policies (:data:`BENCH_POLICIES`), seeds and episodes
    (``scenarios``, a spec of :func:`mfllm_env.specs.iter_spec`), the folder, and how
    episodes are played; the defaults are ``mfllm bench``'s (``mfllm simulate``'s, with
    ``parallel=1``). ``fit``: the classifiers' fit spec (default: the source's, see
    :func:`mfllm_env.specs.fit_scenarios`); ``forecast``: warm up on that percentage of
    each episode instead of ``warmup`` reactions; ``horizons``: the rollout lengths the KL
    is reported at; ``sft_adapter``/``ib_tune``: the ``sft`` policy's adapter, the
    ``mf-ib-tune`` policy's ``mfllm train ib-tune`` folder; the policies' settings are
    :class:`PolicySettings` (``mean_field``: the ``mf`` policy's)."""

    scenarios: str
    policies: Sequence[str]
    seeds: Sequence[int]
    out: Path
    resume: bool = False
    overwrite: bool = False
    horizons: Sequence[int] = (16, 32, 64)
    warmup: int | None = 50
    forecast: float | None = None
    limit: int | None = None
    min_reactions: int | None = None
    parallel: int = 1
    bootstrap: int = 2000
    samples_per_agent: int = 1
    sft_adapter: Path | None = None
    ib_tune: Path | None = None
    progress: bool = True
    argv: Sequence[str] = field(default_factory=list)
    """The command line, kept in ``config.json`` (it may change on a resume)."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        unknown = [p for p in self.policies if p not in BENCH_POLICIES]
        if unknown or not self.policies or len(set(self.policies)) != len(self.policies):
            raise ValueError(
                f"policies must be distinct names from {', '.join(BENCH_POLICIES)}; "
                f"got {list(self.policies)!r}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, at least one; got {list(self.seeds)!r}")
        for name, flag in (("sft", "sft_adapter"), ("mf-ib-tune", "ib_tune")):
            if name in self.policies and getattr(self, flag) is None:
                raise ValueError(f"policy {name} needs {flag}")
        classifiers = any(p.endswith("classifier") for p in self.policies)
        if classifiers and not has_fit_set(self.scenarios, self.fit):
            raise ValueError(f"the classifier policies need fit for {self.scenarios!r}")


class PolicySource(Protocol):
    """Builds a bench's policies (:class:`agents.bench.BenchPolicies`)."""

    labeler: ActionLabeler | None
    """The labeller of the bench's environments (``None``: each env's default)."""

    def build(
        self, name: str, seed: int, language: str
    ) -> tuple[Policy, Callable[[], MeanFieldModel] | None]:
        """Policy ``name`` under ``seed`` and a factory of fresh mean-field models."""
        ...

    def settings(self, name: str) -> dict[str, Any]:
        """What policy ``name`` is (kept in each of its records)."""
        ...


PolicySourceFactory = Callable[
    [BenchConfig, LabelScheme, list[Scenario], ActionLabeler | None], PolicySource
]
"""Makes the :class:`PolicySource` of a bench from its config, label scheme, evaluated
scenarios and labeller."""


def bench(
    config: BenchConfig, policies: PolicySourceFactory, folder: RunFolder | None = None
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Play the bench ``config`` describes with the policies ``policies`` makes (in
    ``folder``, default the run folder ``config.out`` with its ``resume``/``overwrite``)
    and write its leaderboard; returns the leaderboard table and the note on scored real
    reactions without a human label (``None`` when there are none). ``ValueError`` when
    no episode is longer than the warm-up, or for a folder of another bench."""
    if folder is None:
        folder = RunFolder(config.out, "bench", resume=config.resume, overwrite=config.overwrite)
    scenarios = list(
        iter_spec(config.scenarios, limit=config.limit, min_reactions=config.min_reactions)
    )
    scheme = scheme_for(scenarios[0].default_label_dimension)
    for scenario in scenarios:
        check_one_scheme(scenario, scheme)
    playable = [
        (e, s)
        for e, s in enumerate(scenarios)
        if warmup_of(config, s) < len(s.reactions[: config.max_reactions])
    ]
    skipped = len(scenarios) - len(playable)
    if not playable:
        raise ValueError(f"every episode of {config.scenarios} is shorter than the warm-up")
    episode_ids = {s.scenario_id for _, s in playable}
    evaluated = [s for _, s in playable]
    prior = training_prior(config, scheme, evaluated)
    sampling = config.samples_per_agent > 1 and any(p not in NON_LLM for p in config.policies)
    # The labeller of the environments and of the sampling LLM policies (None: the env's
    # default, loaded by each env where it needs one).
    labeler = bench_labeler(scheme) if sampling else None
    source = policies(config, scheme, evaluated, labeler)
    previous = folder.previous or {}
    unset = {
        name
        for name, policy in ADAPTER_SETTINGS.items()
        if name in previous and previous[name] is None and policy in config.policies
    }
    with folder.writing(folder_config(config), may_change={"argv", *unset}, results=RESULTS):
        records = play_bench(config, playable, source, scenarios[0].language, prior, skipped)
    return write_report(config, records, prior, episode_ids)


def check_one_scheme(scenario: Scenario, scheme: LabelScheme) -> None:
    """Refuse a scenario labelled on another dimension than ``scheme``'s (the run's first
    scenario's): the policies, classifiers and scores of a run are built for one scheme."""
    if scenario.default_label_dimension != scheme.dimension:
        raise ValueError(
            f"scenario {scenario.scenario_id!r} is labelled on "
            f"{scenario.default_label_dimension!r}, the first one on {scheme.dimension!r}: "
            "give scenarios of one label dimension"
        )


def folder_config(config: BenchConfig) -> dict[str, Any]:
    """The bench's ``config.json``: the episode settings (a resume must keep them) and the
    command line (which may change)."""
    values = asdict(config)
    settings = {name: values[name] for name in EPISODE_SETTINGS}
    for name, default in NEW_EPISODE_SETTINGS.items():
        if values[name] != default:
            settings[name] = values[name]
    return {**json.loads(json.dumps(settings, default=str)), "argv": list(config.argv)}


def warmup_of(config: BenchConfig, scenario: Scenario) -> int:
    """``--warmup``, or with ``--forecast`` that share of the episode (at least one
    reaction on each side)."""
    if config.forecast is None:
        return config.warmup
    total = len(scenario.reactions[: config.max_reactions])
    return min(max(round(total * config.forecast / 100), 1), max(total - 1, 1))


def training_prior(
    config: BenchConfig, scheme: LabelScheme, evaluated: list[Scenario]
) -> list[float] | None:
    """The label shares of the data the classifier baselines are fitted on, or ``None``
    where the source has no default fit and no ``fit`` was given."""
    if not has_fit_set(config.scenarios, config.fit):
        return None
    fitted, _ = fit_scenarios(config.scenarios, evaluated, config.fit)
    counts = np.zeros(scheme.size)
    for scenario in fitted:
        env = RUMOUR.population_env(
            scenario, warmup=0, max_reactions=config.max_reactions, label_dimension=scheme
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


RESULTS = ("episodes.jsonl",)  # a bench folder with records in it is kept if the bench fails


def play_bench(
    config: BenchConfig,
    playable: list[tuple[int, Scenario]],
    source: PolicySource,
    language: str,
    prior: list[float] | None,
    skipped: int,
) -> list[dict[str, Any]]:
    """Play the episodes the folder lacks, appending each record (and its wall time, in
    ``timing.jsonl``) as it ends; then put both files in a fixed order (policy, seed,
    episode), so a resumed bench writes the files an uninterrupted one would. Returns
    every record of the folder."""
    records_path, timing_path = config.out / "episodes.jsonl", config.out / "timing.jsonl"
    records = runs.read_records(
        records_path,
        RECORD_KEYS,
        "a benchmark episode record",
        unique=("policy", "seed", "episode"),
    )
    _check_records(records_path, records, config, playable)
    done = {(r["policy"], r["seed"], r["episode"]) for r in records}
    timing = [t for t in runs.read_records(timing_path, TIMING_KEYS) if _key(t) in done]
    runs.write_atomic(timing_path, runs.jsonl_text(timing))  # none of an unfinished episode
    total = len(config.policies) * len(config.seeds) * len(playable)
    finished = sum(
        (name, seed, s.scenario_id) in done
        for name in config.policies
        for seed in config.seeds
        for _, s in playable
    )
    todo = [
        (name, seed)
        for name in config.policies
        for seed in config.seeds
        if any((name, seed, s.scenario_id) not in done for _, s in playable)
    ]
    print(
        f"bench: {len(config.policies)} policies x {len(config.seeds)} seeds x "
        f"{len(playable)} episodes = {total} runs ({total - finished} to "
        f"play){f'; skipped {skipped} episode(s) shorter than the warm-up' if skipped else ''}",
        file=sys.stderr,
    )
    bar = tqdm(total=total, initial=finished, unit="ep", disable=not config.progress)
    reported = time.monotonic()
    with (
        open(records_path, "a", encoding="utf-8") as out,
        open(timing_path, "a", encoding="utf-8") as timing_out,
    ):
        for name, seed in todo:
            bar.set_description(f"{name} seed {seed}")
            policy, new_mean_field = source.build(name, seed, language)
            settings = source.settings(name)

            def episodes(
                name: str = name, seed: int = seed, new_mean_field=new_mean_field, policy=policy
            ):
                for index, scenario in playable:
                    if (name, seed, scenario.scenario_id) in done:
                        continue
                    env = RUMOUR.population_env(
                        scenario,
                        warmup=warmup_of(config, scenario),
                        agents_per_step=config.agents_per_step,
                        max_reactions=config.max_reactions,
                        action_mode=policy.action_mode,
                        labeler=source.labeler,
                        mean_field=new_mean_field() if new_mean_field else None,
                    )
                    yield env, episode_seed(seed, index)

            recorder = DistributionRecorder(policy)
            for result in play_episodes(episodes(), recorder, parallel=config.parallel):
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
                write_report(config, records, prior, {s.scenario_id for _, s in playable})
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
    config: BenchConfig,
    playable: list[tuple[int, Scenario]],
) -> None:
    """Refuse a record of ``path`` for an episode of this bench that was not played as this
    bench plays it (another warm-up, step size, episode seed or episode length): a line of
    another run that would be scored as this one's."""
    scenarios = {s.scenario_id: (e, s) for e, s in playable}
    for record in records:
        if record["episode"] not in scenarios or record["seed"] not in config.seeds:
            continue
        index, scenario = scenarios[record["episode"]]
        expected = {
            "warmup": warmup_of(config, scenario),
            "agents_per_step": config.agents_per_step,
            "episode_seed": episode_seed(record["seed"], index),
            "reactions": len(scenario.reactions[: config.max_reactions]),
        }
        held = {**record, "reactions": len(record["real_label_ids"])}
        for setting, value in expected.items():
            if held.get(setting) != value:
                raise ValueError(
                    f"{path}: the record of {record['policy']} seed {record['seed']} on "
                    f"{record['episode']!r} has {setting} {held.get(setting)!r}, this bench "
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
    config: BenchConfig, records: Sequence[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """``timing.json``: per policy, the mean wall time of the episodes of ``records``
    (from ``timing.jsonl``)."""
    wanted = {_key(r) for r in records}
    seconds: dict[str, list[float]] = {}
    for row in runs.read_records(config.out / "timing.jsonl", TIMING_KEYS):
        if _key(row) in wanted:
            seconds.setdefault(row["policy"], []).append(row["seconds"])
    return {
        policy: {"seconds_per_episode": float(np.mean(values)), "episodes": len(values)}
        for policy, values in seconds.items()
    }


def write_report(
    config: BenchConfig,
    records: list[dict[str, Any]],
    prior: list[float] | None,
    episode_ids: set[str],
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Rewrite the leaderboard files and plots from the ``records`` of the policies,
    seeds and episodes (``episode_ids``) asked for (a folder may hold others); returns the
    table and the note on scored real reactions without a human label (``None`` when there
    are none)."""
    records = [
        r
        for r in records
        if r["policy"] in config.policies
        and r["seed"] in config.seeds
        and r["episode"] in episode_ids
    ]
    keys = [key for key, _, _ in LEADERBOARD_METRICS + NOISE_AWARE_METRICS]
    horizon_keys = [f"kl@{h}" for h in config.horizons]
    rows = scored_rows(records, horizons=config.horizons, prior=prior)
    references = (*NAIVE_FORECASTERS, NOISE_FLOOR)
    order = [p for p in BENCH_POLICIES if p in rows] + [p for p in references if p in rows]
    table = leaderboard({p: rows[p] for p in order}, keys + horizon_keys)
    compared = comparisons(rows, table, config.bootstrap)
    costs = cost_rows(records)
    # Every policy and seed of an episode is scored against the same real labels.
    label_sources = label_source_totals({r["episode"]: r for r in records}.values())
    note = label_source_note(label_sources)
    lines = [
        f"# Benchmark: {config.scenarios}",
        "",
        _settings_line(config, prior),
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
        f"the verdict at 5%; a paired bootstrap ({config.bootstrap} resamples) the 95% "
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
    out = config.out
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
    runs.write_json(out / "timing.json", seconds_per_episode(config, records))
    write_plots(config, records, table)
    return table, note


def _settings_line(config: BenchConfig, prior: list[float] | None) -> str:
    warmup = (
        f"warm-up on the first {config.forecast:g}% of each episode (forecasting the rest)"
        if config.forecast is not None
        else f"{config.warmup} reactions of warm-up"
    )
    llm = any(p not in NON_LLM for p in config.policies)
    prior_text = (
        "no training prior (no fit data)"
        if prior is None
        else "training prior " + ", ".join(f"{p:.3f}" for p in prior)
    )
    model = (
        f"model {config.model}, {config.max_new_tokens} tokens per action, {config.summary_tokens} "
        f"per summary, temperature {config.temperature}; "
        if llm
        else ""
    )
    return (
        f"Seeds {', '.join(map(str, config.seeds))}; {warmup}; "
        f"{config.agents_per_step} agents per step; "
        f"max reactions {config.max_reactions or 'all'}; {model}{prior_text}."
    )


def write_plots(
    config: BenchConfig, records: list[dict[str, Any]], table: dict[str, dict[str, Any]]
) -> None:
    names = [p for p in table if not math.isnan(table[p]["kl"]["mean"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN horizons
        plot_metric_bars(
            [table[p]["kl"]["mean"] for p in names],
            [table[p]["kl"]["stderr"] for p in names],
            names,
            config.out / "kl_by_policy.png",
            metric="macro KL(real ‖ sim), final shares of the rollout",
            title="KL by policy (grey: naive forecasters, noise floor), mean ± s.e.",
            highlight=[p in NAIVE_FORECASTERS or p == NOISE_FLOOR for p in names],
        )
        curves = {
            p: (
                [table[p][f"kl@{h}"]["mean"] for h in config.horizons],
                [table[p][f"kl@{h}"]["stderr"] for h in config.horizons],
            )
            for p in names
        }
        plot_horizons(
            config.horizons, curves, config.out / "horizons.png", title="KL by rollout horizon"
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
            config.out / "trajectories" / f"{runs.file_name(episode)}.png",
            x_values=x,
            warmup=first["warmup"],
            title=f"{episode}: real vs simulated shares (seed {first_seed})",
        )
