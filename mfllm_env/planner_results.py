"""A planner evaluation (``mfllm planner-eval``) in the library: :func:`evaluate_planners`
plays every planner on every scenario and seed into a report folder (resumable), and its
results come from the episode records (:func:`mfllm_env.planner.run_planner_episode`'s,
with ``planner``, ``scenario`` and ``seed``): :func:`summarise` (mean ± standard error per
planner, and each planner's return paired with the threshold baseline's),
:func:`results_markdown` (the table) and :func:`plot_planner_shares` (the share
trajectories by planner).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from mfllm_env import runs
from mfllm_env.benchmark import paired_comparison
from mfllm_env.core.protocols import Policy
from mfllm_env.metrics import mean_stderr
from mfllm_env.planner import PlannerEnv, run_planner_episode
from mfllm_env.report import save_png
from mfllm_env.runs import RunFolder
from mfllm_env.scenario import Scenario

EPISODE_KEYS = ("planner", "scenario", "seed", "return", "final_shares", "trajectory")
"""The keys of an episode record (``episodes.jsonl``)."""
TIMING_KEYS = ("planner", "scenario", "seed", "seconds")
"""The keys of a timing record (``timing.jsonl``: an episode's wall time)."""
RESULT_FILES = ("episodes.jsonl", "timing.jsonl", "results.md", "results.json", "shares.png")
"""What :func:`evaluate_planners` writes into its folder (with ``config.json``)."""


class PlannerSource(Protocol):
    """The planners of an evaluation, by the names it was given: ``action_mode(name)``,
    how the planner acts (``"menu"``: an option of the menu; ``"text"``: a message), and
    ``planner(name, env)``, the planner for one env of that mode."""

    def action_mode(self, name: str) -> Literal["menu", "text"]: ...

    def planner(self, name: str, env: PlannerEnv) -> Policy: ...


def evaluate_planners(
    folder: RunFolder,
    config: Mapping[str, Any],
    names: Sequence[str],
    scenarios: Sequence[Scenario],
    seeds: Sequence[int],
    new_env: Callable[..., PlannerEnv],
    planners: PlannerSource,
    *,
    progress: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """Play every planner of ``names`` on every scenario and seed into ``folder`` (created
    with ``config``), and write the results; returns them (:func:`summarise`) and the
    labels of the population's scheme.

    ``new_env(i, action_mode=...)`` builds the planner env of ``scenarios[i]`` (one per
    scenario and action mode, reused by its planners and seeds). An episode's record is
    appended to ``episodes.jsonl`` as it ends, after its time in ``timing.jsonl``; a
    resumed folder plays only the episodes its records lack (planners and seeds may be
    added). The records are then put in the order asked (planner, scenario, seed; others
    after) and summarised into ``results.json``, ``results.md`` and ``shares.png``.
    """
    out = folder.path
    episodes_path, timing_path = out / "episodes.jsonl", out / "timing.jsonl"
    envs: dict[tuple[str, int], PlannerEnv] = {}
    with folder.writing(config, results=("episodes.jsonl",)):
        rows = runs.read_records(
            episodes_path,
            EPISODE_KEYS,
            "a planner episode record",
            unique=("planner", "scenario", "seed"),
        )
        done = {_episode_key(r) for r in rows}
        timing = [t for t in runs.read_records(timing_path, TIMING_KEYS) if _episode_key(t) in done]
        runs.write_atomic(timing_path, runs.jsonl_text(timing))  # none of an unfinished episode
        todo = [
            (name, i, seed)
            for name in names
            for i in range(len(scenarios))
            for seed in seeds
            if (name, scenarios[i].scenario_id, seed) not in done
        ]
        with (
            episodes_path.open("a", encoding="utf-8") as handle,
            timing_path.open("a", encoding="utf-8") as timing_handle,
        ):
            for name, i, seed in tqdm(todo, desc="planner episodes", disable=not progress):
                key = (planners.action_mode(name), i)
                if key not in envs:
                    envs[key] = new_env(i, action_mode=key[0])
                env = envs[key]
                started = time.perf_counter()
                record = run_planner_episode(env, planners.planner(name, env), seed)
                record.update(planner=name, scenario=scenarios[i].scenario_id, seed=seed)
                # Timing first: the record is what marks the episode done.
                seconds = time.perf_counter() - started
                runs.append_record(timing_handle, {**_identity(record), "seconds": seconds})
                runs.append_record(handle, record)
                rows.append(record)
    # A fixed order (planner, scenario, seed as asked; others after), whatever was resumed.
    wanted = [(n, s.scenario_id, seed) for n in names for s in scenarios for seed in seeds]
    position = {key: k for k, key in enumerate(wanted)}
    rows = _sorted_records(episodes_path, rows, position)
    _sorted_records(timing_path, runs.read_records(timing_path, TIMING_KEYS), position)
    labels = list((next(iter(envs.values())) if envs else new_env(0)).scheme.labels)
    rows = [r for r in rows if _episode_key(r) in position]
    results = summarise(rows, names, labels)
    runs.write_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    runs.write_atomic(out / "results.md", results_markdown(results, labels))
    plot_planner_shares(rows, names, labels, out / "shares.png")
    return results, labels


def _episode_key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row["planner"], row["scenario"], row["seed"])


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    return {"planner": row["planner"], "scenario": row["scenario"], "seed": row["seed"]}


def _sorted_records(
    path: Path, rows: list[dict[str, Any]], position: dict[tuple[str, str, int], int]
) -> list[dict[str, Any]]:
    """``rows`` (the records of ``path``) in the order of ``position`` (others after, as
    they were); ``path`` rewritten (atomically) if that changed their order."""
    ordered = sorted(rows, key=lambda r: position.get(_episode_key(r), len(position)))
    if ordered != rows:
        runs.write_atomic(path, runs.jsonl_text(ordered))
    return ordered


def summarise(
    rows: Sequence[dict[str, Any]], names: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Per planner: mean ± standard error over seeds (each seed's mean over scenarios) of
    the return, the final distance and each final share; the interventions per episode;
    and a paired comparison of the return with the threshold baseline (by scenario)."""
    by_planner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_planner[row["planner"]].append(row)
    results: dict[str, Any] = {}
    for name in names:
        episodes = by_planner.get(name, [])
        if not episodes:
            continue
        per_seed: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for run in episodes:
            per_seed[run["seed"]].append(run)
        entry: dict[str, Any] = {"episodes": len(episodes), "seeds": len(per_seed)}

        measures: dict[str, Callable[[dict[str, Any]], float]] = {
            "return": lambda r: r["return"],
            "final_distance": lambda r: r["final_distance"],
            "interventions": lambda r: r["interventions"],
        }
        for j, label in enumerate(labels):
            measures[f"share_{label}"] = lambda r, j=j: r["final_shares"][j]
        for key, value in measures.items():
            seed_means = [np.mean([value(r) for r in group]) for group in per_seed.values()]
            mean, stderr = mean_stderr(seed_means)
            entry[key] = {"mean": mean, "stderr": stderr}
        results[name] = entry
    if "threshold" in by_planner:
        base = [(r["scenario"], r["seed"], r) for r in by_planner["threshold"]]
        for name in results:
            if name != "threshold":
                other = [(r["scenario"], r["seed"], r) for r in by_planner[name]]
                results[name]["vs_threshold"] = paired_comparison(other, base, "return")
    return results


def display_name(name: str, names: Sequence[str]) -> str:
    """``reinforce=runs/x/planner.json`` -> ``reinforce (trained)``, unless that would
    make two planners look the same."""
    kind, _, path = name.partition("=")
    short = f"{kind} (trained)" if path else kind
    clash = sum(1 for n in names if n.partition("=")[0] == kind and bool(n.partition("=")[2]))
    return short if clash <= 1 else name


def _cell(stats: dict[str, float], digits: int = 3) -> str:
    if np.isnan(stats["stderr"]):
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['stderr']:.{digits}f}"


def results_markdown(results: dict[str, Any], labels: Sequence[str]) -> str:
    """The table of :func:`summarise`'s ``results`` (a planner per row, the threshold
    comparison last) and a paragraph on how to read it."""
    header = ["planner", "return", "final distance", "interventions"]
    header += [f"final {label}" for label in labels] + ["return vs threshold (p)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in results.items():
        versus = entry.get("vs_threshold")
        if versus and versus["n"] >= 2:
            comparison = f"{versus['difference']:+.3f} (p = {versus['p_value']:.2f})"
        else:
            comparison = ""
        cells = [
            display_name(name, list(results)),
            _cell(entry["return"]),
            _cell(entry["final_distance"]),
            _cell(entry["interventions"], 2),
            *[_cell(entry[f"share_{label}"], 2) for label in labels],
            comparison,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Mean ± standard error over seeds (each seed: the mean over scenarios). Return: "
        "higher is better (minus the windows' distances to the target, minus costs). The "
        "comparison pairs episodes by scenario with the threshold baseline (sign-flip "
        "permutation test over scenarios); no correction for multiple comparisons."
    )
    return "\n".join(lines) + "\n"


def plot_planner_shares(
    rows: Sequence[dict[str, Any]], names: Sequence[str], labels: Sequence[str], path: Path
) -> Path | None:
    """One panel per label: its cumulative share over the episode, averaged over the
    episodes of each planner (reaction index on the x axis); ``none`` is the population
    without intervention."""
    if not rows:
        return None
    fig = Figure(figsize=(4 * len(labels), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    for index, name in enumerate(names):
        played = [r for r in rows if r["planner"] == name]
        if not played:
            continue
        length = min(len(r["trajectory"]) for r in played)
        x = [step["reactions"][1] for step in played[0]["trajectory"][:length]]
        values = np.array(
            [[step["cumulative"] for step in r["trajectory"][:length]] for r in played]
        )
        for j, ax in enumerate(axes):
            label = display_name(name, names)
            ax.plot(x, values[:, :, j].mean(0), color=f"C{index % 10}", label=label)
    warmup_end = next(
        (step["reactions"][0] for step in rows[0]["trajectory"] if not step["warmup"]), None
    )
    for j, ax in enumerate(axes):
        ax.set_title(f"{labels[j]} (cumulative share)")
        ax.set_xlabel("reactions")
        if warmup_end is not None:
            ax.axvline(warmup_end, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=7)
    fig.suptitle("Share trajectories by planner (mean over episodes; dotted: end of warm-up)")
    return save_png(fig, path, dpi=100)
