"""Running policies in a :class:`~mfllm_env.population_env.PopulationEnv` and keeping the results.

A run folder (written safely, see :mod:`mfllm_env.runs`) holds:

- ``config.json``: what was run (written first);
- ``trajectory.jsonl``: one record per environment step (``episode``, its number
  ``index``, the step's labels, shares and mean-field text), flushed as it happens;
- ``episodes.jsonl``: one record per episode (``index`` is its number in the input): its
  seed, warm-up, labels, where its scored real labels came from
  (:func:`real_label_sources`) and metrics, or why it was skipped (no reaction after
  warm-up); written when the episode ends, so a resumed run keeps every finished episode;
- ``timing.jsonl``: the wall time of each episode;
- ``metrics.json``: mean and standard error over episodes, the token totals and the
  totals of :func:`real_label_sources` (written at the end; standard JSON, ``null``
  where a value is undefined, such as the standard error of one episode). It holds no
  wall-clock figure: the same seed gives the same file, to the byte, as do
  ``trajectory.jsonl`` and ``episodes.jsonl``;
- ``timing.json``: wall time, episodes per hour and generated tokens per second of the
  last invocation;
- ``shares.png`` (and ``plots/<episode>.png`` for further episodes, names from
  :func:`mfllm_env.runs.file_name`): real vs simulated label shares over time.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from mfllm_env import runs
from mfllm_env.checks import check_count, check_seed
from mfllm_env.core.runner import RunningEpisode, StepResult, run_episodes
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


def _finish(slot: RunningEpisode) -> dict[str, Any]:
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
    episode (their agent ids prefixed with ``"<episode>|"``; a label-mode policy: one per
    episode, see below) and **one**
    :func:`~mfllm_env.core.runner.update_mean_fields` call for their mean fields, so an LLM
    policy and an LLM mean field batch across episodes. When an episode ends, the next one
    takes its place. Each environment needs its own mean-field model instance.

    The policy is reset with an episode's seed when that episode starts. A label-mode
    policy (cheap, nothing to batch) acts for each episode on a copy of its own (a shallow
    :func:`copy.copy`, reset with that episode's seed), so an episode's result depends only
    on its seed whatever ``parallel`` is; a text-mode policy acts on the batch of all
    running episodes, so with ``parallel`` > 1 its draws depend on the batch too.

    If the policy has a true ``score_references`` attribute, ``act`` also receives
    ``references`` (the real reactions, for likelihood scoring; see
    :meth:`PopulationEnv.reference_texts`).

    Yields an :class:`EpisodeResult` as each episode finishes; its metrics are those of
    :func:`mfllm_env.metrics.episode_metrics` plus ``fallbacks``, ``empty_actions``,
    ``invalid_actions``, ``steps``, ``seconds`` and, when the policy or mean field reports
    them, token counts, backend errors and the NLL of the real reactions. ``on_step``
    receives each step's record (``env.last_record``) as soon as it is made.
    """
    check_play_arguments(policy, parallel)
    bar = tqdm(desc="actions", unit="act", disable=not progress, leave=False)

    def check(index: int, env: object) -> None:
        if not isinstance(env, PopulationEnv):
            raise TypeError(f"episode {index}: expected a PopulationEnv, got {type(env).__name__}")
        if policy.action_mode != env.action_mode:
            raise ValueError(
                f"policy acts in {policy.action_mode!r} mode but the env expects "
                f"{env.action_mode!r}"
            )

    def stepped(episode: RunningEpisode, acted: Sequence[str], result: StepResult) -> None:
        bar.update(len(acted))
        _policy_usage(episode.usage, result[4])
        if on_step is not None and episode.env.last_record is not None:
            on_step(episode.index, episode.env, episode.env.last_record)

    try:
        for episode in run_episodes(
            episodes,
            policy,
            parallel=parallel,
            policy_per_episode=policy.action_mode == "label",
            references=bool(getattr(policy, "score_references", False)),
            check=check,
            on_step=stepped,
        ):
            yield EpisodeResult(episode.index, episode.env, episode.seed, _finish(episode))
    finally:
        bar.close()


