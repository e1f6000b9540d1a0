"""Share-trajectory figures: a valid PNG comes out, bad shapes are refused."""

from __future__ import annotations

import numpy as np
import pytest

from mfllm_env.labels import SDQC
from mfllm_env.metrics import share_trajectory
from mfllm_env.report import plot_share_trajectories

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
