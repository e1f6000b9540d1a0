"""Evaluating governments against household populations in the macro-economy.

:func:`evaluate_macro` plays every :class:`Matchup` (a government and a household
population) for each seed, appending one record per episode to ``episodes.jsonl`` as it
goes (a resumed evaluation skips the episodes already there), then writes the table --
per matchup, the mean +- standard error over seeds of:

* ``years``: years the economy survived (the cap, 300 by default, when it never ended);
* ``gdp_growth``: annual growth of output per household, percent, from the first year to
  the last (none for a one-year run);
* ``log10_output``: log10 of output per household in the last year;
* ``income_gini`` / ``wealth_gini``: Gini coefficients of after-tax income and of wealth,
  averaged over the years played;
* ``welfare``: the households' mean reward per year, in (0, 1) (x100: the paper's social
  welfare of 100 households);

into ``table.json`` and ``table.md``, and two plots: ``trajectories.png`` (output per
household and both Gini coefficients, year by year, the mean over seeds) and
``wealth.png`` (the Lorenz curve of wealth in the last year, seed by seed pooled).

:func:`standard_matchups` builds the grid: the baseline governments (free market, Saez,
US federal 2022) against rule and RL households, and each trained run's government
against its own co-trained households and against the rule households, in the order it
was trained in (Stackelberg, or simultaneous for that ablation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfllm_env import runs
from mfllm_env.core.protocols import Policy
from mfllm_env.games.macro import EconomyParameters, MacroEnv, RuleHouseholds
from mfllm_env.registry import family
from training.macro import BASELINE_GOVERNMENTS, play_economy, plays_simultaneously

MACRO = family("macro")
"""The family evaluated; its household envs are built through the registry."""

METRICS = ("years", "gdp_growth", "log10_output", "income_gini", "wealth_gini", "welfare")
LORENZ_POINTS = 21
RECORDED_USAGE = {
    "calls": "calls",
    "replies": "actions",
    "errors": "errors",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
}
"""An episode record's ``usage`` of LLM households: name in the record -> count of the
policy's :attr:`~agents.policies.LLMPolicy.usage` (its replies are the policy's actions)."""


@dataclass(frozen=True)
class Matchup:
    """A government and a household population: ``make_env()`` builds the households'
    env (its own government taxes when ``make_government`` is ``None``),
    ``make_households()`` the households' policy, ``make_government()`` the leader."""

    government: str
    households: str
    make_env: Callable[[], MacroEnv]
    make_households: Callable[[], Policy]
    make_government: Callable[[], Policy] | None = None
    simultaneous: bool = False


