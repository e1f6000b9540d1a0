"""Share-trajectory figures: a valid PNG comes out, bad shapes are refused."""

from __future__ import annotations

import numpy as np
import pytest

from mfllm_env.labels import SDQC
from mfllm_env.metrics import share_trajectory
from mfllm_env.report import (
    plot_horizons,
    plot_metric_bars,
    plot_policy_shares,
    plot_share_trajectories,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def trajectories() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    real = rng.choice(4, size=200, p=[0.15, 0.1, 0.15, 0.6])
    sim = rng.choice(4, size=200, p=[0.3, 0.05, 0.1, 0.55])
    return share_trajectory(real, 4, step_size=16), share_trajectory(sim, 4, step_size=16)


def test_writes_a_png(tmp_path, trajectories):
    real, sim = trajectories
    target = tmp_path / "figures" / "shares.png"
    out = plot_share_trajectories(real, sim, SDQC.labels, target, title="toy event", warmup_step=3)
    assert out == target
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000


def test_custom_x_values(tmp_path, trajectories):
    real, sim = trajectories
    x = 16 * np.arange(1, len(real) + 1)  # reactions seen, not steps
    out = plot_share_trajectories(real, sim, SDQC.labels, tmp_path / "x.png", x_values=x)
    assert out.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("real", "sim", "labels", "message"),
    [
        (np.full((3, 4), 0.25), np.full((2, 4), 0.25), SDQC.labels, "one shape"),
        (np.full(4, 0.25), np.full(4, 0.25), SDQC.labels, "one shape"),
        (np.full((3, 4), 0.25), np.full((3, 4), 0.25), SDQC.labels[:3], "labels"),
    ],
)
def test_rejects_bad_shapes(tmp_path, real, sim, labels, message):
    with pytest.raises(ValueError, match=message):
        plot_share_trajectories(real, sim, labels, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_rejects_mismatched_x_values(tmp_path):
    shares = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="x_values"):
        plot_share_trajectories(shares, shares, SDQC.labels, tmp_path / "x.png", x_values=[1, 2])


def test_a_png_that_cannot_be_written_leaves_no_partial_file(tmp_path, trajectories):
    real, sim = trajectories
    folder = tmp_path / "plot.png"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        plot_share_trajectories(real, sim, SDQC.labels, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]  # no plot.png.partial


def test_bars_and_curves_need_one_value_per_name(tmp_path):
    """A short errors or highlight list was broadcast or cycled onto every bar."""
    path = tmp_path / "bars.png"
    with pytest.raises(ValueError, match=r"errors must have one entry per names \(2\), got 1"):
        plot_metric_bars([1.0, 2.0], [0.1], ["a", "b"], path, metric="kl")
    with pytest.raises(ValueError, match=r"highlight must have one entry per names \(2\), got 1"):
        plot_metric_bars([1.0, 2.0], [0.1, 0.1], ["a", "b"], path, metric="kl", highlight=[True])
    with pytest.raises(ValueError, match=r"errors must be >= 0 \(or NaN\)"):
        plot_metric_bars([1.0, 2.0], [-0.1, 0.1], ["a", "b"], path, metric="kl")
    with pytest.raises(ValueError, match=r"p means must have one entry per horizons \(2\), got 1"):
        plot_horizons([1, 2], {"p": ([1.0], [0.1])}, path)
    with pytest.raises(ValueError, match=r"p's shares must have shape \(2, 2\)"):
        plot_policy_shares([[1, 0], [0, 1]], {"p": [[1, 0]]}, ["a", "b"], path, x_values=[1, 2])
    assert not path.exists()
