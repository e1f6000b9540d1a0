"""Benchmark records and the leaderboard built from them (the library half of ``mfllm bench``).

A benchmark plays every policy on every episode under every seed and keeps one JSON
record per played episode (:func:`episode_record`). A record holds the real and
simulated label ids of the whole episode and its warm-up length, so every figure below is
*derived* from the records: the leaderboard can be rebuilt, with other horizons or
another comparison, without simulating again.

- :func:`score_record`: the fidelity metrics of one record (those of
  :func:`mfllm_env.metrics.episode_metrics`, the KL at each rollout horizon, the NLL
  when the policy scored the real reactions) and, where the policy reported its agents'
  label distributions (``label_distributions``: an LLM policy drawing several samples per
  agent, a classifier's predicted probabilities), the **expected** scores ``kl_expected``,
  ``js_expected``, ``tv_expected``: the real rollout shares against the mean of the
  rollout agents' distributions, free of the noise of drawing one label per agent.
- :func:`scored_rows`: every record's scores, plus the **seed-pooled** scores
  ``kl_pooled``, ``js_pooled``, ``tv_pooled`` of each (policy, episode): the real rollout
  shares against the simulated labels of *all* seeds of that episode counted together
  (the simulator's expected shares as seeds grow; the same value in each seed's row).
- :func:`naive_forecasts`: the forecasters a simulation has to beat, which see the real
  warm-up and nothing else: the **last observed shares** (the label shares of the warm-up
  carried forward) and the **training prior** (the label shares of the data the
  classifier baselines are fitted on). They predict shares, not individual reactions, so
  they have no micro/macro F1. Their shares are already an expectation: their pooled and
  expected scores are their plain ones.
- :func:`noise_floor_scores`: the row :data:`NOISE_FLOOR`, what a simulator whose label
  distribution *is* the real rollout's shares scores from sampling alone
  (:func:`mfllm_env.metrics.resampled_divergences`, :data:`NOISE_FLOOR_RESAMPLES`
  seeded resamples): ``kl``/``js``/``tv`` and ``kl@H`` with one rollout's size, the pooled
  ones with the size of all seeds' rollouts together.
- :func:`leaderboard`: mean and standard error per policy and metric. Seeds of one
  episode replay the same real reactions, so they are not independent samples: the
  standard error is over **episodes**, of each episode's mean over seeds (with one seed
  it is the plain standard error over episodes).
- :func:`paired_comparison`: whether policy A's metric differs from B's by more than the
  noise, over the episodes both played (each episode's mean over seeds, paired): an exact
  sign-flip permutation test for the verdict, a paired bootstrap for the interval.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
from scipy import stats

from mfllm_env.checks import BOOTSTRAP_MAX, check_count, check_seed
from mfllm_env.metrics import (
    episode_metrics,
    kl_divergence,
    mean_stderr,
    resampled_divergences,
    share_divergences,
    share_trajectory,
    trajectory_divergences,
)
from mfllm_env.population_env import PopulationEnv
from mfllm_env.simulation import real_label_sources

__all__ = [
    "LEADERBOARD_METRICS",
    "NAIVE_FORECASTERS",
    "NOISE_AWARE_METRICS",
    "NOISE_FLOOR",
    "DistributionRecorder",
    "comparison_lines",
    "csv_text",
    "episode_record",
    "expected_scores",
    "horizon_kl",
    "leaderboard",
    "markdown_table",
    "naive_forecasts",
    "noise_floor_scores",
    "paired_comparison",
    "pooled_scores",
    "score_record",
    "scored_rows",
    "shares_metrics",
]

# (key, title, lower is better) of the leaderboard's main table, in column order.
LEADERBOARD_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("kl", "macro KL", True),
    ("kl_pooled", "KL pooled", True),
    ("kl_expected", "KL expected", True),
    ("js", "JS", True),
    ("tv", "TV", True),
    ("w1", "W1", True),
    ("kl_mean_over_time", "KL over time", True),
    ("dtw", "DTW", True),
    ("micro_f1", "micro-F1", False),
    ("macro_f1", "macro-F1", False),
    ("nll_per_token", "NLL/token", True),
)
# The seed-pooled and expected scores beyond the KL columns of LEADERBOARD_METRICS.
NOISE_AWARE_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("js_pooled", "JS pooled", True),
    ("tv_pooled", "TV pooled", True),
    ("js_expected", "JS expected", True),
    ("tv_expected", "TV expected", True),
)
NAIVE_FORECASTERS = ("naive: last observed", "naive: training prior")
NOISE_FLOOR = "noise floor: real resampled"
NOISE_FLOOR_RESAMPLES = 1000
"""Multinomial resamples behind each figure of the :data:`NOISE_FLOOR` row."""
SHARE_SCORES = ("kl", "js", "tv")
RECORD_KEYS = ("policy", "seed", "episode", "real_label_ids", "sim_label_ids", "warmup")


def episode_record(
    env: PopulationEnv,
    *,
    policy: str,
    seed: int,
    episode_seed: int | None,
    metrics: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    label_distributions: Sequence[Sequence[float] | None] | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of the episode ``env`` just finished, played by ``policy``
    under bench seed ``seed`` (``episode_seed`` is what the env and policy were reset
    with). ``metrics`` are those :func:`mfllm_env.simulation.play_episodes` reports
    (fidelity, token counts, fallbacks, NLL, and ``seconds``, kept as the record's wall
    time); ``settings`` say what the policy was (model, adapters, ...).

    The record keeps the real label ids and the agents' label ids of the whole episode
    (in warm-up, the labels of what the agents posted while the real reactions drove the
    mean field), so every score can be derived again, and how many of the scored real
    labels are the labeller's (:func:`mfllm_env.simulation.real_label_sources`).
    ``label_distributions`` (where the policy reported them, see
    :class:`DistributionRecorder`): each reaction's agent's label distribution, kept
    rounded to 6 decimals under ``label_distributions``.
    """
    kept = {k: v for k, v in metrics.items() if k != "seconds" and _finite_or_other(v)}
    record = {
        "policy": policy,
        "seed": seed,
        "episode": env.scenario.scenario_id,
        "episode_seed": episode_seed,
        "warmup": env.warmup,
        "agents_per_step": env.agents_per_step,
        "labels": list(env.scheme.labels),
        "ordered": env.scheme.ordered,
        "real_label_ids": env.real_label_ids.tolist(),
        "sim_label_ids": env.sim_label_ids.tolist(),
        **real_label_sources(env),
        "metrics": kept,
        "settings": dict(settings or {}),
    }
    if label_distributions is not None:
        if len(label_distributions) != len(record["real_label_ids"]):
            raise ValueError(
                f"label_distributions must hold one entry per reaction "
                f"({len(record['real_label_ids'])}), got {len(label_distributions)}"
            )
        record["label_distributions"] = [
            None if shares is None else [round(float(x), 6) for x in shares]
            for shares in label_distributions
        ]
    return record


