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
import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from mfllm_env.mean_field import update_mean_fields
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


class EpisodeResult(NamedTuple):
    """A finished episode: its number in the input, its env (after the episode), the seed
    it was played with and its metrics."""

    index: int
    env: PopulationEnv
    seed: int | None
    metrics: dict[str, Any]


@dataclass
class _Slot:
    """One episode in progress inside :func:`play_episodes`."""

    index: int
    env: PopulationEnv
    seed: int | None
    observations: dict[str, dict[str, Any]]
    started: float
    usage: Counter[str] = field(default_factory=Counter)


def _policy_usage(usage: Counter[str], infos: Mapping[str, Mapping[str, Any]]) -> None:
    """Add the per-agent figures an LLM policy reported (``infos[agent]["policy"]``)."""
    for info in infos.values():
        reported = info.get("policy")
        if not reported:
            continue
        usage["prompt_tokens"] += reported.get("prompt_tokens", 0)
        usage["completion_tokens"] += reported.get("completion_tokens", 0)
        usage["backend_errors"] += "error" in reported
        if "nll" in reported:
            usage["nll"] += reported["nll"]
            usage["nll_tokens"] += reported["nll_tokens"]
            usage["nll_reactions"] += 1


def _finish(slot: _Slot) -> dict[str, Any]:
    env = slot.env
    metrics: dict[str, Any] = episode_metrics(
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
    )
    usage = slot.usage
    if usage:
        metrics.update(
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            backend_errors=usage["backend_errors"],
        )
        if usage["nll_reactions"]:
            metrics["nll_per_token"] = usage["nll"] / usage["nll_tokens"]
            metrics["nll_per_reaction"] = usage["nll"] / usage["nll_reactions"]
    mean_field_usage = getattr(env.mean_field_model, "usage", None)
    if mean_field_usage:
        for key in ("calls", "prompt_tokens", "completion_tokens", "failures"):
            metrics[f"mean_field_{key}"] = mean_field_usage.get(key, 0)
    metrics["seconds"] = time.perf_counter() - slot.started
    return metrics


