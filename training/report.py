"""The training report: loss and reward curves from a run folder's ``log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mfllm_env.report import save_png

GRPO_KEYS = ("rewards/relevance/mean", "rewards/compression/mean", "reward")


def read_log(path: Path) -> dict[str, dict[str, dict[int, float]]]:
    """``{stage: {key: {step: value}}}`` from ``log.jsonl``. A resumed run logs steps after
    its checkpoint again; the later value of a (stage, key, step) wins."""
    curves: dict[str, dict[str, dict[int, float]]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            stage, step = row.pop("stage"), int(row.pop("step"))
            for key, value in row.items():
                curves.setdefault(stage, {}).setdefault(key, {})[step] = float(value)
    return curves


def plot_training_report(log_path: Path, png_path: Path) -> Path | None:
    """One panel per stage: SFT stages show the training loss and the dev loss (mean NLL
    per token); IB-Tune's GRPO stages show relevance (left axis) and compression (right
    axis) per logging step; planner stages show the mean reward (return). Written
    atomically (:func:`mfllm_env.report.save_png`). Returns ``png_path``, or ``None`` when
    nothing was logged yet."""
    if not log_path.exists():
        return None
    curves = read_log(log_path)
    stages = [s for s in curves if {"loss", "eval_loss", *GRPO_KEYS} & set(curves[s])]
    if not stages:
        return None
    fig = Figure(figsize=(7, 3 * len(stages)), layout="constrained")
    FigureCanvasAgg(fig)
    for index, stage in enumerate(stages, start=1):
        ax = fig.add_subplot(len(stages), 1, index)
        data = curves[stage]
        ax.set_title(stage)
        ax.set_xlabel("optimiser step")
        if GRPO_KEYS[0] in data:
            _line(ax, data[GRPO_KEYS[0]], "C0", "relevance (nats / reaction)")
            ax.set_ylabel("relevance", color="C0")
            if GRPO_KEYS[1] in data:
                right = ax.twinx()
                _line(right, data[GRPO_KEYS[1]], "C3", "compression (nats / summary)")
                right.set_ylabel("compression", color="C3")
                right.legend(loc="upper right", fontsize=8)
            ax.legend(loc="upper left", fontsize=8)
        elif "reward" in data and "eval_loss" not in data:
            _line(ax, data["reward"], "C2", "mean reward")
            ax.set_ylabel("reward")
            ax.legend(fontsize=8)
        else:
            if "loss" in data:
                _line(ax, data["loss"], "C0", "train loss")
            if "eval_loss" in data:
                steps = sorted(data["eval_loss"])
                ax.plot(
                    steps,
                    [data["eval_loss"][s] for s in steps],
                    "o--",
                    color="C1",
                    label="dev loss",
                )
            ax.set_ylabel("NLL per token (nats)")
            ax.legend(fontsize=8)
    return save_png(fig, png_path, dpi=100)


def _line(ax, points: dict[int, float], colour: str, label: str) -> None:
    steps = sorted(points)
    ax.plot(steps, [points[s] for s in steps], color=colour, label=label)
