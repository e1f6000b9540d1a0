"""One vector runner: several episodes stepped together, for every population family.

Each round of :func:`run_episodes` makes **one** ``policy.act`` call for the acting agents
of every running episode (their ids prefixed ``"<episode>|"``) and **one**
:func:`update_mean_fields` call for their mean fields, between the two halves of each
env's step (``begin_step`` / ``end_step``), so that an LLM policy and an LLM mean field
batch across episodes. When an episode ends, the next one takes its place.

The same rounds are open one at a time in :func:`step_episodes`, for a caller that acts
itself and reads each round between its halves (the training data's teacher-forced
replay, :func:`training.datasets.replay`, reads the mean-field prompts there): a fixed
batch of episodes, started together and stepped until the last one ends.

An env it runs has ``reset(seed)``, ``agents``, ``begin_step(actions) -> batch``,
``end_step(signal)`` and ``mean_field_model`` (``None`` when its game does not split its
transition: :class:`~mfllm_env.core.env.GameEnv` over any game, and
:class:`~mfllm_env.population_env.PopulationEnv`, qualify).
"""

from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfllm_env.checks import check_actions, check_count, check_methods
from mfllm_env.core.protocols import Policy

StepResult = tuple[
    dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]
]


def update_mean_fields(models: Sequence[Any], batches: Sequence[Any]) -> list[Any]:
    """``[model.update(batch) ...]``, but instances of a class with an ``update_many``
    classmethod are updated together in one call per class (one batched LLM call for all
    episodes). A ``None`` model (an env whose game does not split its transition) answers
    ``None``."""
    if len(models) != len(batches):
        raise ValueError(f"{len(models)} models but {len(batches)} batches")
    results: list[Any] = [None] * len(models)
    batched: dict[type, list[int]] = defaultdict(list)
    for i, (model, batch) in enumerate(zip(models, batches, strict=True)):
        if model is None:
            continue
        if hasattr(type(model), "update_many"):
            batched[type(model)].append(i)
        else:
            results[i] = model.update(batch)
    for cls, indices in batched.items():
        answers = cls.update_many([models[i] for i in indices], [batches[i] for i in indices])
        for i, answer in zip(indices, answers, strict=True):
            results[i] = answer
    return results


def end_round(envs: Sequence[Any], batches: Sequence[Any], given: Mapping[int, Any]) -> list[Any]:
    """The second half of a round: the mean fields of ``envs`` (their models updated with
    ``batches`` in one :func:`update_mean_fields` call), except those of ``given`` (env
    index -> the signal to end its step with instead), and each env's ``end_step``
    result, in the order of ``envs``."""
    stepping = [i for i in range(len(envs)) if i not in given]
    updated = update_mean_fields(
        [envs[i].mean_field_model for i in stepping], [batches[i] for i in stepping]
    )
    signals = {**given, **dict(zip(stepping, updated, strict=True))}
    return [env.end_step(signals[i]) for i, env in enumerate(envs)]


@dataclass
class Round:
    """One round of :func:`step_episodes`, open between the halves of its steps: its
    ``number`` (0 first), the ``indices`` of the episodes stepping (positions in the
    batch), their ``envs``, the acting agents' ``observations`` and ``actions``, and what
    each env's ``begin_step`` returned (``batches``: its mean-field model's input). The
    caller may :meth:`skip` an env's mean-field update."""

    number: int
    indices: list[int]
    envs: list[Any]
    observations: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    batches: list[Any]
    skipped: dict[int, Any] = field(default_factory=dict)

    def skip(self, position: int, signal: Any) -> None:
        """End the step of ``envs[position]`` with ``signal`` instead of its model's
        update (when nothing will read the new mean field: an episode's last step)."""
        self.skipped[position] = signal


def step_episodes(
    episodes: Sequence[tuple[Any, int | None]],
    act: Callable[[Sequence[int], Sequence[dict[str, Any]]], Sequence[Mapping[str, Any]]],
) -> Iterator[Round]:
    """Step the ``(env, seed)`` episodes together, a fixed batch: each is reset with its
    seed (in order), then every round ``act(indices, observations)`` gives the actions
    of the episodes still running (``observations``: their acting agents', in the order
    of ``indices``), each env begins its step, the :class:`Round` is yielded (the caller
    reads it between the halves), and one :func:`update_mean_fields` call for the envs
    not skipped ends the round. Stops when every episode has ended.

    ``ValueError`` when one env is given twice, or when ``act`` answers for other
    agents than the acting ones (missing agents are left to the env's fallback).
    """
    envs = [env for env, _ in episodes]
    if len({id(env) for env in envs}) != len(envs):
        raise ValueError("each episode stepped together needs an env of its own")
    observations = [env.reset(seed=seed)[0] for env, seed in episodes]
    number = 0
    while True:
        indices = [i for i, env in enumerate(envs) if env.agents]
        if not indices:
            return
        running = [envs[i] for i in indices]
        acting = [{a: observations[i][a] for a in envs[i].agents} for i in indices]
        answered = act(indices, acting)
        if len(answered) != len(indices):
            raise ValueError(f"act gave {len(answered)} action sets for {len(indices)} episodes")
        actions = [
            check_actions(given, list(seen)) for given, seen in zip(answered, acting, strict=True)
        ]
        batches = [env.begin_step(a) for env, a in zip(running, actions, strict=True)]
        current = Round(number, indices, running, acting, actions, batches)
        yield current
        results = end_round(running, batches, current.skipped)
        for i, result in zip(indices, results, strict=True):
            observations[i] = result[0]
        number += 1


