"""Fidelity metrics: how close a simulated population is to the real one.

A *share vector* has one entry per label of a scheme (index ``i`` is ``scheme.labels[i]``);
a *share trajectory* of shape ``(T, K)`` holds one share vector per environment step.
Every function that takes a vector accepts counts or probabilities: entries must be finite
and non-negative with a positive sum, and are normalised to sum to one before use. Bad input
raises ``ValueError`` saying what is wrong (shape, NaN, infinity, negative entry, all-zero).

Divergences are in nats (natural logarithm). Macro metrics compare label shares
(:func:`kl_divergence`, :func:`js_divergence`, :func:`total_variation`,
:func:`wasserstein_1`, :func:`dtw_distance`); micro metrics compare per-agent labels
(:func:`micro_f1`, :func:`macro_f1`). :func:`episode_metrics` computes all of them for one
episode and :func:`aggregate` summarises them over episodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from math import inf
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist, jensenshannon
from scipy.stats import wasserstein_distance
from sklearn.metrics import f1_score

from mfllm_env.checks import check_count

__all__ = [
    "aggregate",
    "dtw_distance",
    "episode_metrics",
    "js_divergence",
    "kl_divergence",
    "macro_f1",
    "mean_stderr",
    "micro_f1",
    "resampled_divergences",
    "share_divergences",
    "share_trajectory",
    "total_variation",
    "trajectory_divergences",
    "wasserstein_1",
]


def _entries_problem(arr: np.ndarray, name: str) -> str | None:
    """What makes ``arr`` unusable as counts or probabilities, or ``None`` if nothing."""
    if np.isnan(arr).any():
        return f"{name} contains NaN"
    if np.isinf(arr).any():
        return f"{name} contains an infinite entry"
    if (arr < 0).any():
        return f"{name} has a negative entry; expected counts or probabilities"
    if not np.isfinite(arr.sum()):
        return f"{name} sums to more than float64 can hold"
    return None


def _vector_problem(arr: np.ndarray, name: str) -> str | None:
    """Like :func:`_entries_problem`, also rejecting a vector with no mass."""
    problem = _entries_problem(arr, name)
    if problem is None and arr.sum() <= 0:
        problem = f"{name} is all zeros: there is no distribution to compare"
    return problem


def _distribution(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 vector that sums to one."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {arr.shape}")
    problem = _vector_problem(arr, name)
    if problem:
        raise ValueError(problem)
    return arr / arr.sum()


def _distribution_pair(real: ArrayLike, sim: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = _distribution(real, "real")
    q = _distribution(sim, "sim")
    if p.shape != q.shape:
        raise ValueError(f"real and sim must have the same length, got {p.size} and {q.size}")
    return p, q


def kl_divergence(real: ArrayLike, sim: ArrayLike, *, smoothing: float = 1e-3) -> float:
    """Smoothed Kullback-Leibler divergence KL(real || sim), in nats.

    ``real`` and ``sim`` are 1-D vectors of the same length K (counts or probabilities).
    Each is normalised to probabilities ``p``, then smoothed additively and renormalised::

        p'_i = (p_i + smoothing) / (1 + K * smoothing)

    (the same for ``sim``), and the result is ``sum_i p'_i * ln(p'_i / q'_i)``. This is the
    mixture ``(1 - w) * p + w * uniform`` with ``w = K * smoothing / (1 + K * smoothing)``;
    because ``smoothing`` is added to probabilities, not counts, the result does not depend on
    how many reactions the vectors count. Smoothing keeps KL finite when the simulation never
    produced a label the real population did. ``smoothing=0`` gives the exact KL, which is
    ``inf`` in that case. A negative, NaN or infinite ``smoothing`` raises ``ValueError``.

    This runs once per environment step, so it works on Python floats: for vectors of a few
    entries that is a few times faster than a chain of numpy calls.
    """
    if isinstance(smoothing, bool) or not isinstance(smoothing, Real) or not 0 <= smoothing < inf:
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
    p_arr = np.asarray(real, dtype=np.float64)
    q_arr = np.asarray(sim, dtype=np.float64)
    if p_arr.ndim != 1 or p_arr.shape != q_arr.shape or p_arr.size == 0:
        _distribution_pair(real, sim)  # raises, naming the problem
    p = p_arr.tolist()
    q = q_arr.tolist()
    p_sum = sum(p)
    q_sum = sum(q)
    # NaN and infinite entries make a sum fail the range test, so this one check is cheap.
    if not (0 < p_sum < math.inf and 0 < q_sum < math.inf) or min(p) < 0 or min(q) < 0:
        raise ValueError(_vector_problem(p_arr, "real") or _vector_problem(q_arr, "sim"))
    total = 0.0
    for p_i, q_i in zip(p, q, strict=True):
        a = p_i / p_sum + smoothing
        b = q_i / q_sum + smoothing
        if a > 0:
            total += a * math.log(a / b) if b > 0 else math.inf
    # Both vectors share the normaliser 1 + K * smoothing, which factors out of the log ratio.
    return total / (1 + len(p) * smoothing)


def js_divergence(real: ArrayLike, sim: ArrayLike) -> float:
    """Jensen-Shannon divergence in nats: ``0.5 KL(p || m) + 0.5 KL(q || m)``, ``m = (p+q)/2``.

    This is the square of :func:`scipy.spatial.distance.jensenshannon` (a distance) with the
    natural logarithm. Symmetric, finite without smoothing, and in ``[0, ln 2]``. Inputs as
    for :func:`kl_divergence`.
    """
    p, q = _distribution_pair(real, sim)
    return float(jensenshannon(p, q)) ** 2


def total_variation(real: ArrayLike, sim: ArrayLike) -> float:
    """Total variation distance ``0.5 * sum_i |p_i - q_i|``, in ``[0, 1]``.

    The largest difference between the two distributions in the share of any set of labels.
    Inputs as for :func:`kl_divergence`.
    """
    p, q = _distribution_pair(real, sim)
    return 0.5 * float(np.abs(p - q).sum())


def share_divergences(real: ArrayLike, sim: ArrayLike) -> dict[str, float]:
    """``kl``, ``js`` and ``tv`` between two share vectors (:func:`kl_divergence` with its
    default smoothing, :func:`js_divergence`, :func:`total_variation`)."""
    return {
        "kl": kl_divergence(real, sim),
        "js": js_divergence(real, sim),
        "tv": total_variation(real, sim),
    }


def resampled_divergences(
    real: ArrayLike, size: int, *, resamples: int, rng: np.random.Generator
) -> dict[str, float]:
    """The mean :func:`share_divergences` between the shares ``real`` (counts or
    probabilities) and ``resamples`` independent multinomial draws of ``size`` reactions
    from those shares: what a simulation whose label distribution *is* the real shares
    scores on a window of ``size`` reactions, from its own sampling noise alone (the noise
    floor). A label the real shares have but a draw misses costs what it costs in
    :func:`kl_divergence`: the same additive smoothing of 1e-3 on both vectors, so the
    floor is the one the ``kl`` it is read against has. Draws come from ``rng``."""
    p = _distribution(real, "real")
    check_count("size", size, 1)
    check_count("resamples", resamples, 1)
    draws = rng.multinomial(size, p, size=resamples)
    scores = [share_divergences(p, draw) for draw in draws]
    return {key: float(np.mean([s[key] for s in scores])) for key in ("kl", "js", "tv")}


def wasserstein_1(real: ArrayLike, sim: ArrayLike, *, positions: ArrayLike | None = None) -> float:
    """Wasserstein-1 (earth mover's) distance between label shares placed on a line.

    Label ``i`` sits at ``positions[i]`` (default: ``i``, so labels 0..K-1 one unit apart),
    and the distance is the least total share times distance moved to turn ``real`` into
    ``sim``. The default treats the label order as ordinal: moving share from label 0 to
    label 2 costs twice as much as to label 1, which only means something when the scheme's
    order does (e.g. certainty levels). For unordered categorical labels use the 0/1 ground
    metric instead, under which W1 equals :func:`total_variation`; with K = 2 the two agree
    for the default positions too. ``positions`` must be K finite numbers. Inputs as for
    :func:`kl_divergence`.
    """
    p, q = _distribution_pair(real, sim)
    if positions is None:
        where = np.arange(p.size, dtype=np.float64)
    else:
        where = np.asarray(positions, dtype=np.float64)
        if where.shape != p.shape or not np.isfinite(where).all():
            raise ValueError(f"positions must be {p.size} finite numbers, got {where!r}")
    return float(wasserstein_distance(where, where, p, q))


def _trajectory(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a (T, K) float64 array whose rows sum to one."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (T, K) array, got shape {arr.shape}")
    problem = _entries_problem(arr, name)
    if problem:
        raise ValueError(problem)
    totals = arr.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError(f"{name} row {int(np.argmin(totals))} is all zeros")
    return arr / totals


def dtw_distance(traj_a: ArrayLike, traj_b: ArrayLike, *, window: int | None = None) -> float:
    """Dynamic time warping distance between two share trajectories.

    ``traj_a`` has shape (T1, K) and ``traj_b`` shape (T2, K); each row is normalised to
    shares. The local cost of matching row ``i`` of one with row ``j`` of the other is their
    :func:`total_variation`, and the result is the least total cost over warping paths
    (monotone, continuous, from the first rows to the last rows), so it is 0 for two
    trajectories that pass through the same shares at different speeds. Not normalised by
    path length: it grows with T. ``window`` (Sakoe-Chiba band) allows only ``|i - j| <=
    window``; it must be at least ``|T1 - T2|`` or no path exists. ``window=0`` with equal
    lengths gives the sum of pointwise total variations.

    Cost: O(T1 * T2) time and memory, a numpy loop over the rows of ``traj_a``.
    """
    a = _trajectory(traj_a, "traj_a")
    b = _trajectory(traj_b, "traj_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"trajectories must have the same K, got {a.shape[1]} and {b.shape[1]}")
    n, m = len(a), len(b)
    if window is not None:
        check_count("window", window, abs(n - m))  # |T1 - T2|: no path with a narrower band
    cost = 0.5 * cdist(a, b, "cityblock")
    # acc[i, j]: least cost of a path ending at rows (i-1, j-1); row and column 0 are a border.
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        lo, hi = (1, m) if window is None else (max(1, i - window), min(m, i + window))
        row_cost = cost[i - 1, lo - 1 : hi]
        from_above = np.minimum(acc[i - 1, lo - 1 : hi], acc[i - 1, lo : hi + 1])
        # acc[i, j] = c_j + min(from_above_j, acc[i, j-1]) unrolls to
        # min over k <= j of (from_above_k + c_k + ... + c_j): with running sums S of the
        # row's costs that is S_j + running-min(from_above_k - S_{k-1}), one numpy pass.
        running = np.cumsum(row_cost)
        acc[i, lo : hi + 1] = running + np.minimum.accumulate(from_above - (running - row_cost))
    return float(acc[n, m])


def _label_ids(values: ArrayLike, num_labels: int | None, name: str) -> np.ndarray:
    """``values`` as a non-empty 1-D int array of ids in ``[0, num_labels)`` (or ``>= 0``)."""
    if num_labels is not None:
        check_count("num_labels", num_labels, 1)
    ids = np.asarray(values)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of ids, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label ids, got dtype {ids.dtype}")
    if ids.min() < 0 or (num_labels is not None and ids.max() >= num_labels):
        upper = "inf" if num_labels is None else num_labels
        raise ValueError(f"{name} must lie in [0, {upper}), got {ids.min()}..{ids.max()}")
    return ids


def _id_pair(
    real_ids: ArrayLike, sim_ids: ArrayLike, num_labels: int | None
) -> tuple[np.ndarray, np.ndarray]:
    real = _label_ids(real_ids, num_labels, "real_ids")
    sim = _label_ids(sim_ids, num_labels, "sim_ids")
    if real.shape != sim.shape:
        raise ValueError(
            f"real_ids and sim_ids must pair agents one to one, got {real.size} and {sim.size}"
        )
    return real, sim


def micro_f1(real_ids: ArrayLike, sim_ids: ArrayLike) -> float:
    """Micro-averaged F1 of the simulated agents' labels against the real agents' labels.

    ``real_ids[i]`` and ``sim_ids[i]`` are the label ids of the real reaction ``i`` and of
    the simulated agent standing in for it (same length, non-negative ints). With one label
    per agent micro F1 equals accuracy: the fraction of agents whose label matches.
    """
    real, sim = _id_pair(real_ids, sim_ids, None)
    return float(f1_score(real, sim, average="micro"))


def macro_f1(real_ids: ArrayLike, sim_ids: ArrayLike, num_labels: int) -> float:
    """Macro-averaged F1: the unweighted mean of per-label F1 scores.

    Ids must lie in ``[0, num_labels)``. The mean runs over the labels that occur in
    ``real_ids`` or ``sim_ids``: a label neither population used is left out, rather than
    scored 0, so a perfect simulation scores 1 however many labels the scheme has.
    """
    check_count("num_labels", num_labels, 1)
    real, sim = _id_pair(real_ids, sim_ids, num_labels)
    return float(f1_score(real, sim, average="macro"))


def share_trajectory(
    label_ids: ArrayLike, num_labels: int, *, step_size: int, cumulative: bool = True
) -> np.ndarray:
    """Label shares after each step of ``step_size`` reactions, shape (T, num_labels).

    ``label_ids`` are the reactions' label ids in time order. Step ``t`` holds reactions
    ``t * step_size`` to ``(t + 1) * step_size - 1``; a shorter last step is kept, so
    ``T = ceil(len(label_ids) / step_size)``. Row ``t`` is the share of each label among all
    reactions up to the end of step ``t`` (``cumulative=True``) or among the reactions of
    step ``t`` alone (``cumulative=False``). Every row sums to one.
    """
    check_count("num_labels", num_labels, 1)
    check_count("step_size", step_size, 1)
    ids = _label_ids(label_ids, num_labels, "label_ids")
    steps = -(-ids.size // step_size)
    step_of = np.arange(ids.size) // step_size
    counts = np.bincount(step_of * num_labels + ids, minlength=steps * num_labels)
    counts = counts.reshape(steps, num_labels).astype(np.float64)
    if cumulative:
        counts = np.cumsum(counts, axis=0)
    return counts / counts.sum(axis=1, keepdims=True)


def mean_stderr(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard error of the mean, ``std(values, ddof=1) / sqrt(n)``.

    ``values`` is a non-empty 1-D sequence without NaN (:func:`aggregate` drops NaN first).
    With a single value the standard error is ``nan``: one episode says nothing about the
    spread, and ``nan`` cannot be mistaken for a precise estimate the way 0 could.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("values contains NaN; drop it first (aggregate() does)")
    if arr.size == 1:
        return float(arr[0]), math.nan
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(arr.size))


def aggregate(records: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Summarise per-episode metrics: ``{metric: {"mean", "stderr", "n", "n_nan"}}``.

    ``records`` holds one mapping of metric name to value per episode (e.g. the output of
    :func:`episode_metrics`). For each metric that appears in any record, NaN values and
    records that lack the metric are skipped and counted in ``n_nan``; ``n`` counts the
    values used, and ``mean``/``stderr`` come from :func:`mean_stderr` (both ``nan`` when no
    value is left). Metrics appear in the order first seen. A value that is not a number
    (``None``, a string, a list) raises ``ValueError`` naming the record and the metric.
    """
    if isinstance(records, Mapping) or not all(isinstance(r, Mapping) for r in records):
        raise TypeError("records must be a sequence of mappings (one per episode) of metric values")
    names = list(dict.fromkeys(name for record in records for name in record))
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        raw = [record.get(name, math.nan) for record in records]
        wrong = next((i for i, value in enumerate(raw) if not isinstance(value, Real)), None)
        if wrong is not None:
            raise ValueError(
                f"record {wrong}: metric {name!r} must be a number, got {raw[wrong]!r:.80}"
            )
        raw = [float(value) for value in raw]
        kept = [value for value in raw if not math.isnan(value)]
        mean, stderr = mean_stderr(kept) if kept else (math.nan, math.nan)
        summary[name] = {
            "mean": mean,
            "stderr": stderr,
            "n": float(len(kept)),
            "n_nan": float(len(raw) - len(kept)),
        }
    return summary


def episode_metrics(
    real_ids: ArrayLike,
    sim_ids: ArrayLike,
    num_labels: int,
    *,
    step_size: int,
    warmup: int = 0,
    ordered: bool = False,
) -> dict[str, float]:
    """All fidelity metrics of one episode, over the rollout part.

    ``real_ids[i]`` and ``sim_ids[i]`` are the label ids of real reaction ``i`` and of the
    simulated agent that stands in for it, in time order. The first ``warmup`` reactions
    (where the simulation was fed real actions) are dropped; everything below is computed on
    the ``n_reactions = len(real_ids) - warmup`` reactions that follow, which must be >= 1.

    - ``kl``, ``js``, ``tv``, ``w1``: divergences between the final label shares of the
      rollout (:func:`kl_divergence` with its default smoothing, :func:`js_divergence`,
      :func:`total_variation`, and W1: :func:`wasserstein_1` with default positions when
      the labels are ``ordered`` (certainty levels), else the 0/1 ground metric, under
      which W1 equals the total variation).
    - ``kl_mean_over_time``: the mean over steps of the KL between the cumulative shares of
      the rollout (:func:`share_trajectory` with ``step_size``), counted from the first
      reaction after warm-up.
    - ``dtw``: :func:`dtw_distance` between those two cumulative trajectories.
    - ``micro_f1``, ``macro_f1``: per-agent label agreement (:func:`micro_f1`,
      :func:`macro_f1`).
    """
    real, sim = _id_pair(real_ids, sim_ids, num_labels)
    check_count("step_size", step_size, 1)
    if isinstance(warmup, bool) or not isinstance(warmup, Integral) or not 0 <= warmup < real.size:
        raise ValueError(f"warmup must be in [0, {real.size}) to leave a rollout, got {warmup!r}")
    real, sim = real[warmup:], sim[warmup:]
    real_traj = share_trajectory(real, num_labels, step_size=step_size)
    sim_traj = share_trajectory(sim, num_labels, step_size=step_size)
    return {
        **trajectory_divergences(real_traj, sim_traj, ordered=ordered),
        "micro_f1": micro_f1(real, sim),
        "macro_f1": macro_f1(real, sim, num_labels),
        "n_reactions": float(real.size),
    }


def trajectory_divergences(
    real_traj: ArrayLike, sim_traj: ArrayLike, *, ordered: bool = False
) -> dict[str, float]:
    """The macro metrics of :func:`episode_metrics` for two cumulative share trajectories
    of one shape (T, K): ``kl``, ``js``, ``tv``, ``w1`` on the last rows,
    ``kl_mean_over_time`` over the rows, ``dtw`` between the trajectories."""
    real_arr = _trajectory(real_traj, "real_traj")
    sim_arr = _trajectory(sim_traj, "sim_traj")
    if real_arr.shape != sim_arr.shape:
        raise ValueError(f"trajectories differ in shape: {real_arr.shape} and {sim_arr.shape}")
    real_final, sim_final = real_arr[-1], sim_arr[-1]
    return {
        "kl": kl_divergence(real_final, sim_final),
        "js": js_divergence(real_final, sim_final),
        "tv": total_variation(real_final, sim_final),
        "w1": (wasserstein_1 if ordered else total_variation)(real_final, sim_final),
        "kl_mean_over_time": float(
            np.mean([kl_divergence(r, s) for r, s in zip(real_arr, sim_arr, strict=True)])
        ),
        "dtw": dtw_distance(real_arr, sim_arr),
    }