def check_play_arguments(policy: object, parallel: object) -> None:
    """``TypeError`` for a ``policy`` without the :class:`Policy` protocol's members,
    ``ValueError`` for a ``parallel`` that is not a count >= 1."""
    if not isinstance(policy, Policy):
        raise TypeError(
            "policy must have action_mode, reset() and act() (the Policy protocol), got "
            f"{type(policy).__name__}"
        )
    check_count("parallel", parallel, 1)


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


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a run seeded ``seed``: distinct for every pair,
    and the same whatever other episodes a run plays (so a resumed run plays an episode
    as an uninterrupted one would)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def simulate(
    scenarios: Iterable[Scenario],
    make_env: Callable[[Scenario], PopulationEnv],
    policy: Policy,
    run_dir: str | Path,
    *,
    seed: int = 0,
    parallel: int = 1,
    max_plots: int = 5,
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``policy`` on every scenario and write the run folder (see the module
    docstring; ``config.json`` is the caller's, see :class:`mfllm_env.runs.RunFolder`).

    Episode ``e`` is seeded with :func:`episode_seed` ``(seed, e)``; ``parallel`` episodes
    are stepped together (:func:`play_episodes`). With ``resume``, the episodes that
    ``episodes.jsonl`` holds are kept, the steps of any other (an episode cut short) are
    dropped from ``trajectory.jsonl``, and the rest is played; without it the records
    files must not exist yet. At the end the records files are put in episode order, so
    an interrupted and resumed run writes the files of an uninterrupted one (to the byte
    where each episode depends only on its seed: a label-mode policy, or ``parallel=1``).
    Returns the content of ``metrics.json``.
    """
    if seed is None:
        raise ValueError("seed must be an integer >= 0, got None")
    check_seed(seed)
    check_play_arguments(policy, parallel)
    check_count("max_plots", max_plots, 0)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: run_dir / f"{name}.jsonl" for name in ("episodes", "trajectory", "timing")}
    done: dict[int, dict[str, Any]] = {}
    if resume:
        done = _finished_episodes(paths, seed)
    else:
        held = [path.name for path in paths.values() if path.exists() and path.stat().st_size]
        if held:
            raise ValueError(f"{run_dir} already holds {', '.join(held)}: resume it, or start anew")
    started = time.perf_counter()
    played: list[dict[str, Any]] = []
    indices: list[int] = []  # episode number of each episode play_episodes is given
    with (
        open(paths["trajectory"], "a", encoding="utf-8") as trajectory,
        open(paths["episodes"], "a", encoding="utf-8") as episodes,
        open(paths["timing"], "a", encoding="utf-8") as timing,
    ):

        def playable() -> Iterator[tuple[PopulationEnv, int]]:
            count = 0
            for e, scenario in enumerate(scenarios):
                count += 1
                env = make_env(scenario)
                if e in done:
                    _check_kept(paths["episodes"], done[e], env)
                    continue
                if not isinstance(env, PopulationEnv):
                    raise TypeError(
                        f"make_env must return a PopulationEnv, got {type(env).__name__}"
                    )
                if env.warmup < len(env.real_label_ids):
                    indices.append(e)
                    yield env, episode_seed(seed, e)
                    continue
                reason = (
                    f"{len(env.real_label_ids)} reactions, all inside the warm-up of "
                    f"{env.warmup}: nothing to roll out"
                )
                record = {"episode": scenario.scenario_id, "index": e, "skipped": reason}
                runs.append_record(episodes, record)
            beyond = sorted(e for e in done if e >= count)
            if beyond:
                raise ValueError(
                    f"{paths['episodes']} records episode {beyond[0]} "
                    f"({done[beyond[0]]['episode']!r}), but there are {count} scenarios: "
                    "it holds lines of another run"
                )

        def write_step(position: int, env: PopulationEnv, record: dict[str, Any]) -> None:
            step = {"episode": env.scenario.scenario_id, "index": indices[position], **record}
            runs.append_record(trajectory, step)

        bar = tqdm(desc="episodes", unit="ep", disable=not progress, initial=len(done))
        for position, env, played_seed, metrics in play_episodes(
            playable(), policy, parallel=parallel, on_step=write_step, progress=progress
        ):
            bar.update(1)
            e, episode = indices[position], env.scenario.scenario_id
            # Timing first: the episode record is what marks the episode done.
            seconds = metrics.pop("seconds")
            runs.append_record(timing, {"episode": episode, "index": e, "seconds": seconds})
            record = {
                "episode": episode,
                "index": e,
                "seed": played_seed,
                "warmup": env.warmup,
                "agents_per_step": env.agents_per_step,
                "dimension": env.scheme.dimension,
                "labels": list(env.scheme.labels),
                **real_label_sources(env),
                "metrics": metrics,
            }
            runs.append_record(episodes, json_ready(record))
            played.append(metrics)
        bar.close()
    wall = time.perf_counter() - started
    records = _in_episode_order(paths["episodes"], EPISODE_KEYS)
    _in_episode_order(paths["trajectory"], ("index", "step"))
    _in_episode_order(paths["timing"], ("index",))
    scored = [r for r in records if "metrics" in r]
    skipped = [r["episode"] for r in records if "skipped" in r]
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} episode(s) with no reaction after the warm-up "
            f"(first: {skipped[0]}); lower the warm-up to include them",
            EpisodeSkippedWarning,
            stacklevel=2,
        )
    if not scored:
        raise ValueError(
            "no episode to score: "
            + (f"all {len(skipped)} are shorter than the warm-up" if skipped else "no scenarios")
        )
    metrics = [_with_nan(r["metrics"]) for r in scored]
    summary: dict[str, Any] = {
        "episodes": len(scored),
        "skipped": len(skipped),
        "metrics": aggregate(metrics),
    }
    summary.update(label_source_totals(scored))
    tokens = token_totals(metrics)
    if tokens:
        summary["tokens"] = tokens
    runs.write_json(run_dir / "timing.json", json_ready(throughput(played, wall)))
    _plot_episodes(run_dir, scored[:max_plots])
    runs.write_atomic(
        run_dir / "metrics.json", json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n"
    )
    return summary


EPISODE_KEYS = ("episode", "index")


def _finished_episodes(paths: Mapping[str, Path], seed: int) -> dict[int, dict[str, Any]]:
    """The episode records a resumed run keeps, by episode number: those played with
    this run's seeds whose steps ``trajectory.jsonl`` holds in full. An episode whose
    steps are missing (the file cut short or deleted) is played again, with a note. The
    records, steps and timing of every other episode are dropped from the files."""
    done: dict[int, dict[str, Any]] = {}
    what = "a simulate episode"
    for record in runs.read_records(paths["episodes"], EPISODE_KEYS, what, unique=("index",)):
        index = record["index"]
        if "seed" in record and record["seed"] != episode_seed(seed, index):
            raise ValueError(
                f"{paths['episodes']} records episode {index} ({record['episode']!r}) played "
                f"with seed {record['seed']}, not this run's {episode_seed(seed, index)}: "
                "it holds lines of another run"
            )
        done[index] = record
    steps = runs.read_records(
        paths["trajectory"], ("index", "step"), "a simulate step", unique=("index", "step")
    )
    held = Counter(step["index"] for step in steps)
    incomplete = [e for e, r in done.items() if "metrics" in r and held[e] != r["metrics"]["steps"]]
    if incomplete:
        print(
            f"note: {paths['trajectory']} lacks steps of {len(incomplete)} finished "
            f"episode(s) (first: {done[incomplete[0]]['episode']!r}); they are played again",
            file=sys.stderr,
        )
        for e in incomplete:
            del done[e]
        runs.write_atomic(paths["episodes"], runs.jsonl_text(list(done.values())))
    kept_steps = [step for step in steps if step["index"] in done]
    runs.write_atomic(paths["trajectory"], runs.jsonl_text(kept_steps))
    timing = [t for t in runs.read_records(paths["timing"], ("index",)) if t["index"] in done]
    runs.write_atomic(paths["timing"], runs.jsonl_text(timing))
    return done


def _check_kept(path: Path, record: Mapping[str, Any], env: PopulationEnv) -> None:
    """Refuse a kept episode record of ``path`` that is not of the scenario of ``env``, or
    was played with another warm-up or step size."""
    if record["episode"] != env.scenario.scenario_id:
        raise ValueError(
            f"{path} records episode {record['index']} as {record['episode']!r}, but this "
            f"run's episode {record['index']} is {env.scenario.scenario_id!r}: it holds lines "
            "of another run"
        )
    for name in ("warmup", "agents_per_step"):
        if name in record and record[name] != getattr(env, name):
            raise ValueError(
                f"{path} records episode {record['index']} ({record['episode']!r}) with "
                f"{name} {record[name]!r}, this run {getattr(env, name)!r}: it holds lines "
                "of another run"
            )


def _in_episode_order(path: Path, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The records of ``path``, rewritten in episode order where they are not (stable:
    the steps of an episode keep their order)."""
    records = runs.read_records(path, keys)
    ordered = sorted(records, key=lambda r: r["index"])
    if ordered != records:
        runs.write_atomic(path, runs.jsonl_text(ordered))
    return ordered


def _with_nan(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics read back from JSON, ``None`` (an undefined value) as ``nan`` again."""
    return {k: math.nan if v is None else v for k, v in metrics.items()}


def real_label_sources(env: PopulationEnv) -> dict[str, int]:
    """Where the real labels the finished episode of ``env`` is scored against came from:
    ``scored_real_reactions`` (the reactions after warm-up) and ``real_labels_from_labeller``,
    how many of them have no human label and were labelled by the env's labeller (their
    score compares the agents with the labeller, not with people)."""
    scored = env.real_label_from_human[env.warmup :]
    return {
        "scored_real_reactions": int(scored.size),
        "real_labels_from_labeller": int(np.count_nonzero(~scored)),
    }


LABEL_SOURCE_KEYS = ("scored_real_reactions", "real_labels_from_labeller")


def label_source_totals(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The :func:`real_label_sources` counts summed over episode ``records`` (each episode
    once), and ``episodes_without_label_sources``: records that lack them (written before
    records held them), when there are any."""
    totals = dict.fromkeys(LABEL_SOURCE_KEYS, 0)
    unrecorded = 0
    for record in records:
        if all(key in record for key in LABEL_SOURCE_KEYS):
            for key in LABEL_SOURCE_KEYS:
                totals[key] += record[key]
        else:
            unrecorded += 1
    if unrecorded:
        totals["episodes_without_label_sources"] = unrecorded
    return totals


def label_source_note(totals: Mapping[str, int]) -> str | None:
    """A sentence saying how many scored real reactions of :func:`label_source_totals`
    ``totals`` are scored against the labeller's labels (``None`` when none are and every
    episode recorded it)."""
    from_labeller, scored = totals["real_labels_from_labeller"], totals["scored_real_reactions"]
    unrecorded = totals.get("episodes_without_label_sources", 0)
    if not from_labeller and not unrecorded:
        return None
    note = (
        f"{from_labeller} of {scored} scored real reactions have no human label; "
        "they are scored against the labeller's labels"
    )
    if unrecorded:
        note += f" ({unrecorded} episodes, recorded by an earlier version, not counted)"
    return note


TOKEN_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "mean_field_prompt_tokens",
    "mean_field_completion_tokens",
)


def token_totals(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Tokens over all episodes, for the keys of :data:`TOKEN_KEYS` some episode reports."""
    return {
        key: float(sum(r.get(key, 0) for r in records))
        for key in TOKEN_KEYS
        if any(key in r for r in records)
    }


def throughput(records: Sequence[Mapping[str, Any]], wall_seconds: float) -> dict[str, float]:
    """Wall time of the episodes ``records`` played in it, episodes per hour and generated
    tokens per second (when tokens are reported): ``timing.json``."""
    totals = {
        "wall_seconds": wall_seconds,
        "episodes_played": float(len(records)),
        "episodes_per_hour": 3600.0 * len(records) / wall_seconds if wall_seconds else math.nan,
    }
    tokens = token_totals(records)
    if "completion_tokens" in tokens and wall_seconds:
        generated = tokens["completion_tokens"] + tokens.get("mean_field_completion_tokens", 0)
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


def _plot_episodes(run_dir: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """``shares.png`` for the first of the episode ``records``, ``plots/<episode>.png``
    for the others, from their steps in ``trajectory.jsonl``."""
    wanted = {r["index"] for r in records}
    steps: dict[int, list[dict[str, Any]]] = {index: [] for index in wanted}
    for step in runs.read_records(run_dir / "trajectory.jsonl", ("index", "step")):
        if step["index"] in wanted:
            steps[step["index"]].append(step)
    for number, record in enumerate(records):
        name = "shares.png" if number == 0 else f"plots/{runs.file_name(record['episode'])}.png"
        plot_episode(record, steps[record["index"]], run_dir / name)


def plot_episode(record: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Real vs simulated cumulative label shares of an episode (its ``episodes.jsonl``
    record and its ``trajectory.jsonl`` steps), against the number of reactions so far,
    with the end of warm-up marked."""
    real_ids = np.concatenate([s["real_labels"] for s in steps]).astype(np.int64)
    sim_ids = np.concatenate([s["sim_labels"] for s in steps]).astype(np.int64)
    warmup = record["warmup"]
    world_ids = np.concatenate([real_ids[:warmup], sim_ids[warmup:]])
    num_labels, step = len(record["labels"]), record["agents_per_step"]
    real = share_trajectory(real_ids, num_labels, step_size=step)
    world = share_trajectory(world_ids, num_labels, step_size=step)
    reactions = np.minimum(np.arange(1, len(real) + 1) * step, len(real_ids))
    return plot_share_trajectories(
        real,
        world,
        record["labels"],
        path,
        title=f"{record['episode']}: real vs simulated {record['dimension']} shares",
        warmup_step=min(warmup, int(reactions[-1])) if warmup else None,
        x_values=reactions,
        x_label="reactions",
    )
