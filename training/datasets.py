"""Training data from scenarios, built with the simulation's own prompt builder.

Every prompt here comes from :func:`agents.policies.policy_prompt` or
:meth:`agents.mean_field.LLMMeanField.next_prompt` applied to observations of a real
:class:`~mfllm_env.population_env.PopulationEnv` run, so a model is trained on exactly the
prompts the simulation will send it.

**Replay.** :func:`replay` steps each scenario's environment with the *real* reactions as
the actions (teacher forcing, ``warmup=0`` so that actions drive the world): the agents'
states and the mean field evolve as they would under a perfect policy. The environments
step on the core's vector runner (:func:`mfllm_env.core.runner.step_episodes`, fixed
batches), and the mean-field model's prompt is read between each round's two halves. With
``sampling_prob > 0`` a step's actions come instead, with that probability, from a policy's
own generations (scheduled sampling), so the mean field seen in training carries the
model's own errors as it will in a free rollout.

**Examples.**

- :func:`policy_examples`: (event, agent state, context) -> the real reaction, for any
  policy variant (``context`` as in :data:`agents.prompts.CONTEXT_KINDS`);
- :func:`mean_field_examples`: the mean-field model's prompt at step t (its summary so far
  and step t's (state, action) pairs: the history X) together with the states and real
  reactions of step t+1 (the Y whose likelihood IB-Tune's relevance term measures).

**Splits.** :func:`split_by_event` keeps all of an event's scenarios on one side;
:func:`check_disjoint` refuses a train and dev set that share a reaction.
"""

from __future__ import annotations

import itertools
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from agents.backends.base import Backend, Prompt
from agents.mean_field import LLMMeanField
from agents.policies import LLMPolicy, policy_prompt, reference_text
from agents.prompts import ContextKind
from mfllm_env.checks import check_seed
from mfllm_env.core.runner import step_episodes
from mfllm_env.labels import ActionLabeler
from mfllm_env.mean_field import (
    HistogramMeanField,
    MeanFieldModel,
    PopularReactions,
    RecentReactions,
)
from mfllm_env.registry import family
from mfllm_env.scenario import Scenario


def event_key(scenario: Scenario) -> str:
    """What groups scenarios into one event: the ``event`` metadata where a loader sets it
    (RumourEval threads of one event), else the scenario id."""
    return str(scenario.metadata.get("event") or scenario.scenario_id)


def split_by_event(
    scenarios: Sequence[Scenario], dev_fraction: float = 0.2, *, seed: int = 0
) -> tuple[list[Scenario], list[Scenario]]:
    """Train and dev scenarios, with every event entirely on one side.

    Events are shuffled with ``seed`` and about ``dev_fraction`` of them (at least one, and
    never all) go to dev. Raises ``ValueError`` when there are fewer than two events.
    """
    fraction = isinstance(dev_fraction, int | float) and not isinstance(dev_fraction, bool)
    if not (fraction and 0 < dev_fraction < 1):
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction!r}")
    check_seed(seed)
    events = sorted({event_key(s) for s in scenarios})
    if len(events) < 2:
        raise ValueError(f"a train/dev split by event needs two events or more, got {events}")
    order = np.random.default_rng(seed).permutation(len(events))
    n_dev = min(max(1, round(dev_fraction * len(events))), len(events) - 1)
    dev_events = {events[i] for i in order[:n_dev]}
    train = [s for s in scenarios if event_key(s) not in dev_events]
    dev = [s for s in scenarios if event_key(s) in dev_events]
    return train, dev


class SharedEventWarning(UserWarning):
    """Train and dev hold different threads of one event (RumourEval's official split
    does): no reaction leaks, but the topic does."""


