"""Benchmark records and the leaderboard built from them (the library half of ``mfllm bench``).

A benchmark plays every policy on every episode under every seed and keeps one JSON
record per played episode (:func:`episode_record`). A record holds the real and
simulated label ids of the whole episode and its warm-up length, so every figure below is
*derived* from the records: the leaderboard can be rebuilt, with other horizons or
another comparison, without simulating again.

- :func:`score_record`: the fidelity metrics of one record (those of
  :func:`mfllm_env.metrics.episode_metrics`, the KL at each rollout horizon, the NLL
  when the policy scored the real reactions).
- :func:`naive_forecasts`: the forecasters a simulation has to beat, which see the real
  warm-up and nothing else: the **last observed shares** (the label shares of the warm-up
  carried forward) and the **training prior** (the label shares of the data the
  classifier baselines are fitted on). They predict shares, not individual reactions, so
  they have no micro/macro F1.
- :func:`leaderboard`: mean and standard error per policy and metric. Seeds of one
  episode replay the same real reactions, so they are not independent samples: the
  standard error is over **episodes**, of each episode's mean over seeds (with one seed
  it is the plain standard error over episodes).
- :func:`paired_comparison`: whether policy A's metric differs from B's by more than the
  noise, over the episodes both played (each episode's mean over seeds, paired): an exact
  sign-flip permutation test for the verdict, a paired bootstrap for the interval.
"""

from __future__ import annotations

import csv
import io
import math
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
    share_trajectory,
    trajectory_divergences,
)
from mfllm_env.population_env import PopulationEnv
from mfllm_env.simulation import real_label_sources

__all__ = [
    "LEADERBOARD_METRICS",
    "NAIVE_FORECASTERS",
    "comparison_lines",
    "csv_text",
    "episode_record",
    "horizon_kl",
    "leaderboard",
    "markdown_table",
    "naive_forecasts",
    "paired_comparison",
    "score_record",
    "scored_rows",
    "shares_metrics",
]

# (key, title, lower is better) of the leaderboard's main table, in column order.
LEADERBOARD_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("kl", "macro KL", True),
    ("js", "JS", True),
    ("tv", "TV", True),
    ("w1", "W1", True),
    ("kl_mean_over_time", "KL over time", True),
    ("dtw", "DTW", True),
    ("micro_f1", "micro-F1", False),
    ("macro_f1", "macro-F1", False),
    ("nll_per_token", "NLL/token", True),
)
NAIVE_FORECASTERS = ("naive: last observed", "naive: training prior")
RECORD_KEYS = ("policy", "seed", "episode", "real_label_ids", "sim_label_ids", "warmup")


def episode_record(
    env: PopulationEnv,
    *,
    policy: str,
    seed: int,
    episode_seed: int | None,
    metrics: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
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
    """
    kept = {k: v for k, v in metrics.items() if k != "seconds" and _finite_or_other(v)}
    return {
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
    return scores


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


def scored_rows(
    records: Iterable[Mapping[str, Any]],
    *,
    horizons: Sequence[int] = (),
    prior: Sequence[float] | None = None,
) -> dict[str, dict[str, list[tuple[str, int, dict[str, float]]]]]:
    """``{policy: {"runs": [(episode, seed, scores), ...]}}`` for every policy of
    ``records`` and, once per episode, the naive forecasters (seed 0)."""
    rows: dict[str, dict[str, list]] = defaultdict(lambda: {"runs": []})
    naive_done: set[str] = set()
    for record in records:
        rows[record["policy"]]["runs"].append(
            (record["episode"], record["seed"], score_record(record, horizons))
        )
        if record["episode"] in naive_done:
            continue
        naive_done.add(record["episode"])
        for name, shares in naive_forecasts(record, prior).items():
            scores = shares_metrics(
                record["real_label_ids"],
                shares,
                warmup=record["warmup"],
                step_size=record["agents_per_step"],
                ordered=record["ordered"],
                horizons=horizons,
            )
            rows[name]["runs"].append((record["episode"], 0, scores))
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