class DistributionRecorder:
    """A :class:`~mfllm_env.simulation.Policy` around ``policy`` that keeps the label
    distributions ``policy`` reports: after each ``act``, a ``label_distributions``
    attribute mapping the agents of that call to their label shares (an LLM policy drawing
    several samples per agent, a classifier's probabilities; a policy without it reports
    none). :meth:`take` hands over those of one finished episode of
    :func:`~mfllm_env.simulation.play_episodes`, which keys agents ``"<episode>|agent"``.

    A copy (what ``play_episodes`` makes of a label-mode policy per episode) acts on a
    copy of ``policy`` and keeps into the same store, so :meth:`take` on the original
    finds every episode's.
    """

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.action_mode = policy.action_mode
        self.score_references = bool(getattr(policy, "score_references", False))
        self._held: dict[str, Sequence[float]] = {}

    def __copy__(self) -> DistributionRecorder:
        twin = DistributionRecorder.__new__(DistributionRecorder)
        twin.__dict__.update(self.__dict__)
        twin.policy = copy.copy(self.policy)
        return twin

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset(seed)

    def act(
        self,
        observations: Mapping[str, Mapping[str, Any]],
        references: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if self.score_references:
            actions = self.policy.act(observations, references=references)
        else:
            actions = self.policy.act(observations)
        self._held.update(getattr(self.policy, "label_distributions", None) or {})
        return actions

    def take(self, index: int, env: PopulationEnv) -> list[Sequence[float] | None] | None:
        """The label distributions of episode ``index`` (its number in ``play_episodes``),
        one per reaction of ``env`` (``None`` where its agent reported none), removed from
        the store; ``None`` when the policy reported none for that episode."""
        found = [self._held.pop(f"{index}|{agent}", None) for agent in env.possible_agents]
        return found if any(shares is not None for shares in found) else None


def _finite_or_other(value: Any) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


def horizon_kl(
    real_ids: Sequence[int], sim_ids: Sequence[int], num_labels: int, warmup: int, horizon: int
) -> float:
    """KL between the real and simulated label shares of the first ``horizon`` reactions
    after warm-up; ``nan`` when the rollout is shorter than ``horizon``."""
    check_count("horizon", horizon, 1)
    sim = np.asarray(sim_ids[warmup : warmup + horizon])
    return _window_kl(real_ids, warmup, horizon, np.bincount(sim, minlength=num_labels))


def _window_kl(real_ids: Sequence[int], warmup: int, horizon: int, sim_shares: np.ndarray) -> float:
    """KL between the shares of real reactions ``warmup .. warmup + horizon - 1`` and
    ``sim_shares``; ``nan`` when there are fewer than ``horizon`` of them."""
    check_count("horizon", horizon, 1)
    real = np.asarray(real_ids[warmup : warmup + horizon])
    if real.size < horizon:
        return math.nan
    return kl_divergence(np.bincount(real, minlength=len(sim_shares)), sim_shares)


def score_record(record: Mapping[str, Any], horizons: Sequence[int] = ()) -> dict[str, float]:
    """The fidelity metrics of one record: :func:`~mfllm_env.metrics.episode_metrics`
    over the rollout, ``kl@H`` for each horizon ``H`` (:func:`horizon_kl`) and, where the
    policy scored the real reactions, ``nll_per_token``."""
    num_labels = len(record["labels"])
    real, sim, warmup = record["real_label_ids"], record["sim_label_ids"], record["warmup"]
    scores = episode_metrics(
        real,
        sim,
        num_labels,
        step_size=record["agents_per_step"],
        warmup=warmup,
        ordered=record["ordered"],
    )
    for horizon in horizons:
        scores[f"kl@{horizon}"] = horizon_kl(real, sim, num_labels, warmup, horizon)
    scores["nll_per_token"] = float(record["metrics"].get("nll_per_token", math.nan))
    if record.get("label_distributions") is not None:
        scores.update(expected_scores(record))
    return scores


def expected_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """``kl_expected``, ``js_expected``, ``tv_expected`` of a record with
    ``label_distributions`` (one distribution over the labels per reaction, ``None``
    where the policy reported none): the real rollout shares against the mean of the
    rollout agents' distributions; ``nan`` where a rollout agent has none."""
    warmup, num_labels = record["warmup"], len(record["labels"])
    rollout = record["label_distributions"][warmup:]
    if not rollout or any(d is None for d in rollout):
        return {f"{key}_expected": math.nan for key in SHARE_SCORES}
    distributions = np.asarray(rollout, dtype=np.float64)
    if distributions.shape != (len(rollout), num_labels):
        raise ValueError(
            f"label_distributions of {record['policy']} on {record['episode']!r} must hold "
            f"{num_labels} shares per reaction, got shape {distributions.shape}"
        )
    real = np.bincount(record["real_label_ids"][warmup:], minlength=num_labels)
    scores = share_divergences(real, distributions.mean(axis=0))
    return {f"{key}_expected": value for key, value in scores.items()}


def pooled_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``kl_pooled``, ``js_pooled``, ``tv_pooled`` of the records of one policy on one
    episode (one per seed): the real rollout shares against the simulated labels of every
    seed's rollout counted together."""
    first = records[0]
    warmup, num_labels = first["warmup"], len(first["labels"])
    real = np.bincount(first["real_label_ids"][warmup:], minlength=num_labels)
    pooled = sum(np.bincount(r["sim_label_ids"][warmup:], minlength=num_labels) for r in records)
    return {f"{key}_pooled": value for key, value in share_divergences(real, pooled).items()}


def shares_metrics(
    real_ids: Sequence[int],
    shares: Sequence[float],
    *,
    warmup: int,
    step_size: int,
    ordered: bool,
    horizons: Sequence[int] = (),
) -> dict[str, float]:
    """The metrics of a forecaster that predicts the constant label shares ``shares`` for
    the whole rollout, against the real rollout: the same divergences as
    :func:`score_record` (the trajectory is ``shares`` at every step), F1 undefined."""
    check_count("warmup", warmup, 0)  # a negative one would score the last reactions only
    rollout = np.asarray(real_ids[warmup:])
    if rollout.size == 0:
        raise ValueError(f"warmup {warmup} leaves no rollout of {len(real_ids)} reactions")
    forecast = np.asarray(shares, dtype=np.float64)
    real_traj = share_trajectory(rollout, forecast.size, step_size=step_size)
    constant = np.tile(forecast, (len(real_traj), 1))
    scores = {
        **trajectory_divergences(real_traj, constant, ordered=ordered),
        "micro_f1": math.nan,
        "macro_f1": math.nan,
        "n_reactions": float(rollout.size),
    }
    for horizon in horizons:
        scores[f"kl@{horizon}"] = _window_kl(real_ids, warmup, horizon, forecast)
    scores["nll_per_token"] = math.nan
    return scores


def naive_forecasts(
    record: Mapping[str, Any], prior: Sequence[float] | None
) -> dict[str, np.ndarray]:
    """The naive forecasts for the episode of ``record``: the warm-up's label shares (when
    there is a warm-up) and ``prior`` (when given), keyed by :data:`NAIVE_FORECASTERS`."""
    num_labels = len(record["labels"])
    forecasts: dict[str, np.ndarray] = {}
    observed = record["real_label_ids"][: record["warmup"]]
    if observed:
        counts = np.bincount(observed, minlength=num_labels).astype(np.float64)
        forecasts[NAIVE_FORECASTERS[0]] = counts / counts.sum()
    if prior is not None:
        shares = np.asarray(prior)
        if not (
            shares.shape == (num_labels,)
            and shares.dtype.kind in "iuf"
            and np.isfinite(shares).all()
            and shares.min() >= 0
            and shares.sum() > 0
        ):
            raise ValueError(
                f"prior must be {num_labels} finite shares >= 0, not all 0 (one per label); "
                f"got {prior!r:.100}"
            )
        forecasts[NAIVE_FORECASTERS[1]] = shares.astype(np.float64)
    return forecasts


def noise_floor_scores(
    record: Mapping[str, Any], *, seeds: int = 1, horizons: Sequence[int] = ()
) -> dict[str, float]:
    """The :data:`NOISE_FLOOR` row's scores on the episode of ``record``: ``kl``, ``js``,
    ``tv`` between the real rollout shares and multinomial resamples of the rollout's size
    from them (:func:`mfllm_env.metrics.resampled_divergences`, mean of
    :data:`NOISE_FLOOR_RESAMPLES`), the same with ``seeds`` times that size as
    ``*_pooled`` (what seed-pooling ``seeds`` perfect rollouts would score), and ``kl@H``
    with the first ``H`` rollout reactions (``nan`` where the rollout is shorter). The
    resamples are seeded by the episode's name and the resample size, so the row is the
    same whatever else a bench holds."""
    check_count("seeds", seeds, 1)
    warmup, num_labels = record["warmup"], len(record["labels"])
    rollout = np.asarray(record["real_label_ids"][warmup:])

    def floor(window: np.ndarray, size: int) -> dict[str, float]:
        rng = np.random.default_rng([zlib.crc32(record["episode"].encode()), size])
        counts = np.bincount(window, minlength=num_labels)
        return resampled_divergences(counts, size, resamples=NOISE_FLOOR_RESAMPLES, rng=rng)

    scores = floor(rollout, rollout.size)
    pooled = floor(rollout, rollout.size * seeds) if seeds > 1 else scores
    scores.update({f"{key}_pooled": pooled[key] for key in SHARE_SCORES})
    for horizon in horizons:
        check_count("horizon", horizon, 1)
        window = rollout[:horizon]
        full = window.size == horizon
        scores[f"kl@{horizon}"] = floor(window, horizon)["kl"] if full else math.nan
    return scores


def scored_rows(
    records: Iterable[Mapping[str, Any]],
    *,
    horizons: Sequence[int] = (),
    prior: Sequence[float] | None = None,
) -> dict[str, dict[str, list[tuple[str, int, dict[str, float]]]]]:
    """``{policy: {"runs": [(episode, seed, scores), ...]}}`` for every policy of
    ``records`` (:func:`score_record` and the seed-pooled :func:`pooled_scores` of its
    episode) and, once per episode (seed 0), the naive forecasters (their pooled and
    expected scores are their plain ones) and the :data:`NOISE_FLOOR` row (pooled over
    the most seeds any policy played on that episode)."""
    records = list(records)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["policy"], record["episode"]].append(record)
    pooled = {key: pooled_scores(group) for key, group in groups.items()}
    seeds: dict[str, int] = defaultdict(int)
    for (_, episode), group in groups.items():
        seeds[episode] = max(seeds[episode], len(group))
    rows: dict[str, dict[str, list]] = defaultdict(lambda: {"runs": []})
    naive_done: set[str] = set()
    for record in records:
        episode = record["episode"]
        scores = {**score_record(record, horizons), **pooled[record["policy"], episode]}
        rows[record["policy"]]["runs"].append((episode, record["seed"], scores))
        if episode in naive_done:
            continue
        naive_done.add(episode)
        for name, shares in naive_forecasts(record, prior).items():
            scores = shares_metrics(
                record["real_label_ids"],
                shares,
                warmup=record["warmup"],
                step_size=record["agents_per_step"],
                ordered=record["ordered"],
                horizons=horizons,
            )
            for key in SHARE_SCORES:
                scores[f"{key}_pooled"] = scores[f"{key}_expected"] = scores[key]
            rows[name]["runs"].append((episode, 0, scores))
        floor = noise_floor_scores(record, seeds=seeds[episode], horizons=horizons)
        rows[NOISE_FLOOR]["runs"].append((episode, 0, floor))
    return dict(rows)