@dataclass
class RunningEpisode:
    """One episode in :func:`run_episodes`: its number in the input, env, seed, the policy
    acting for it (the shared one, or its own copy), the acting agents' observations, when
    it started (``time.perf_counter``) and what the caller's ``on_step`` counts."""

    index: int
    env: Any
    seed: int | None
    policy: Policy
    observations: dict[str, Any]
    started: float
    usage: Counter[str] = field(default_factory=Counter)


def run_episodes(
    episodes: Iterable[tuple[Any, int | None]],
    policy: Policy,
    *,
    parallel: int = 1,
    policy_per_episode: bool = False,
    references: bool = False,
    check: Callable[[int, Any], None] | None = None,
    on_step: Callable[[RunningEpisode, Sequence[str], StepResult], None] | None = None,
) -> Iterator[RunningEpisode]:
    """Play ``(env, seed)`` episodes, up to ``parallel`` of them stepped together; yield
    each as it ends.

    The policy is reset with an episode's seed when that episode starts. With
    ``policy_per_episode``, each episode acts on a copy of its own (a shallow
    :func:`copy.copy`, reset with that episode's seed: its result then depends only on
    its seed, whatever ``parallel`` is); otherwise one ``act`` call serves the batch of
    all running episodes. With ``references``, ``act`` also receives ``references`` (the
    env's ``reference_texts()``, same keys). ``check(index, env)`` is called before an
    episode starts (to refuse an env of the wrong family); ``on_step(episode, acted,
    result)`` after each of its steps (``acted``: the agents that acted).

    ``TypeError`` for a policy without ``reset``/``act``, ``ValueError`` for ``parallel``
    < 1, for an env that is still playing another episode, or when the policy returns
    actions of agents not acting now (naming the policy).
    """
    check_methods("policy", policy, ("reset", "act"))
    if policy is None:
        raise TypeError("policy must have reset(seed) and act(observations)")
    check_count("parallel", parallel, 1)
    pending = enumerate(episodes)
    running: list[RunningEpisode] = []

    def start_next() -> bool:
        for index, (env, seed) in pending:
            if check is not None:
                check(index, env)
            playing = next((e.index for e in running if e.env is env), None)
            if playing is not None:
                raise ValueError(
                    f"episode {index}: its env is still playing episode {playing}; each "
                    "episode played together needs an env of its own"
                )
            started = time.perf_counter()
            acting = copy.copy(policy) if policy_per_episode else policy
            acting.reset(seed)
            observations, _ = env.reset(seed=seed)
            running.append(RunningEpisode(index, env, seed, acting, observations, started))
            return True
        return False

    while len(running) < parallel and start_next():
        pass
    while running:
        actions = _act(running, policy, policy_per_episode, references)
        acted = [list(episode.env.agents) for episode in running]
        batches = [
            episode.env.begin_step({a: actions.get(f"{episode.index}|{a}") for a in agents})
            for episode, agents in zip(running, acted, strict=True)
        ]
        results = end_round([e.env for e in running], batches, {})
        finished = []
        for episode, agents, result in zip(running, acted, results, strict=True):
            episode.observations = result[0]
            if on_step is not None:
                on_step(episode, agents, result)
            if not episode.env.agents:
                finished.append(episode)
        for episode in finished:
            running.remove(episode)
            yield episode
            start_next()


def _act(
    running: Sequence[RunningEpisode],
    policy: Policy,
    policy_per_episode: bool,
    references: bool,
) -> dict[str, Any]:
    """The actions of every running episode's acting agents, keyed ``"<episode>|agent"``:
    one ``act`` call per episode on its own policy copy, or one for all on ``policy``."""
    groups = [[e] for e in running] if policy_per_episode else [list(running)]
    actions: dict[str, Any] = {}
    for group in groups:
        merged: dict[str, Mapping[str, Any]] = {}
        texts: dict[str, str] = {}
        for episode in group:
            prefix = f"{episode.index}|"
            for agent in episode.env.agents:
                merged[prefix + agent] = episode.observations[agent]
            if references:
                for agent, text in episode.env.reference_texts().items():
                    texts[prefix + agent] = text
        acting = group[0].policy if policy_per_episode else policy
        returned = (
            acting.act(merged, references=texts)  # type: ignore[call-arg]
            if references
            else acting.act(merged)
        )
        try:
            actions.update(check_actions(returned, list(merged)))
        except (TypeError, ValueError) as error:
            raise type(error)(f"policy {type(acting).__name__}.act(): {error}") from None
    return actions