def read_trained_run(run: Path) -> dict[str, Any]:
    """A ``mfllm macro-train`` run folder's ``config.json``, checked to hold the trained
    policies (``ValueError`` naming the folder otherwise)."""
    run = Path(run)
    config_path = run / "config.json"
    missing = [
        name
        for name in ("config.json", "households.pt", "government.pt")
        if not (run / name).is_file()
    ]
    if missing:
        raise ValueError(f"{run} is not a finished macro-train run: it lacks {', '.join(missing)}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or config.get("command") != "macro-train":
        raise ValueError(f"{run} holds {runs.describe_run(config)}, not an mfllm macro-train run")
    return config


def standard_matchups(
    trained: dict[str, Path],
    *,
    households: int,
    years: int,
    rl_households: Path | None = None,
) -> list[Matchup]:
    """The grid of the module docstring; ``trained`` maps a label to a ``macro-train``
    run folder, ``rl_households`` is the run whose households play the baseline
    governments as the RL population (by default the first of ``trained``; none: no RL
    rows for the baselines)."""
    from agents.macro_rl import RLGovernment, RLHouseholds

    parameters = EconomyParameters(years=years)
    configs = {label: read_trained_run(run) for label, run in trained.items()}
    if rl_households is None and trained:
        rl_households = next(iter(trained.values()))
    matchups = []
    for name in BASELINE_GOVERNMENTS:

        def make_env(name: str = name) -> MacroEnv:
            return MACRO.population_env(households, government=name, parameters=parameters)

        matchups.append(Matchup(name, "rule", make_env, RuleHouseholds))
        if rl_households is not None:
            path = Path(rl_households) / "households.pt"
            matchups.append(
                Matchup(name, "rl", make_env, lambda path=path: RLHouseholds.load(path))
            )
    for label, run in trained.items():

        def led_env() -> MacroEnv:
            return MACRO.population_env(households, parameters=parameters)

        def government(run: Path = Path(run)) -> Policy:
            return RLGovernment.load(run / "government.pt")

        simultaneous = plays_simultaneously(configs[label].get("mode"))
        own = Path(run) / "households.pt"
        matchups.append(
            Matchup(
                label,
                "rl",
                led_env,
                lambda own=own: RLHouseholds.load(own),
                government,
                simultaneous,
            )
        )
        matchups.append(Matchup(label, "rule", led_env, RuleHouseholds, government, simultaneous))
    return matchups


def play_record(matchup: Matchup, seed: int) -> dict[str, Any]:
    """One episode of ``matchup`` with ``seed``, as an ``episodes.jsonl`` record."""
    env = matchup.make_env()
    households = matchup.make_households()
    government = matchup.make_government() if matchup.make_government else None
    output, income_gini, wealth_gini, welfare = [], [], [], []
    ended = None
    for played in play_economy(
        env, households, government, seed=seed, simultaneous=matchup.simultaneous
    ):
        year = played.year
        output.append(year.output / env.game.n)
        income_gini.append(year.income_gini)
        wealth_gini.append(year.wealth_gini)
        welfare.append(float(np.nan_to_num(year.rewards).mean()))
        ended = year.ended
        wealth = year.next_wealth
    years = len(output)
    finite = np.isfinite(output[-1]) and output[-1] > 0 and output[0] > 0
    growth = (
        100.0 * ((output[-1] / output[0]) ** (1.0 / (years - 1)) - 1.0)
        if years > 1 and finite
        else None
    )
    held = np.sort(np.maximum(np.nan_to_num(wealth), 0.0))
    cumulative = np.concatenate([[0.0], np.cumsum(held)])
    points = np.linspace(0, held.size, LORENZ_POINTS).round().astype(int)
    lorenz = (cumulative[points] / cumulative[-1]).tolist() if cumulative[-1] > 0 else None
    record = {
        "government": matchup.government,
        "households": matchup.households,
        "seed": seed,
        "n_households": env.game.n,
        "year_cap": env.game.parameters.years,
        "years": years,
        "ended": ended,
        "gdp_growth": growth,
        "log10_output": math.log10(output[-1]) if finite else None,
        "income_gini": float(np.mean(income_gini)),
        "wealth_gini": float(np.mean(wealth_gini)),
        "welfare": float(np.mean(welfare)),
        "output_path": output,
        "income_gini_path": income_gini,
        "wealth_gini_path": wealth_gini,
        "lorenz": lorenz,
        "fallback": env.stats["fallback"],
        "invalid_action": env.stats["invalid_action"],
    }
    usage = getattr(households, "usage", None)
    if usage is not None:  # an LLM policy's counts (its wall times would break determinism)
        record["usage"] = {name: usage[count] for name, count in RECORDED_USAGE.items()}
    return record


def summarise(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (government, households): the seeds and each metric's mean and standard error
    (the sample standard deviation over seeds / sqrt(seeds); none for one seed)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["government"], record["households"]), []).append(record)
    rows = []
    for (government, households), group in groups.items():
        row: dict[str, Any] = {
            "government": government,
            "households": households,
            "n_households": group[0]["n_households"],
            "year_cap": group[0]["year_cap"],
            "seeds": len(group),
            "ended": sorted({r["ended"] or "survived" for r in group}),
        }
        for metric in METRICS:
            values = np.array([r[metric] for r in group if r[metric] is not None], dtype=float)
            row[metric] = float(values.mean()) if values.size else None
            row[f"{metric}_se"] = (
                float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
            )
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], metric: str, digits: int) -> str:
    mean, error = row[metric], row[f"{metric}_se"]
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if error is None else f" ± {error:.{digits}f}")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The table as Markdown (the README's)."""
    lines = [
        "| government | households | N | years | GDP growth %/yr | log10 output | "
        "income Gini | wealth Gini | welfare | ended |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            row["government"],
            row["households"],
            str(row["n_households"]),
            _cell(row, "years", 0) + f" / {row['year_cap']}",
            _cell(row, "gdp_growth", 1),
            _cell(row, "log10_output", 1),
            _cell(row, "income_gini", 2),
            _cell(row, "wealth_gini", 2),
            _cell(row, "welfare", 3),
            ", ".join(row["ended"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_evaluation(records: Sequence[dict[str, Any]], out: Path) -> None:
    """``trajectories.png`` and ``wealth.png`` (module docstring) into ``out``."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mfllm_env.report import save_png

    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(f"{record['government']} / {record['households']}", []).append(record)

    def mean_path(group: list[dict[str, Any]], key: str) -> np.ndarray:
        length = max(len(r[key]) for r in group)
        padded = np.full((len(group), length), np.nan)
        for i, r in enumerate(group):
            padded[i, : len(r[key])] = r[key]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nanmean(padded, axis=0)

    colours = colormaps["tab20"].colors  # one colour per matchup, up to 20
    figure = Figure(figsize=(17, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for axis in axes:
        axis.set_prop_cycle(color=colours)
    for label, group in groups.items():
        years = np.arange(1, max(len(r["output_path"]) for r in group) + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            axes[0].plot(years, np.log10(mean_path(group, "output_path")), label=label)
        axes[1].plot(years, mean_path(group, "income_gini_path"), label=label)
        axes[2].plot(years, mean_path(group, "wealth_gini_path"), label=label)
    for axis, title in zip(
        axes, ("log10 output per household", "income Gini", "wealth Gini"), strict=True
    ):
        axis.set_title(title)
        axis.set_xlabel("year")
    axes[0].legend(fontsize=7)
    save_png(figure, out / "trajectories.png", dpi=110)

    figure = Figure(figsize=(6, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    axis.set_prop_cycle(color=colours)
    share = np.linspace(0, 1, LORENZ_POINTS)
    for label, group in groups.items():
        curves = [r["lorenz"] for r in group if r["lorenz"] is not None]
        if curves:
            axis.plot(share, np.mean(curves, axis=0), label=label)
    axis.plot(share, share, color="grey", linestyle=":")
    axis.set_title("wealth in the last year (Lorenz curve)")
    axis.set_xlabel("share of households, poorest first")
    axis.set_ylabel("share of wealth")
    axis.legend(fontsize=7)
    save_png(figure, out / "wealth.png", dpi=110)


def evaluate_macro(
    matchups: Sequence[Matchup],
    seeds: Sequence[int],
    out: Path,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Play every matchup with every seed into ``out`` (module docstring); the table's
    rows. Episodes already in ``out/episodes.jsonl`` (a resumed run) are not played
    again."""
    from tqdm.auto import tqdm

    path = out / "episodes.jsonl"
    records = runs.read_records(path) if path.exists() else []
    done = {(r["government"], r["households"], r["seed"]) for r in records}
    todo = [
        (matchup, seed)
        for matchup in matchups
        for seed in seeds
        if (matchup.government, matchup.households, seed) not in done
    ]
    with path.open("a", encoding="utf-8") as handle:
        for matchup, seed in tqdm(todo, desc="macro-eval", disable=not progress):
            record = play_record(matchup, seed)
            runs.append_record(handle, record)
            records.append(record)
    wanted = {(m.government, m.households) for m in matchups}
    records = [r for r in records if (r["government"], r["households"]) in wanted]
    rows = summarise(records)
    runs.write_json(out / "table.json", rows)
    runs.write_atomic(out / "table.md", markdown_table(rows))
    plot_evaluation(records, out)
    return rows


def llm_matchups(
    backend: Any,
    governments: Sequence[str],
    trained: dict[str, Path],
    *,
    households: int,
    years: int,
) -> list[Matchup]:
    """LLM households (the macro family's LLM policy, :func:`agents.policies.llm_policy`,
    text mode, with the LLM mean field :class:`agents.macro_llm.LLMEconomyMeanField`) under
    each of ``governments``: baseline names, or labels of ``trained`` runs (their
    government)."""
    from agents.macro_llm import LLMEconomyMeanField
    from agents.macro_rl import RLGovernment
    from agents.policies import llm_policy

    parameters = EconomyParameters(years=years)
    unknown = [g for g in governments if g not in BASELINE_GOVERNMENTS and g not in trained]
    if unknown:
        raise ValueError(
            f"LLM households' governments must be among {BASELINE_GOVERNMENTS} or the trained "
            f"runs' labels {sorted(trained)}; got {unknown}"
        )
    matchups = []
    for name in governments:
        baseline = name in BASELINE_GOVERNMENTS

        def make_env(name: str = name, baseline: bool = baseline) -> MacroEnv:
            return MACRO.population_env(
                households,
                government=name if baseline else "free_market",
                action_mode="text",
                mean_field=LLMEconomyMeanField(backend),
                parameters=parameters,
            )

        government = None
        simultaneous = False
        if not baseline:
            run = Path(trained[name])
            simultaneous = plays_simultaneously(read_trained_run(run).get("mode"))

            def government(run: Path = run) -> Policy:
                return RLGovernment.load(run / "government.pt")

        matchups.append(
            Matchup(
                name,
                "llm",
                make_env,
                lambda: llm_policy("macro", backend),
                government,
                simultaneous,
            )
        )
    return matchups
