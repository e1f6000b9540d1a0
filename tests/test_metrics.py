"""Fidelity metrics: hand-computed values, invariants over random inputs, bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mfllm_env.metrics import (
    aggregate,
    dtw_distance,
    episode_metrics,
    js_divergence,
    kl_divergence,
    macro_f1,
    mean_stderr,
    micro_f1,
    resampled_divergences,
    share_divergences,
    share_trajectory,
    total_variation,
    wasserstein_1,
)

LN2 = math.log(2)
SYMMETRIC = [js_divergence, total_variation, wasserstein_1]
VECTOR_METRICS = [kl_divergence, *SYMMETRIC]


def random_shares(rng: np.random.Generator, k: int) -> np.ndarray:
    shares = rng.dirichlet(np.ones(k))
    shares[rng.random(k) < 0.2] = 0.0  # some labels never used
    if shares.sum() == 0:
        shares[0] = 1.0
    return shares / shares.sum()


def reference_dtw(a: np.ndarray, b: np.ndarray, window: int | None = None) -> float:
    """The textbook double loop, to check the vectorised version against."""
    n, m = len(a), len(b)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if window is not None and abs(i - j) > window:
                continue
            cost = 0.5 * np.abs(a[i - 1] - b[j - 1]).sum()
            acc[i, j] = cost + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return float(acc[n, m])


# --- hand-computed values -------------------------------------------------------------


def test_kl_hand_value_with_smoothing():
    eps = 1e-3
    # K = 2: p' = (0.5 + eps) / (1 + 2 eps) = 0.5; q' = (0.25 + eps, 0.75 + eps) / (1 + 2 eps).
    z = 1 + 2 * eps
    q = [(0.25 + eps) / z, (0.75 + eps) / z]
    expected = 0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1])
    assert kl_divergence([0.5, 0.5], [0.25, 0.75], smoothing=eps) == pytest.approx(expected)
    # Counts give the same shares, hence the same value.
    assert kl_divergence([2, 2], [1, 3], smoothing=eps) == pytest.approx(expected)


def test_kl_without_smoothing_is_exact_and_infinite_on_a_missing_label():
    assert kl_divergence([0.5, 0.5], [0.25, 0.75], smoothing=0) == pytest.approx(
        0.5 * math.log(4 / 3)
    )
    assert kl_divergence([0.5, 0.5], [1.0, 0.0], smoothing=0) == math.inf
    # A label the real population never used costs nothing.
    assert kl_divergence([1.0, 0.0], [0.5, 0.5], smoothing=0) == pytest.approx(LN2)


def test_kl_smoothing_keeps_a_missing_label_finite():
    eps = 1e-3
    z = 1 + 2 * eps
    p = [(0.5 + eps) / z, (0.5 + eps) / z]
    q = [(1 + eps) / z, eps / z]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert kl_divergence([1, 1], [4, 0], smoothing=eps) == pytest.approx(expected)


def test_js_hand_values():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(LN2)
    # m = (0.75, 0.25): KL(p||m) = ln(4/3), KL(q||m) = 0.5 ln(4/3).
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(0.75 * math.log(4 / 3))


def test_total_variation_hand_values():
    assert total_variation([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25)
    assert total_variation([1, 1], [1, 3]) == pytest.approx(0.25)
    assert total_variation([1, 0, 0], [0, 0, 1]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("real", "sim", "expected"),
    [
        ([1, 0, 0], [0, 1, 0], 1.0),
        ([1, 0, 0], [0, 0, 1], 2.0),  # ordinal: two label positions away
        ([0.5, 0.5, 0], [0, 0.5, 0.5], 1.0),  # |CDF difference| = 0.5 + 0.5
        ([0.3, 0.7], [0.6, 0.4], 0.3),  # K = 2: equals total variation
    ],
)
def test_wasserstein_hand_values(real, sim, expected):
    assert wasserstein_1(real, sim) == pytest.approx(expected)


def test_wasserstein_custom_positions():
    assert wasserstein_1([1, 0, 0], [0, 0, 1], positions=[0, 1, 10]) == pytest.approx(10.0)
    # Two labels one unit apart is the 0/1 ground metric, where W1 is total variation.
    assert wasserstein_1([0.2, 0.8], [0.9, 0.1], positions=[5, 6]) == pytest.approx(0.7)


def test_dtw_hand_values():
    x, y = [1.0, 0.0], [0.0, 1.0]
    assert dtw_distance([x, y], [[0.5, 0.5]]) == pytest.approx(1.0)  # both rows vs one
    # Cost rows: a0 -> (0, .5, 1), a1 -> (1, .5, 0); best path 0 + .5 + 0.
    assert dtw_distance([x, y], [x, [0.5, 0.5], y]) == pytest.approx(0.5)


def test_dtw_ignores_a_time_shift_that_pointwise_distance_sees():
    x, y = [1.0, 0.0], [0.0, 1.0]
    a = np.array([x, x, y, y])
    b = np.array([x, y, y, y])  # the same switch, one step earlier
    pointwise = sum(total_variation(r, s) for r, s in zip(a, b, strict=True))
    assert pointwise == pytest.approx(1.0)
    assert dtw_distance(a, b) == pytest.approx(0.0, abs=1e-12)
    assert dtw_distance(a, b, window=1) == pytest.approx(0.0, abs=1e-12)
    assert dtw_distance(a, b, window=0) == pytest.approx(pointwise)


def test_dtw_normalises_rows():
    assert dtw_distance([[2, 2], [0, 3]], [[0.5, 0.5], [0, 1]]) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("window", [None, 0, 2, 5])
def test_dtw_matches_reference_loop(seed, window):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    spread = 8 if window is None else window  # lengths may differ by at most the window
    m = int(rng.integers(max(1, n - spread), n + spread + 1))
    a = np.stack([random_shares(rng, 3) for _ in range(n)])
    b = np.stack([random_shares(rng, 3) for _ in range(m)])
    assert dtw_distance(a, b, window=window) == pytest.approx(reference_dtw(a, b, window))


def test_f1_hand_values():
    real, sim = [0, 0, 1, 1], [0, 1, 1, 1]
    assert micro_f1(real, sim) == pytest.approx(0.75)
    # label 0: tp 1, fp 0, fn 1 -> 2/3; label 1: tp 2, fp 1, fn 0 -> 4/5.
    assert macro_f1(real, sim, 2) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # Labels nobody used do not drag the macro mean down.
    assert macro_f1([3, 3], [3, 3], 4) == pytest.approx(1.0)


def test_share_trajectory_cumulative_and_per_step():
    ids = [0, 0, 1, 2, 2]
    cumulative = share_trajectory(ids, 3, step_size=2)
    np.testing.assert_allclose(cumulative, [[1, 0, 0], [0.5, 0.25, 0.25], [0.4, 0.2, 0.4]])
    per_step = share_trajectory(ids, 3, step_size=2, cumulative=False)
    np.testing.assert_allclose(per_step, [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1]])


def test_mean_stderr_hand_values():
    mean, stderr = mean_stderr([1.0, 2.0, 3.0, 6.0])
    assert mean == pytest.approx(3.0)
    # sample variance (4 + 1 + 0 + 9) / 3 = 14/3; stderr = sqrt(14/3) / 2
    assert stderr == pytest.approx(math.sqrt(14 / 3) / 2)
    single = mean_stderr([5.0])
    assert single[0] == 5.0
    assert math.isnan(single[1])


def test_aggregate_skips_and_counts_nan():
    records = [{"kl": 1.0, "tv": 0.1}, {"kl": 3.0}, {"kl": math.nan, "tv": 0.3}]
    summary = aggregate(records)
    assert list(summary) == ["kl", "tv"]
    assert summary["kl"] == pytest.approx({"mean": 2.0, "stderr": 1.0, "n": 2, "n_nan": 1})
    tv = summary["tv"]
    assert (tv["mean"], tv["n"], tv["n_nan"]) == (pytest.approx(0.2), 2, 1)
    assert tv["stderr"] == pytest.approx(math.sqrt(0.02) / math.sqrt(2))
    empty = aggregate([{"kl": math.nan}])["kl"]
    assert math.isnan(empty["mean"]) and empty["n"] == 0 and empty["n_nan"] == 1


def test_episode_metrics_toy_case():
    real, sim = [0, 0, 1, 1], [0, 1, 1, 1]
    metrics = episode_metrics(real, sim, 2, step_size=2)
    assert set(metrics) == {
        "kl", "js", "tv", "w1", "kl_mean_over_time", "dtw", "micro_f1", "macro_f1",
        "n_reactions",
    }  # fmt: skip
    # final shares (0.5, 0.5) vs (0.25, 0.75); cumulative steps (1, 0)/(0.5, 0.5) vs
    # (0.5, 0.5)/(0.25, 0.75).
    assert metrics["kl"] == pytest.approx(kl_divergence([0.5, 0.5], [0.25, 0.75]))
    assert metrics["tv"] == pytest.approx(0.25)
    assert metrics["w1"] == pytest.approx(0.25)
    assert metrics["kl_mean_over_time"] == pytest.approx(
        (kl_divergence([1, 0], [0.5, 0.5]) + kl_divergence([0.5, 0.5], [0.25, 0.75])) / 2
    )
    assert metrics["dtw"] == pytest.approx(0.75)  # cost 0.5 then 0.25 along the diagonal
    assert metrics["micro_f1"] == pytest.approx(0.75)
    assert metrics["n_reactions"] == 4


def test_episode_metrics_w1_uses_the_label_order_only_when_ordered():
    real, sim = [0, 0, 0, 0], [2, 2, 2, 2]
    assert episode_metrics(real, sim, 3, step_size=2)["w1"] == pytest.approx(1.0)  # = TV
    assert episode_metrics(real, sim, 3, step_size=2, ordered=True)["w1"] == pytest.approx(2.0)


def test_episode_metrics_scores_only_the_rollout():
    metrics = episode_metrics([0, 0, 1, 1], [1, 1, 1, 1], 2, step_size=1, warmup=2)
    assert metrics["n_reactions"] == 2
    for name in ("kl", "js", "tv", "w1", "kl_mean_over_time", "dtw"):
        assert metrics[name] == pytest.approx(0.0, abs=1e-12)
    assert metrics["micro_f1"] == metrics["macro_f1"] == 1.0


# --- invariants over random inputs ------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("k", [2, 4, 7])
def test_vector_metric_invariants(seed, k):
    rng = np.random.default_rng(seed)
    p, q = random_shares(rng, k), random_shares(rng, k)
    for metric in VECTOR_METRICS:
        assert metric(p, q) >= 0
        assert metric(p, p) == pytest.approx(0.0, abs=1e-12)
        assert metric(p * 17, q) == pytest.approx(metric(p, q))  # counts are normalised
    for metric in SYMMETRIC:
        assert metric(p, q) == pytest.approx(metric(q, p))
    assert js_divergence(p, q) <= LN2 + 1e-12
    assert total_variation(p, q) <= 1 + 1e-12
    assert wasserstein_1(p, q) >= total_variation(p, q) - 1e-12  # unit spacing >= 0/1 metric


def test_kl_is_not_symmetric():
    p, q = [0.9, 0.1], [0.5, 0.5]
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p))


@pytest.mark.parametrize("seed", range(10))
def test_dtw_invariants(seed):
    rng = np.random.default_rng(seed)
    a = np.stack([random_shares(rng, 4) for _ in range(int(rng.integers(1, 8)))])
    b = np.stack([random_shares(rng, 4) for _ in range(int(rng.integers(1, 8)))])
    assert dtw_distance(a, b) >= 0
    assert dtw_distance(a, b) == pytest.approx(dtw_distance(b, a))
    assert dtw_distance(a, a) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cumulative", [True, False])
def test_share_trajectory_rows_are_distributions(seed, cumulative):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, size=int(rng.integers(1, 60)))
    traj = share_trajectory(ids, 4, step_size=16, cumulative=cumulative)
    assert traj.shape == (math.ceil(ids.size / 16), 4)
    assert (traj >= 0).all()
    np.testing.assert_allclose(traj.sum(axis=1), 1.0)
    first_step = np.bincount(ids[:16], minlength=4) / ids[:16].size
    np.testing.assert_allclose(traj[0], first_step)
    if cumulative:
        np.testing.assert_allclose(traj[-1], np.bincount(ids, minlength=4) / ids.size)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", VECTOR_METRICS)
@pytest.mark.parametrize(
    ("real", "sim", "message"),
    [
        ([0.5, 0.5], [0.2, 0.3, 0.5], "same length"),
        ([0.5, -0.5, 1.0], [0.2, 0.3, 0.5], "negative"),
        ([0.5, math.nan, 0.5], [0.2, 0.3, 0.5], "NaN"),
        ([0.5, 0.5, 0.0], [0.2, math.inf, 0.5], "infinite"),
        ([0.0, 0.0, 0.0], [0.2, 0.3, 0.5], "all zeros"),
        ([[0.5, 0.5]], [[0.5, 0.5]], "1-D"),
        ([], [], "1-D"),
    ],
)
def test_vector_metrics_reject_bad_input(metric, real, sim, message):
    with pytest.raises(ValueError, match=message):
        metric(real, sim)


@pytest.mark.parametrize("smoothing", [-1e-3, math.nan, math.inf])
def test_kl_rejects_bad_smoothing(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        kl_divergence([1, 1], [1, 1], smoothing=smoothing)


def test_wasserstein_rejects_bad_positions():
    with pytest.raises(ValueError, match="positions"):
        wasserstein_1([1, 1], [1, 1], positions=[0, 1, 2])


def test_dtw_rejects_bad_input():
    with pytest.raises(ValueError, match="same K"):
        dtw_distance([[1, 0]], [[1, 0, 0]])
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        dtw_distance([1, 0], [[1, 0]])
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        dtw_distance([[1, 0], [0, 0]], [[1, 0]])
    with pytest.raises(ValueError, match="NaN"):
        dtw_distance([[1, math.nan]], [[1, 0]])
    with pytest.raises(ValueError, match="window"):
        dtw_distance([[1, 0]] * 4, [[1, 0]] * 2, window=1)


def test_id_functions_reject_bad_input():
    with pytest.raises(ValueError, match="one to one"):
        micro_f1([0, 1], [0])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        macro_f1([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="integer"):
        share_trajectory([0.0, 1.0], 2, step_size=1)
    with pytest.raises(ValueError, match="step_size"):
        share_trajectory([0, 1], 2, step_size=0)
    with pytest.raises(ValueError, match="warmup"):
        episode_metrics([0, 1], [0, 1], 2, step_size=1, warmup=2)
    with pytest.raises(ValueError, match="NaN"):
        mean_stderr([1.0, math.nan])
    with pytest.raises(ValueError, match="non-empty"):
        mean_stderr([])


@pytest.mark.parametrize("value", [1.5, math.nan, "2", None, True, 10**30])
def test_count_arguments_that_are_not_counts_are_named(value):
    """Each was a numpy casting error, an OverflowError or a slice TypeError."""
    got = re.escape(f"got {value!r}")
    with pytest.raises(ValueError, match=f"step_size must be an integer >= 1 .*{got}"):
        share_trajectory([0, 1], 2, step_size=value)
    with pytest.raises(ValueError, match=f"step_size must be an integer >= 1 .*{got}"):
        episode_metrics([0, 1, 2], [0, 1, 2], 4, step_size=value)
    with pytest.raises(ValueError, match=f"num_labels must be an integer >= 1 .*{got}"):
        macro_f1([0, 1], [0, 1], value)
    with pytest.raises(ValueError, match=f"num_labels must be an integer >= 1 .*{got}"):
        share_trajectory([0, 1], value, step_size=1)
    with pytest.raises(ValueError, match=f"warmup must be in .0, 3. to leave a rollout, {got}"):
        episode_metrics([0, 1, 2], [0, 1, 2], 4, step_size=1, warmup=value)
    if value is not None:  # window=None: no band
        with pytest.raises(ValueError, match=f"window must be an integer >= 1 .*{got}"):
            dtw_distance([[1, 0], [0, 1]], [[1, 0]], window=value)


@pytest.mark.parametrize("smoothing", ["x", None, True])
def test_kl_names_a_smoothing_that_is_not_a_number(smoothing):
    with pytest.raises(ValueError, match=f"smoothing must be a finite .*, got {smoothing!r}"):
        kl_divergence([1, 1], [1, 0], smoothing=smoothing)


@pytest.mark.parametrize("value", [None, "x", [1, 2]])
def test_aggregate_names_a_value_that_is_not_a_number(value):
    message = f"record 1: metric 'kl' must be a number, got {value!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        aggregate([{"kl": 1.0}, {"kl": value}])


@pytest.mark.parametrize("records", [{"kl": 1.0}, "kl", [1.0, 2.0]])
def test_aggregate_refuses_records_that_are_not_mappings(records):
    with pytest.raises(TypeError, match="records must be a sequence of mappings"):
        aggregate(records)


def test_resampled_divergences_average_the_kl_of_multinomial_resamples():
    """The noise floor: with shares (1/2, 1/2) and one reaction per resample, every draw
    is (1, 0) or (0, 1), so the mean KL is exactly the smoothed KL of either."""
    rng = np.random.default_rng(0)
    floor = resampled_divergences([3, 3], 1, resamples=50, rng=rng)
    assert floor == pytest.approx(share_divergences([1, 1], [1, 0]))
    assert floor["kl"] == pytest.approx(kl_divergence([1, 1], [1, 0]))
    # More reactions per resample, less noise; one label only, none at all.
    rng = np.random.default_rng(0)
    assert resampled_divergences([3, 3], 64, resamples=200, rng=rng)["kl"] < floor["kl"] / 10
    assert resampled_divergences([0, 5], 4, resamples=10, rng=rng) == {
        "kl": 0.0, "js": 0.0, "tv": 0.0
    }  # fmt: skip
    for args, message in (
        (([1, 1], 0), "size must be an integer >= 1"),
        (([0, 0], 3), "real is all zeros"),
    ):
        with pytest.raises(ValueError, match=message):
            resampled_divergences(*args, resamples=10, rng=rng)
    with pytest.raises(ValueError, match="resamples must be an integer >= 1"):
        resampled_divergences([1, 1], 2, resamples=0, rng=rng)
