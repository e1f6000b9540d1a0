"""Figures for fidelity reports: real against simulated label-share trajectories.

Drawing goes through matplotlib's Agg canvas on a standalone ``Figure``: no display is
needed, pyplot's global figure list is never touched, and nothing is left open.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from mfllm_env import runs

__all__ = [
    "plot_horizons",
    "plot_metric_bars",
    "plot_policy_shares",
    "plot_share_trajectories",
    "save_png",
]


def plot_share_trajectories(
    real: ArrayLike,
    sim: ArrayLike,
    labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    warmup_step: float | None = None,
    x_label: str = "step",
    x_values: ArrayLike | None = None,
) -> Path:
    """Plot real (solid) and simulated (dashed) label shares over steps into one PNG.

    ``real`` and ``sim`` are share trajectories of the same shape (T, K), e.g. from
    :func:`mfllm_env.metrics.share_trajectory`; ``labels`` names the K columns, one colour
    each. The x axis is ``x_values`` (T numbers; default the step numbers 1..T, so row
    ``t`` is drawn at step ``t + 1``, when its shares are known). ``warmup_step``, in the
    same units, draws a vertical line where warm-up ends; ``x_label`` names the x axis. The
    y axis is fixed to [0, 1].
    Parent folders of ``path`` are created. Returns ``path`` as a :class:`~pathlib.Path`.
    Raises ``ValueError`` on mismatched shapes.
    """
    real_arr = np.asarray(real, dtype=np.float64)
    sim_arr = np.asarray(sim, dtype=np.float64)
    if real_arr.ndim != 2 or real_arr.shape != sim_arr.shape or real_arr.size == 0:
        raise ValueError(
            f"real and sim must be non-empty (T, K) arrays of one shape, got {real_arr.shape} "
            f"and {sim_arr.shape}"
        )
    steps, num_labels = real_arr.shape
    if len(labels) != num_labels:
        raise ValueError(f"labels must name the {num_labels} columns, got {len(labels)} names")
    x = np.arange(1, steps + 1) if x_values is None else np.asarray(x_values, dtype=np.float64)
    if x.shape != (steps,):
        raise ValueError(f"x_values must hold {steps} numbers, got shape {x.shape}")

    fig = _figure()
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(num_labels)]
    for k, colour in enumerate(colours):
        ax.plot(x, real_arr[:, k], color=colour, linestyle="-", marker=".")
        ax.plot(x, sim_arr[:, k], color=colour, linestyle="--", marker=".")
    if warmup_step is not None:
        ax.axvline(warmup_step, color="grey", linestyle=":", linewidth=1.5)

    # One legend entry per label colour, then one per line style.
    handles = [Line2D([], [], color=c, linewidth=3) for c in colours]
    handles += [
        Line2D([], [], color="black", linestyle="-", label="real"),
        Line2D([], [], color="black", linestyle="--", label="simulated"),
    ]
    names = [*labels, "real", "simulated"]
    if warmup_step is not None:
        handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=1.5))
        names.append("end of warm-up")
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

    ax.set_xlabel(x_label)
    ax.set_ylabel("share")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)

    return save_png(fig, path)


def _check_per_name(counted: str, count: int, **sequences: Sequence[Any]) -> None:
    """``ValueError`` unless each of ``sequences`` has one entry per one of ``counted``."""
    for name, values in sequences.items():
        if len(values) != count:
            raise ValueError(
                f"{name} must have one entry per {counted} ({count}), got {len(values)}"
            )


def _figure(size: tuple[float, float] = (7, 4)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colour(index: int, count: int) -> Any:
    """A distinct colour for line ``index`` of ``count`` (tab10 up to 10 lines, tab20 up
    to 20, then repeating)."""
    return f"C{index}" if count <= 10 else colormaps["tab20"](index % 20)


def save_png(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (:func:`mfllm_env.runs.write_atomic`:
    a kill leaves the old image or the new one); returns ``path``."""
    out = Path(path)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=dpi)
    runs.write_atomic(out, image.getvalue())
    return out