def check_disjoint(train: Sequence[Scenario], dev: Sequence[Scenario]) -> None:
    """Raise ``ValueError`` if a reaction appears in both sets; warn
    (:class:`SharedEventWarning`) if an event does, naming it."""
    seen = {r.reaction_id for s in train for r in s.reactions}
    shared = [
        (s.scenario_id, r.reaction_id) for s in dev for r in s.reactions if r.reaction_id in seen
    ]
    if shared:
        scenario_id, reaction_id = shared[0]
        raise ValueError(
            f"train and dev share {len(shared)} reaction(s), e.g. {reaction_id!r} of "
            f"{scenario_id!r}: split by event (split_by_event) so no event leaks across"
        )
    events = sorted({event_key(s) for s in train} & {event_key(s) for s in dev})
    if events:
        warnings.warn(
            f"train and dev share no reaction but {len(events)} event(s): {', '.join(events)}",
            SharedEventWarning,
            stacklevel=2,
        )


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One step of a replayed scenario.

    ``observations``: the acting agents' observations (what a policy is prompted with);
    ``real_texts``: their real reactions; ``mean_field_prompt``: what the mean-field model
    was asked after this step (``None`` for a model without ``next_prompt``, or when the
    step was the last); ``sampled``: the step's actions were the policy's (scheduled
    sampling), not the real reactions.
    """

    scenario: Scenario
    step: int
    observations: dict[str, dict[str, Any]]
    real_texts: dict[str, str]
    mean_field_prompt: Prompt | None
    sampled: bool


def replay(
    scenarios: Iterable[Scenario],
    mean_field_factory: Callable[[], MeanFieldModel],
    *,
    agents_per_step: int = 16,
    max_reactions: int | None = None,
    labeler: ActionLabeler | None = None,
    policy: LLMPolicy | None = None,
    sampling_prob: float = 0.0,
    parallel: int = 8,
    seed: int = 0,
) -> Iterator[ReplayStep]:
    """Replay scenarios step by step (see the module docstring), ``parallel`` at a time so
    that LLM mean fields and the sampling policy make one batched call per round.

    Deterministic for a given ``seed``: which steps are sampled is drawn per scenario from
    ``seed`` and the scenario id.
    """
    if not 0 <= sampling_prob <= 1:
        raise ValueError(f"sampling_prob must be in [0, 1], got {sampling_prob}")
    if sampling_prob > 0 and policy is None:
        raise ValueError("scheduled sampling (sampling_prob > 0) needs a policy")
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    if policy is not None:
        policy.reset(seed)
    pending = iter(scenarios)
    while True:
        batch = [s for _, s in zip(range(parallel), pending, strict=False)]
        if not batch:
            return
        yield from _replay_batch(
            batch,
            mean_field_factory,
            agents_per_step=agents_per_step,
            max_reactions=max_reactions,
            labeler=labeler,
            policy=policy,
            sampling_prob=sampling_prob,
            seed=seed,
        )


def _replay_batch(
    scenarios: list[Scenario],
    mean_field_factory: Callable[[], MeanFieldModel],
    *,
    agents_per_step: int,
    max_reactions: int | None,
    labeler: ActionLabeler | None,
    policy: LLMPolicy | None,
    sampling_prob: float,
    seed: int,
) -> Iterator[ReplayStep]:
    envs = [
        family("rumour").population_env(
            scenario,
            agents_per_step=agents_per_step,
            warmup=0,
            max_reactions=max_reactions,
            labeler=labeler,
            mean_field=mean_field_factory(),
        )
        for scenario in scenarios
    ]
    rngs = [np.random.default_rng([seed, zlib.crc32(s.scenario_id.encode())]) for s in scenarios]
    real: dict[int, dict[str, str]] = {}  # this round's real reactions, by episode
    sampled: set[int] = set()  # the episodes of this round acting with the policy's texts

    def act(indices: Sequence[int], observations: Sequence[dict[str, Any]]) -> list[dict]:
        real.clear()
        real.update((i, envs[i].reference_texts()) for i in indices)
        sampled.clear()
        sampled.update(i for i in indices if sampling_prob and rngs[i].random() < sampling_prob)
        actions = [dict(real[i]) for i in indices]
        if sampled:
            assert policy is not None
            keyed = {
                f"{i}/{a}": obs
                for i, seen in zip(indices, observations, strict=True)
                if i in sampled
                for a, obs in seen.items()
            }
            for key, action in policy.act(keyed).items():
                i, agent = key.split("/", 1)
                actions[indices.index(int(i))][agent] = str(action)
        return actions

    for round_ in step_episodes([(env, seed) for env in envs], act):
        for position, i in enumerate(round_.indices):
            env, update = envs[i], round_.batches[position]
            # A scenario's last step needs no new mean field (nothing acts on it): skip it.
            last = round_.number == env.num_steps - 1
            if last:
                round_.skip(position, update.previous)
            model = env.mean_field_model
            asks = not last and hasattr(model, "next_prompt")
            prompt = model.next_prompt(update) if asks else None
            yield ReplayStep(
                env.scenario,
                round_.number,
                round_.observations[position],
                real[i],
                prompt,
                i in sampled,
            )


def policy_examples(
    steps: Iterable[ReplayStep],
    *,
    context: ContextKind,
    share_labels: Sequence[str] | None = None,
    min_step: int = 0,
) -> Iterator[dict[str, Any]]:
    """One example per agent and step, yielded as the steps come (lazily): ``prompt``
    (chat messages, exactly what :class:`~agents.policies.LLMPolicy` with this ``context``
    sends), ``completion`` (the real reaction, as :func:`agents.policies.reference_text`
    normalises it), and where it came from (``scenario_id``, ``step``, ``agent``,
    ``sampled``). Empty reactions, and steps before ``min_step``, are skipped. The prompt's
    language is detected from the event text, as :class:`~agents.policies.LLMPolicy`
    does in simulation."""
    for step in steps:
        if step.step < min_step:
            continue
        for agent, observation in step.observations.items():
            completion = reference_text(step.real_texts[agent])
            if not completion:
                continue
            yield (
                {
                    "prompt": policy_prompt(
                        observation,
                        context=context,
                        share_labels=share_labels,
                    ),
                    "completion": completion,
                    "scenario_id": step.scenario.scenario_id,
                    "step": step.step,
                    "agent": agent,
                    "sampled": step.sampled,
                }
            )


def sample_examples(
    examples: Iterable[dict[str, Any]], count: int, *, seed: int = 0
) -> list[dict[str, Any]]:
    """``count`` examples drawn without replacement (all of them if there are fewer), in
    their original order: spread over every event and step rather than the first ones."""
    pool = list(examples)
    if count >= len(pool):
        return pool
    chosen = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return [pool[i] for i in sorted(chosen.tolist())]


LAZY_LOCKSTEP = 64
"""The most scenarios a lazy draw steps in lockstep (one batched call of 64 summaries)."""


def draw_examples(
    scenarios: Iterable[Scenario],
    mean_field_factory: Callable[[], MeanFieldModel],
    build: Callable[..., Iterator[dict[str, Any]]],
    count: int,
    *,
    agents_per_step: int = 16,
    max_reactions: int | None = None,
    policy: LLMPolicy | None = None,
    sampling_prob: float = 0.0,
    seed: int = 0,
    lazy: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """``count`` examples that ``build`` (:func:`policy_examples`,
    :func:`mean_field_examples`; ``options`` are its keywords) makes from replaying
    ``scenarios``, drawn with ``seed`` (:func:`sample_examples`) so that they spread over
    the events and their steps rather than being the first ones.

    ``lazy`` (for an LLM mean field, whose summaries cost generation): replay stops once
    ``2 * count`` examples exist, with every scenario (up to :data:`LAZY_LOCKSTEP`)
    stepping in lockstep, so that the examples come from all events rather than from the
    longest of the first eight (one batched summary call per step serves them all).
    Otherwise eight scenarios step in lockstep.
    """
    scenarios = list(scenarios)
    steps = replay(
        scenarios,
        mean_field_factory,
        agents_per_step=agents_per_step,
        max_reactions=max_reactions,
        policy=policy,
        sampling_prob=sampling_prob,
        parallel=min(max(len(scenarios), 1), LAZY_LOCKSTEP) if lazy else 8,
        seed=seed,
    )
    examples = build(steps, **options)
    if lazy:
        examples = itertools.islice(examples, 2 * count)
    return sample_examples(examples, count, seed=seed)


def context_mean_field(
    context: ContextKind,
    mean_field: str = "histogram",
    *,
    backend: Backend | None = None,
    k: int = 5,
    seed: int = 0,
) -> Callable[[], MeanFieldModel]:
    """The factory of the mean-field models whose contexts a policy trained with
    ``context`` reads: ``recent``/``popular``, the Recent(k)/Popular(k) reactions;
    ``mean_field``, the histogram or (``mean_field="llm"``) the MF-LLM summariser on
    ``backend``, seeded ``seed``; ``none``, the histogram (its text is not shown).
    ``ValueError`` for another ``mean_field``, or ``llm`` without a backend."""
    if context in ("recent", "popular"):
        return partial(RecentReactions if context == "recent" else PopularReactions, k)
    if context != "mean_field" or mean_field == "histogram":
        return HistogramMeanField
    if mean_field != "llm" or backend is None:
        raise ValueError(
            f"the mean-field context is written by 'histogram' or 'llm' (with a backend), "
            f"got {mean_field!r}" + (" without a backend" if mean_field == "llm" else "")
        )
    return partial(LLMMeanField, backend, seed=seed)


def policy_sft_examples(
    scenarios: Sequence[Scenario],
    count: int,
    *,
    context: ContextKind,
    new_mean_field: Callable[[], MeanFieldModel],
    seed: int = 0,
    **replay_options: Any,
) -> list[dict[str, Any]]:
    """``count`` policy examples (:func:`policy_examples` with ``context``) drawn from
    replays of ``scenarios`` in an order shuffled with ``seed`` (so that a lazy draw does
    not take only the first events), as ``mfllm train sft`` builds its ``data/*.jsonl``;
    ``replay_options`` are :func:`draw_examples`' (``agents_per_step``, ``policy``,
    ``sampling_prob``, ``lazy``...)."""
    order = [scenarios[i] for i in np.random.default_rng(seed).permutation(len(scenarios))]
    return draw_examples(
        order, new_mean_field, policy_examples, count, seed=seed, context=context, **replay_options
    )


def mean_field_examples(
    steps: Iterable[ReplayStep], *, max_targets: int = 8
) -> Iterator[dict[str, Any]]:
    """IB-Tune's examples, yielded lazily: for each step t that has a next step,
    ``prompt`` (the mean-field model's prompt at t: the history X), and the first
    ``max_targets`` agents of step t+1 with a non-empty reaction: their ``target_states``
    and ``target_texts`` (Y). ``observed_event`` (the event as agents see it) lets the
    reward build the policy prompts for Y around a sampled summary; ``event`` and
    ``language`` (as mu sees them) build the prior's prompt. Steps must come in order within each
    scenario (as :func:`replay` yields them)."""
    if max_targets < 1:
        raise ValueError(f"max_targets must be >= 1, got {max_targets}")
    previous: dict[str, ReplayStep] = {}
    for step in steps:
        key = step.scenario.scenario_id
        before = previous.get(key)
        previous[key] = step
        if before is None or before.mean_field_prompt is None:
            continue
        targets = [
            (observation["state"], reference_text(step.real_texts[agent]))
            for agent, observation in step.observations.items()
            if reference_text(step.real_texts[agent])
        ][:max_targets]
        if not targets:
            continue
        first = next(iter(step.observations.values()))
        yield (
            {
                "prompt": before.mean_field_prompt,
                "event": step.scenario.event_text,
                "observed_event": first["event"],
                "language": step.scenario.language,
                "target_states": [state for state, _ in targets],
                "target_texts": [text for _, text in targets],
                "scenario_id": key,
                "step": before.step,
            }
        )