def play_episodes(
    episodes: Iterable[tuple[PopulationEnv, int | None]],
    policy: Policy,
    *,
    parallel: int = 1,
    on_step: Callable[[int, PopulationEnv, dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> Iterator[EpisodeResult]:
    """Play ``(env, seed)`` episodes, up to ``parallel`` of them stepped together.

    Each round makes **one** ``policy.act`` call for the active agents of every running
    episode (their agent ids prefixed with ``"<episode>|"``) and **one**
    :func:`~mfllm_env.mean_field.update_mean_fields` call for their mean fields, so an LLM
    policy and an LLM mean field batch across episodes. When an episode ends, the next one
    takes its place. Each environment needs its own mean-field model instance.

    The policy is reset with an episode's seed when that episode starts. With
    ``parallel=1`` an episode's result depends only on its seed; with more, on the seeds
    and ``parallel`` (a sampler's draws depend on the batch it is part of).

    If the policy has a true ``score_references`` attribute, ``act`` also receives
    ``references`` (the real reactions, for likelihood scoring; see
    :meth:`PopulationEnv.reference_texts`).

    Yields an :class:`EpisodeResult` as each episode finishes; its metrics are those of
    :func:`mfllm_env.metrics.episode_metrics` plus ``fallbacks``, ``empty_actions``,
    ``invalid_actions``, ``steps``, ``seconds`` and, when the policy or mean field reports
    them, token counts, backend errors and the NLL of the real reactions. ``on_step``
    receives each step's record (``env.last_record``) as soon as it is made.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    pending = enumerate(episodes)
    slots: list[_Slot] = []
    wants_references = bool(getattr(policy, "score_references", False))
    bar = tqdm(desc="actions", unit="act", disable=not progress, leave=False)

    def start_next() -> bool:
        for index, (env, seed) in pending:
            if policy.action_mode != env.action_mode:
                raise ValueError(
                    f"policy acts in {policy.action_mode!r} mode but the env expects "
                    f"{env.action_mode!r}"
                )
            started = time.perf_counter()
            policy.reset(seed)
            observations, _ = env.reset(seed=seed)
            slots.append(_Slot(index, env, seed, observations, started))
            return True
        return False

    while len(slots) < parallel and start_next():
        pass
    try:
        while slots:
            merged: dict[str, Mapping[str, Any]] = {}
            references: dict[str, str] = {}
            for slot in slots:
                prefix = f"{slot.index}|"
                for agent in slot.env.agents:
                    merged[prefix + agent] = slot.observations[agent]
                if wants_references:
                    for agent, text in slot.env.reference_texts().items():
                        references[prefix + agent] = text
            if wants_references:
                actions = policy.act(merged, references=references)  # type: ignore[call-arg]
            else:
                actions = policy.act(merged)
            updates = []
            for slot in slots:
                prefix = f"{slot.index}|"
                own = {agent: actions.get(prefix + agent) for agent in slot.env.agents}
                updates.append(slot.env.begin_step(own))
            fields = update_mean_fields([slot.env.mean_field_model for slot in slots], updates)
            finished = []
            for slot, mean_field in zip(slots, fields, strict=True):
                bar.update(len(slot.env.agents))
                slot.observations, _, _, _, infos = slot.env.end_step(mean_field)
                _policy_usage(slot.usage, infos)
                if on_step is not None and slot.env.last_record is not None:
                    on_step(slot.index, slot.env, slot.env.last_record)
                if not slot.env.agents:
                    finished.append(slot)
            for slot in finished:
                slots.remove(slot)
                yield EpisodeResult(slot.index, slot.env, slot.seed, _finish(slot))
                start_next()
    finally:
        bar.close()


def run_episode(
    env: PopulationEnv,
    policy: Policy,
    *,
    seed: int | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Play one episode; returns its metrics (see :func:`play_episodes`). The episode must
    have at least one reaction after the warm-up.

    ``on_step`` receives each step's record (``env.last_record``) as soon as it is made.
    """
    callback = None if on_step is None else (lambda _i, _env, record: on_step(record))
    (result,) = play_episodes([(env, seed)], policy, on_step=callback, progress=progress)
    return result.metrics


def file_slug(text: str) -> str:
    """``text`` made safe as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "episode"


def simulate(
    scenarios: Iterable[Scenario],
    make_env: Callable[[Scenario], PopulationEnv],
    policy: Policy,
    run_dir: str | Path,
    *,
    seed: int = 0,
    parallel: int = 1,
    config: Mapping[str, Any] | None = None,
    max_plots: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``policy`` on every scenario and write the run folder (see the module docstring).

    Episode ``e`` is seeded with ``seed + e``; ``parallel`` episodes are stepped together
    (:func:`play_episodes`). Returns the content of ``metrics.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dict(config or {}), indent=2, default=str))
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    started = time.perf_counter()
    with (
        open(run_dir / "trajectory.jsonl", "w", encoding="utf-8") as trajectory,
        open(run_dir / "episodes.jsonl", "w", encoding="utf-8") as episodes,
    ):

        def playable() -> Iterator[tuple[PopulationEnv, int]]:
            for e, scenario in enumerate(scenarios):
                env = make_env(scenario)
                if env.warmup < len(env.real_label_ids):
                    yield env, seed + e
                    continue
                reason = (
                    f"{len(env.real_label_ids)} reactions, all inside the warm-up of "
                    f"{env.warmup}: nothing to roll out"
                )
                skipped.append(scenario.scenario_id)
                episodes.write(
                    json.dumps({"episode": scenario.scenario_id, "skipped": reason}) + "\n"
                )
                episodes.flush()

        def write_step(_index: int, env: PopulationEnv, record: dict[str, Any]) -> None:
            trajectory.write(
                json.dumps({"episode": env.scenario.scenario_id, **record}, ensure_ascii=False)
                + "\n"
            )
            trajectory.flush()

        bar = tqdm(desc="episodes", unit="ep", disable=not progress)
        for _, env, episode_seed, metrics in play_episodes(
            playable(), policy, parallel=parallel, on_step=write_step, progress=progress
        ):
            bar.update(1)
            seconds = metrics.pop("seconds")
            record = {
                "episode": env.scenario.scenario_id,
                "seed": episode_seed,
                "seconds": seconds,
                "metrics": metrics,
            }
            episodes.write(json.dumps(json_ready(record), ensure_ascii=False) + "\n")
            episodes.flush()
            records.append(metrics)
            if len(records) <= max_plots:
                path = (
                    run_dir / "shares.png"
                    if len(records) == 1
                    else run_dir / "plots" / f"{file_slug(env.scenario.scenario_id)}.png"
                )
                path.parent.mkdir(exist_ok=True)
                plot_episode(env, path)
        bar.close()
    wall = time.perf_counter() - started
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
    summary = {
        "episodes": len(records),
        "skipped": len(skipped),
        "metrics": aggregate(records),
        "throughput": throughput(records, wall),
    }
    (run_dir / "metrics.json").write_text(
        json.dumps(json_ready(summary), indent=2, allow_nan=False)
    )
    return summary


def throughput(records: Sequence[Mapping[str, Any]], wall_seconds: float) -> dict[str, float]:
    """Run totals: wall time, actions and tokens per second (tokens only when reported)."""
    totals = {
        "wall_seconds": wall_seconds,
        "episodes_per_hour": 3600.0 * len(records) / wall_seconds if wall_seconds else math.nan,
    }
    for key in (
        "prompt_tokens",
        "completion_tokens",
        "mean_field_prompt_tokens",
        "mean_field_completion_tokens",
    ):
        if any(key in r for r in records):
            totals[key] = float(sum(r.get(key, 0) for r in records))
    if "completion_tokens" in totals and wall_seconds:
        generated = totals["completion_tokens"] + totals.get("mean_field_completion_tokens", 0)
        totals["generated_tokens_per_second"] = generated / wall_seconds
    return totals


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (standard JSON has neither)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
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
