"""Running policies in a :class:`~mfllm_env.population_env.PopulationEnv` and keeping the results.

A run folder holds:

- ``config.json``: what was run (written first);
- ``trajectory.jsonl``: one record per environment step, flushed as it happens, so an
  interrupted run keeps every finished step;
- ``episodes.jsonl``: one record per finished episode with its metrics and wall time (an
  episode with no reaction after warm-up is recorded as skipped, with the reason);
- ``metrics.json``: mean and standard error over episodes (written at the end; standard
  JSON, ``null`` where a value is undefined, such as the standard error of one episode);
- ``shares.png`` (and ``plots/<episode>.png`` for further episodes): real vs simulated
  label shares over time.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from mfllm_env.metrics import aggregate, episode_metrics, share_trajectory
from mfllm_env.population_env import PopulationEnv
from mfllm_env.report import plot_share_trajectories
from mfllm_env.scenario import Scenario


class EpisodeSkippedWarning(UserWarning):
    """Some episodes had no reaction after the warm-up and were not scored."""


@runtime_checkable
class Policy(Protocol):
    """Acts for every active agent of a step.

    ``action_mode`` is ``"text"`` (returns strings) or ``"label"`` (returns label ids).
    ``reset(seed)`` is called before each episode; the same seed must give the same
    actions for the same observations.
    """

    action_mode: str

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]: ...


def run_episode(
    env: PopulationEnv,
    policy: Policy,
    *,
    seed: int | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Play one episode; returns its metrics (see :func:`mfllm_env.metrics.episode_metrics`)
    plus ``fallbacks``, ``empty_actions``, ``invalid_actions``, ``steps`` and ``seconds``.
    The episode must have at least one reaction after the warm-up.

    ``on_step`` receives each step's record (``env.last_record``) as soon as it is made.
    """
    if policy.action_mode != env.action_mode:
        raise ValueError(
            f"policy acts in {policy.action_mode!r} mode but the env expects {env.action_mode!r}"
        )
    started = time.perf_counter()
    policy.reset(seed)
    observations, _ = env.reset(seed=seed)
    bar = tqdm(
        total=env.num_steps, desc=env.scenario.scenario_id, disable=not progress, leave=False
    )
    while env.agents:
        active = {agent: observations[agent] for agent in env.agents}
        observations, *_ = env.step(policy.act(active))
        if on_step is not None and env.last_record is not None:
            on_step(env.last_record)
        bar.update(1)
    bar.close()
    metrics = episode_metrics(
        env.real_label_ids,
        env.sim_label_ids,
        env.scheme.size,
        step_size=env.agents_per_step,
        warmup=env.warmup,
        ordered=env.scheme.ordered,
    )
    metrics.update(
        fallbacks=env.stats["fallback"],
        empty_actions=env.stats["empty_action"],
        invalid_actions=env.stats["invalid_action"],
        steps=env.num_steps,
        seconds=time.perf_counter() - started,
    )
    return metrics


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "episode"


def simulate(
    scenarios: Iterable[Scenario],
    make_env: Callable[[Scenario], PopulationEnv],
    policy: Policy,
    run_dir: str | Path,
    *,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    max_plots: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``policy`` on every scenario and write the run folder (see the module docstring).

    Episode ``e`` is seeded with ``seed + e``. Returns the content of ``metrics.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dict(config or {}), indent=2, default=str))
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    with (
        open(run_dir / "trajectory.jsonl", "w", encoding="utf-8") as trajectory,
        open(run_dir / "episodes.jsonl", "w", encoding="utf-8") as episodes,
    ):
        for e, scenario in enumerate(
            tqdm(scenarios, desc="episodes", disable=not progress, unit="ep")
        ):
            env = make_env(scenario)
            if env.warmup >= len(env.real_label_ids):
                reason = (
                    f"{len(env.real_label_ids)} reactions, all inside the warm-up of "
                    f"{env.warmup}: nothing to roll out"
                )
                skipped.append(scenario.scenario_id)
                episodes.write(
                    json.dumps({"episode": scenario.scenario_id, "skipped": reason}) + "\n"
                )
                episodes.flush()
                continue

            def write_step(record: dict[str, Any], scenario_id: str = scenario.scenario_id) -> None:
                trajectory.write(
                    json.dumps({"episode": scenario_id, **record}, ensure_ascii=False) + "\n"
                )
                trajectory.flush()

            metrics = run_episode(env, policy, seed=seed + e, on_step=write_step, progress=progress)
            seconds = metrics.pop("seconds")
            record = {
                "episode": scenario.scenario_id,
                "seed": seed + e,
                "seconds": seconds,
                "metrics": metrics,
            }
            episodes.write(json.dumps(record, ensure_ascii=False) + "\n")
            episodes.flush()
            records.append(metrics)
            if e < max_plots:
                path = (
                    run_dir / "shares.png"
                    if e == 0
                    else run_dir / "plots" / f"{_slug(scenario.scenario_id)}.png"
                )
                path.parent.mkdir(exist_ok=True)
                plot_episode(env, path)
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} episode(s) with no reaction after the warm-up "
            f"(first: {skipped[0]}); lower the warm-up to include them",
            EpisodeSkippedWarning,
            stacklevel=2,
        )
    if not records:
        raise ValueError(
            "no episode to score: "
            + (f"all {len(skipped)} are shorter than the warm-up" if skipped else "no scenarios")
        )
    summary = {"episodes": len(records), "skipped": len(skipped), "metrics": aggregate(records)}
    (run_dir / "metrics.json").write_text(
        json.dumps(_json_ready(summary), indent=2, allow_nan=False)
    )
    return summary


def _json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (standard JSON has neither)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def plot_episode(env: PopulationEnv, path: Path) -> Path:
    """Real vs simulated cumulative label shares of the episode ``env`` just played, against
    the number of reactions so far, with the end of warm-up marked."""
    step = env.agents_per_step
    real = share_trajectory(env.real_label_ids, env.scheme.size, step_size=step)
    world = share_trajectory(env.world_label_ids, env.scheme.size, step_size=step)
    reactions = np.minimum(np.arange(1, len(real) + 1) * step, len(env.real_label_ids))
    return plot_share_trajectories(
        real,
        world,
        env.scheme.labels,
        path,
        title=f"{env.scenario.scenario_id}: real vs simulated {env.scheme.dimension} shares",
        warmup_step=min(env.warmup, int(reactions[-1])) if env.warmup else None,
        x_values=reactions,
        x_label="reactions",
    )