def _episode_means(runs: Sequence[tuple[str, int, Mapping[str, float]]], key: str) -> dict:
    """``{episode: mean over seeds of key}``, leaving out NaN values."""
    values: dict[str, list[float]] = defaultdict(list)
    for episode, _seed, scores in runs:
        value = scores.get(key, math.nan)
        if not math.isnan(value):
            values[episode].append(value)
    return {episode: float(np.mean(v)) for episode, v in values.items() if v}


def leaderboard(
    rows: Mapping[str, Mapping[str, Sequence]], keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``{policy: {"episodes", "seeds", "runs", key: {"mean", "stderr", "n"}}}``: the mean
    of each per-episode mean over seeds, and its standard error over episodes (``nan``
    with one episode); ``n`` counts the episodes with a value for ``key``."""
    if isinstance(keys, str):  # would be read as one key per character
        raise TypeError(f"keys must be a sequence of metric names, got the string {keys!r}")
    table: dict[str, dict[str, Any]] = {}
    for policy, row in rows.items():
        runs = row["runs"]
        entry: dict[str, Any] = {
            "episodes": len({episode for episode, _, _ in runs}),
            "seeds": len({seed for _, seed, _ in runs}),
            "runs": len(runs),
        }
        for key in keys:
            means = list(_episode_means(runs, key).values())
            mean, stderr = mean_stderr(means) if means else (math.nan, math.nan)
            entry[key] = {"mean": mean, "stderr": stderr, "n": len(means)}
        table[policy] = entry
    return table


def paired_comparison(
    runs_a: Sequence[tuple[str, int, Mapping[str, float]]],
    runs_b: Sequence[tuple[str, int, Mapping[str, float]]],
    key: str,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Is ``mean(A) - mean(B)`` of metric ``key`` larger than the noise? Over the episodes
    both played, paired, each side's value being its mean over seeds (episodes, not seeds,
    are the independent units: seeds of one episode share its real reactions).

    - ``p_value``: a two-sided sign-flip permutation test of the mean paired difference
      (:func:`scipy.stats.permutation_test`, exact up to 2^13 sign patterns). It is honest
      for few episodes: with n of them the smallest possible p is 2 / 2^n, so two episodes
      can never show a difference; ``significant`` is 1.0 when ``p_value < 1 - level``.
    - ``difference`` with ``low``/``high``: a paired bootstrap percentile interval
      (:func:`scipy.stats.bootstrap`, ``resamples``), and ``relative`` (``mean(A) /
      mean(B) - 1``) with its interval, where ``mean(B) > 0``. Descriptive: with few
      episodes the interval is too narrow; the verdict comes from the test.

    ``n`` is the number of shared episodes; everything else is ``nan`` below two.
    ``resamples`` must be a count in ``[1, BOOTSTRAP_MAX]``, ``seed`` an int >= 0 and
    ``level`` a number strictly between 0 and 1 (``ValueError`` otherwise).
    """
    check_count("resamples", resamples, 1, BOOTSTRAP_MAX)
    if seed is None:
        raise ValueError("seed must be an integer >= 0, got None")
    check_seed(seed)
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number strictly between 0 and 1, got {level!r}")
    a, b = _episode_means(runs_a, key), _episode_means(runs_b, key)
    shared = sorted(set(a) & set(b))
    result = dict.fromkeys(
        ("difference", "low", "high", "relative", "relative_low", "relative_high", "p_value"),
        math.nan,
    )
    result.update(n=float(len(shared)), significant=math.nan)
    if len(shared) < 2:
        return result
    va = np.array([a[e] for e in shared])
    vb = np.array([b[e] for e in shared])

    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    test = stats.permutation_test(
        (va, vb),
        mean_difference,
        permutation_type="samples",
        n_resamples=8192,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    result["p_value"] = float(test.pvalue)
    result["significant"] = float(test.pvalue < 1 - level)
    result["difference"] = float(va.mean() - vb.mean())
    if np.ptp(va - vb) > 0:
        interval = stats.bootstrap(
            (va, vb), mean_difference, paired=True, vectorized=True, n_resamples=resamples,
            confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
        ).confidence_interval  # fmt: skip
        result.update(low=float(interval.low), high=float(interval.high))
    else:  # every episode differs by the same amount: the resamples do too
        result.update(low=result["difference"], high=result["difference"])
    if vb.mean() > 0 and (vb > 0).all():

        def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.mean(x, axis=axis) / np.mean(y, axis=axis) - 1

        result["relative"] = float(va.mean() / vb.mean() - 1)
        if np.ptp(va / vb) > 0:
            interval = stats.bootstrap(
                (va, vb), ratio, paired=True, vectorized=True, n_resamples=resamples,
                confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
            ).confidence_interval  # fmt: skip
            result.update(relative_low=float(interval.low), relative_high=float(interval.high))
    return result


def csv_text(table: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> str:
    """The leaderboard as CSV: one row per policy, ``KEY_mean``/``KEY_stderr`` columns."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["policy", "episodes", "seeds", "runs"]
        + [f"{key}_{part}" for key in keys for part in ("mean", "stderr")]
    )
    for policy, entry in table.items():
        row: list[Any] = [policy, entry["episodes"], entry["seeds"], entry["runs"]]
        for key in keys:
            stats = entry[key]
            row += ["" if math.isnan(stats[p]) else f"{stats[p]:.6g}" for p in ("mean", "stderr")]
        writer.writerow(row)
    return out.getvalue()


def _cell(stats: Mapping[str, float], episodes: int, digits: int = 3) -> str:
    """``mean ± stderr``, ``(n=N)`` when fewer than all ``episodes`` have a value."""
    if math.isnan(stats["mean"]):
        return "–"
    text = f"{stats['mean']:.{digits}f}"
    if not math.isnan(stats["stderr"]):
        text += f" ± {stats['stderr']:.{digits}f}"
    return text + (f" (n={stats['n']})" if stats["n"] < episodes else "")


def markdown_table(
    table: Mapping[str, Mapping[str, Any]], columns: Sequence[tuple[str, str]]
) -> str:
    """A markdown table of the leaderboard, one row per policy, ``columns`` as
    ``(key, title)``; cells are mean ± standard error, ``–`` where undefined."""
    lines = [
        "| policy | episodes × seeds | " + " | ".join(title for _, title in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for policy, entry in table.items():
        cells = [_cell(entry[key], entry["episodes"]) for key, _ in columns]
        lines.append(
            f"| {policy} | {entry['episodes']} × {entry['seeds']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def comparison_lines(comparisons: Mapping[str, Mapping[str, float]], key: str) -> str:
    """Markdown bullets of :func:`paired_comparison` results, ``{"A vs B": result}``."""
    lines = []
    for pair, result in comparisons.items():
        if math.isnan(result["difference"]):
            lines.append(f"- {pair}: fewer than two shared episodes, no comparison")
            continue
        verdict = "larger than the noise" if result["significant"] else "within the noise"
        relative = ""
        if not math.isnan(result["relative"]):
            relative = f", {100 * result['relative']:+.0f}%"
            if not math.isnan(result["relative_low"]):
                relative += (
                    f" [{100 * result['relative_low']:+.0f}%, "
                    f"{100 * result['relative_high']:+.0f}%]"
                )
        lines.append(
            f"- {pair}: {key} difference {result['difference']:+.3f} "
            f"[{result['low']:+.3f}, {result['high']:+.3f}]{relative} over "
            f"{int(result['n'])} episodes, p = {result['p_value']:.3f}: {verdict}"
        )
    return "\n".join(lines)