def plot_metric_bars(
    means: Sequence[float],
    errors: Sequence[float],
    names: Sequence[str],
    path: str | Path,
    *,
    metric: str,
    title: str = "",
    highlight: Sequence[bool] | None = None,
) -> Path:
    """A horizontal bar per name (first on top) with its mean and an error bar (NaN: no
    bar); ``highlight`` marks bars drawn in a second colour (e.g. naive forecasters). One
    mean, error (``>= 0`` or NaN) and mark per name, else ``ValueError``."""
    values = np.nan_to_num(np.asarray(means, dtype=np.float64))
    spread = np.nan_to_num(np.asarray(errors, dtype=np.float64))
    marked = list(highlight) if highlight is not None else [False] * len(names)
    _check_per_name("names", len(names), means=values, errors=spread, highlight=marked)
    if (spread < 0).any():
        raise ValueError(f"errors must be >= 0 (or NaN), got {list(errors)}")
    fig = _figure((7, 0.9 + 0.4 * len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    colours = ["0.6" if mark else "C0" for mark in marked]
    ax.barh(y, values, xerr=spread, color=colours, capsize=3)
    ax.set_yticks(y, list(names))
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return save_png(fig, path)


def plot_horizons(
    horizons: Sequence[int],
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """KL against rollout horizon: one line per name, ``curves[name] = (means, errors)``
    at ``horizons`` (NaN points are left out); one mean and error per horizon, else
    ``ValueError``."""
    for name, (means, errors) in curves.items():
        _check_per_name("horizons", len(horizons), **{f"{name} means": means})
        _check_per_name("horizons", len(horizons), **{f"{name} errors": errors})
    fig = _figure()
    ax = fig.add_subplot()
    for k, (name, (means, errors)) in enumerate(curves.items()):
        style = ":" if name.startswith("naive") else "-"
        ax.errorbar(
            horizons, means, yerr=np.nan_to_num(np.asarray(errors, dtype=np.float64)),
            label=name, linestyle=style, marker="o", capsize=3, color=_colour(k, len(curves)),
        )  # fmt: skip
    ax.set_xlabel("reactions after warm-up (horizon)")
    ax.set_ylabel("KL(real ‖ sim), shares up to the horizon")
    ax.set_xticks(list(horizons))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return save_png(fig, path)


def plot_policy_shares(
    real: ArrayLike,
    sims: dict[str, ArrayLike],
    labels: Sequence[str],
    path: str | Path,
    *,
    x_values: ArrayLike,
    warmup: float | None = None,
    title: str = "",
) -> Path:
    """Real vs each policy's simulated cumulative shares, one panel per label: the real
    trajectory in black, one colour per policy; all (T, K) arrays on ``x_values``
    (``ValueError`` for any other shape)."""
    real_arr = np.asarray(real, dtype=np.float64)
    x = np.asarray(x_values, dtype=np.float64)
    shape = (len(x), len(labels))
    for name, values in {"real": real, **sims}.items():
        if np.shape(values) != shape:
            raise ValueError(
                f"{name}'s shares must have shape {shape} (x_values by labels), got "
                f"{np.shape(values)}"
            )
    fig = _figure((3.2 * len(labels) + 1.8, 3.2))
    axes = fig.subplots(1, len(labels), sharey=True)
    for k, (ax, label) in enumerate(zip(np.atleast_1d(axes), labels, strict=True)):
        ax.plot(x, real_arr[:, k], color="black", linewidth=2, label="real")
        for j, (name, sim) in enumerate(sims.items()):
            sim_arr = np.asarray(sim, dtype=np.float64)
            ax.plot(x, sim_arr[:, k], color=_colour(j, len(sims)), linestyle="--", label=name)
        if warmup is not None:
            ax.axvline(warmup, color="grey", linestyle=":", linewidth=1.5)
        ax.set_title(label)
        ax.set_xlabel("reactions")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
    first = np.atleast_1d(axes)[0]
    first.set_ylabel("share")
    handles, names = first.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper", frameon=False)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
