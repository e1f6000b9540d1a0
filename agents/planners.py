"""Language-model intervention planners for :class:`mfllm_env.planner.PlannerEnv`.

:func:`planner_prompt` turns a planner observation into the prompt of
:func:`agents.prompts.planner_messages` (training builds its prompts with it too), and
:func:`parse_planner_reply` turns a completion into an action: in text mode the cleaned
message (``""``, i.e. wait, for an empty reply or one that says WAIT); in menu mode the
first option named in the reply (option 0, wait, when it names none: counted as
``unparsed`` in :attr:`LLMPlanner.usage`).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.backends.base import (
    Backend,
    GenerationParams,
    check_backend_and_params,
    check_completions,
)
from agents.prompts import ACTION_CHARS, clean_action, detect_language, planner_messages

_WAIT = re.compile(r"^\W*(wait|stay silent|silent|nothing|none|no message|等待|沉默)\W*$", re.I)


def planner_prompt(
    observation: Mapping[str, Any],
    *,
    labels: Sequence[str],
    target: Sequence[float],
    options: Sequence[str] | None = None,
    language: str | None = None,
) -> list[dict[str, str]]:
    """The prompt for one planner observation (text mode when ``options`` is ``None``)."""
    event = str(observation["event"])
    return planner_messages(
        event,
        str(observation["mean_field"]),
        np.asarray(observation["step_shares"]).tolist(),
        labels,
        list(target),
        budget_left=int(observation["budget_left"]),
        steps_left=int(observation["steps_left"]),
        options=options,
        language=language or detect_language(event),
    )


def parse_planner_reply(
    text: str, options: Sequence[str] | None = None, max_chars: int = ACTION_CHARS
) -> tuple[str | int, bool]:
    """``(action, parsed)`` for a completion; see the module docstring."""
    if options is None:
        message = clean_action(text, max_chars)
        return ("" if _WAIT.match(message) else message), True
    lowered = text.lower()
    found = [(lowered.find(name.lower()), i) for i, name in enumerate(options)]
    found = [(position, i) for position, i in found if position >= 0]
    if not found:
        return 0, False
    # The earliest mention wins; at one position, the longest name ("debunk-believers"
    # over "debunk").
    return min(found, key=lambda item: (item[0], -len(options[item[1]])))[1], True


class LLMPlanner:
    """A language model as the planner of a :class:`~mfllm_env.planner.PlannerEnv`.

    ``labels``/``target`` describe the goal (the env's ``scheme.labels`` and ``target``);
    ``options`` are the menu's names for a menu-mode env, ``None`` for text mode. Sampling
    is seeded from :meth:`reset`'s seed, so the same seed plays the same episode.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        labels: Sequence[str],
        target: Sequence[float],
        options: Sequence[str] | None = None,
        params: GenerationParams | None = None,
        language: str | None = None,
    ) -> None:
        check_backend_and_params(backend, params)
        self.backend = backend
        self.labels = tuple(labels)
        shares = np.asarray(target)
        if not (
            shares.shape == (len(self.labels),)
            and shares.dtype.kind in "iuf"
            and np.isfinite(shares).all()
        ):
            raise ValueError(
                f"target must be one finite share per label {self.labels}, got {target!r:.80}"
            )
        self.target = [float(t) for t in target]
        self.options = None if options is None else tuple(options)
        self.params = params or GenerationParams(max_new_tokens=32)
        self.language = language
        self.usage: Counter[str] = Counter()
        self._rng = np.random.default_rng(0)

    @classmethod
    def for_env(cls, backend: Backend, env: Any, **kwargs: Any) -> LLMPlanner:
        """A planner for ``env``'s labels, target and (in menu mode) menu."""
        options = [o.name for o in env.menu] if env.action_mode == "menu" else None
        return cls(backend, labels=env.scheme.labels, target=env.target, options=options, **kwargs)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def prompt(self, observation: Mapping[str, Any]) -> list[dict[str, str]]:
        return planner_prompt(
            observation,
            labels=self.labels,
            target=self.target,
            options=self.options,
            language=self.language,
        )

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, str | int]:
        agents = list(observations)
        if not agents:
            return {}
        params = dataclasses.replace(self.params, seed=int(self._rng.integers(2**31 - 1)))
        completions = check_completions(
            self.backend,
            self.backend.generate([self.prompt(observations[a]) for a in agents], params),
            len(agents),
        )
        actions: dict[str, str | int] = {}
        for agent, completion in zip(agents, completions, strict=True):
            self.usage["decisions"] += 1
            self.usage["completion_tokens"] += completion.completion_tokens
            if completion.error:
                self.usage["errors"] += 1
                actions[agent] = "" if self.options is None else 0
                continue
            action, parsed = parse_planner_reply(completion.text, self.options)
            self.usage["unparsed"] += not parsed
            self.usage["waits"] += action in ("", 0)
            actions[agent] = action
        return actions
