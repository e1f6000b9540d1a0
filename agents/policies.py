"""LLM policies: the paper's MF-LLM policy and its State / Recent / Popular / SFT baselines.

All variants are one class, :class:`LLMPolicy`; only the context the prompt shows changes
(:data:`agents.prompts.CONTEXT_KINDS`). The context text itself is the observation's
``mean_field`` text, made by the environment's mean-field model, so each variant is run
with its matching model:

=========  ================  ========================================================
variant    ``context``       environment mean field
=========  ================  ========================================================
State      ``"none"``        any (ignored)
SFT        ``"none"``        any; the backend carries the fine-tuned adapter
Recent(k)  ``"recent"``      :class:`mfllm_env.mean_field.RecentReactions` (k)
Popular(k) ``"popular"``     :class:`mfllm_env.mean_field.PopularReactions` (k)
MF         ``"mean_field"``  :class:`agents.mean_field.LLMMeanField`, Chain of
                             Summarization, or the histogram
=========  ================  ========================================================

One :meth:`LLMPolicy.act` call makes one batched backend call for all the agents it is
given (all active agents of a step, or of several episodes' steps at once).

**Several samples per agent** (``samples_per_agent`` K > 1, with the env's ``labeler``):
the agents' prompts go K times into that one call, round by round (the backends draw
different samples for identical prompts of one call; the first round is the K = 1 call,
so each agent's first sample is the plain policy's), all K completions are
labelled as the environment labels actions, their label histogram is the agent's label
distribution (:attr:`LLMPolicy.label_distributions`, for the benchmark's expected scores)
and one of them, drawn with the policy's seeded generator, is the action. K = 1 is the
plain policy, draw for draw.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.backends.base import (
    Backend,
    BackendError,
    GenerationParams,
    check_backend_and_params,
    check_completions,
)
from agents.prompts import (
    ACTION_CHARS,
    CONTEXT_KINDS,
    ContextKind,
    clean_action,
    detect_language,
    format_shares,
    policy_messages,
)
from mfllm_env.checks import check_count
from mfllm_env.labels import UNLABELLED, ActionLabeler
from mfllm_env.spaces import AnnotatedText

REFERENCE_CHARS = 1000
"""Characters of a real reaction scored for its likelihood (longer ones are cut)."""


def reference_text(text: str) -> str:
    """A real reaction as a policy is scored on it and trained toward: whitespace runs
    collapsed to single spaces, cut to :data:`REFERENCE_CHARS` characters."""
    return " ".join(str(text).split())[:REFERENCE_CHARS]


def policy_prompt(
    observation: Mapping[str, Any],
    *,
    context: ContextKind = "mean_field",
    share_labels: Sequence[str] | None = None,
    language: str | None = None,
) -> list[dict[str, str]]:
    """The policy prompt for one environment observation: what :class:`LLMPolicy` sends
    and what the training data builders (:mod:`training.datasets`) train on.

    ``share_labels`` names the observation's numeric shares and adds them to the context
    (``None``: no shares). ``language``: ``"en"``/``"zh"``, or ``None`` to detect it from
    the event text.
    """
    event = str(observation["event"])
    return policy_messages(
        event,
        str(observation["state"]),
        context_kind=context,
        context=str(observation.get("mean_field", "")),
        shares_text=format_shares(share_labels, observation["shares"]) if share_labels else "",
        language=language or detect_language(event),
    )


def _check_sampling(samples_per_agent: int, labeler: ActionLabeler | None) -> None:
    """``ValueError`` unless ``samples_per_agent`` is a count >= 1 and, above 1, a
    labeller (something with ``label``) comes with it."""
    check_count("samples_per_agent", samples_per_agent, 1)
    if samples_per_agent > 1 and not callable(getattr(labeler, "label", None)):
        raise ValueError(
            f"samples_per_agent {samples_per_agent} needs the labeller the environment "
            f"labels actions with (labeler=...), got {type(labeler).__name__}"
        )


class LLMPolicy:
    """A language model acting for every active agent (see the module docstring).

    ``params`` are the sampling parameters; each :meth:`act` call draws its sampling seed
    from a generator seeded by :meth:`reset`, so the same seed gives the same episode.
    ``show_shares`` adds the observation's numeric shares to the context, named by
    ``share_labels``. ``score_references``: when the runner passes the real reactions
    (``references``), their log-likelihood under the prompt is scored in one batched call
    and reported per agent as ``nll`` (nats, summed over ``nll_tokens`` tokens).
    ``language``: ``"en"``/``"zh"``, or ``None`` to detect it from each event text.
    ``samples_per_agent`` (K) and ``labeler``: see the module docstring; K > 1 needs the
    labeller the environment labels actions with. After each :meth:`act`,
    :attr:`label_distributions` maps each agent to its K samples' label shares (empty
    with K = 1).

    Every action is an :class:`~mfllm_env.spaces.AnnotatedText` whose ``info`` carries
    ``prompt_tokens``, ``completion_tokens`` and, when they happen, ``error`` (the backend
    failed for this agent: the action is empty, which the environment counts) and the NLL.
    :attr:`usage` totals them over the policy's life.
    """

    action_mode = "text"

    def __init__(
        self,
        backend: Backend,
        *,
        context: ContextKind = "mean_field",
        params: GenerationParams | None = None,
        show_shares: bool = False,
        share_labels: Sequence[str] | None = None,
        score_references: bool = False,
        max_action_chars: int = ACTION_CHARS,
        language: str | None = None,
        samples_per_agent: int = 1,
        labeler: ActionLabeler | None = None,
    ) -> None:
        _check_sampling(samples_per_agent, labeler)
        if context not in CONTEXT_KINDS:
            raise ValueError(f"context must be one of {CONTEXT_KINDS}, got {context!r}")
        if show_shares and not share_labels:
            raise ValueError("show_shares needs share_labels (the label names of the shares)")
        check_count("max_action_chars", max_action_chars, 1)
        check_backend_and_params(backend, params)
        self.backend = backend
        self.context: ContextKind = context
        self.params = params or GenerationParams()
        self.show_shares = show_shares
        self.share_labels = tuple(share_labels or ())
        self.score_references = score_references
        self.max_action_chars = max_action_chars
        self.language = language
        self.samples_per_agent = samples_per_agent
        self.labeler = labeler
        self.label_distributions: dict[str, list[float]] = {}
        self.usage: Counter[str] = Counter()
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def sampling(self, samples_per_agent: int, labeler: ActionLabeler | None) -> LLMPolicy:
        """A copy of this policy (same backend and settings, its own usage and generator)
        that draws ``samples_per_agent`` completions per agent, labelled by ``labeler``."""
        _check_sampling(samples_per_agent, labeler)
        twin = copy.copy(self)
        twin.samples_per_agent, twin.labeler = samples_per_agent, labeler
        twin.usage, twin.label_distributions = Counter(), {}
        twin.reset(0)
        return twin

    def prompt(self, observation: Mapping[str, Any]) -> list[dict[str, str]]:
        """The prompt for one observation (the same builder training uses)."""
        return policy_prompt(
            observation,
            context=self.context,
            share_labels=self.share_labels if self.show_shares else None,
            language=self.language,
        )

    def act(
        self,
        observations: Mapping[str, Mapping[str, Any]],
        references: Mapping[str, str] | None = None,
    ) -> dict[str, AnnotatedText]:
        agents = list(observations)
        if not agents:
            return {}
        prompts = [self.prompt(observations[agent]) for agent in agents]
        # Only the first non-empty line becomes the action (clean_action): a backend may
        # stop there.
        params = dataclasses.replace(
            self.params, seed=int(self._rng.integers(2**31 - 1)), until_first_line=True
        )
        k, n = self.samples_per_agent, len(agents)
        # Round by round: the first n requests are the K = 1 call, so each agent's first
        # sample is the one the plain policy draws (a repeated prompt's samples are told
        # apart by their order in the call).
        requests = prompts * k
        started = time.perf_counter()
        completions = check_completions(
            self.backend, self.backend.generate(requests, params), len(requests)
        )
        self.usage["generate_seconds"] += time.perf_counter() - started
        texts = [
            "" if c.error else clean_action(c.text, self.max_action_chars) for c in completions
        ]
        chosen = list(range(n))  # K = 1: each agent's one completion
        self.label_distributions = {}
        if k > 1:
            draws = self._rng.integers(k, size=n)
            chosen = [int(draw) * n + j for j, draw in enumerate(draws)]
            histograms = self._label_histograms(texts, n)
            self.label_distributions = dict(zip(agents, histograms, strict=True))
        infos: list[dict[str, Any]] = []
        for j in range(n):
            samples = completions[j::n]
            info: dict[str, Any] = {
                "prompt_tokens": sum(c.prompt_tokens for c in samples),
                "completion_tokens": sum(c.completion_tokens for c in samples),
            }
            if completions[chosen[j]].error:
                info["error"] = completions[chosen[j]].error
            self.usage["errors"] += sum(bool(c.error) for c in samples)
            self.usage["prompt_tokens"] += info["prompt_tokens"]
            self.usage["completion_tokens"] += info["completion_tokens"]
            infos.append(info)
        self.usage["calls"] += 1
        self.usage["actions"] += len(agents)
        if self.score_references and references is not None:
            self._score(agents, prompts, references, infos)
        return {
            agent: AnnotatedText(texts[index], info)
            for agent, index, info in zip(agents, chosen, infos, strict=True)
        }

    def _label_histograms(self, texts: list[str], agents: int) -> list[list[float]]:
        """Each agent's label shares over its K sample ``texts`` (round by round), labelled
        as the environment labels an action: a text the labeller cannot label (-1) takes
        the scheme's fallback label."""
        labeler = self.labeler
        assert labeler is not None  # the constructor requires it for K > 1
        scheme = labeler.scheme
        ids = np.asarray(labeler.label(texts))
        if (
            ids.dtype.kind not in "iu"
            or ids.shape != (len(texts),)
            or (ids.size and (ids.min() < UNLABELLED or ids.max() >= scheme.size))
        ):
            raise ValueError(
                f"labeler {type(labeler).__name__} must return one id in [-1, {scheme.size}) "
                f"per text as integers; got {ids!r:.100}"
            )
        ids = np.where(ids == UNLABELLED, scheme.fallback_id, ids).reshape(-1, agents)
        counts = np.stack([np.bincount(column, minlength=scheme.size) for column in ids.T])
        return (counts / ids.shape[0]).tolist()

    def _score(
        self,
        agents: list[str],
        prompts: list[list[dict[str, str]]],
        references: Mapping[str, str],
        infos: list[dict[str, Any]],
    ) -> None:
        """Add ``nll``/``nll_tokens`` of each agent's real reaction to its info."""
        texts = [reference_text(references.get(a, "")) for a in agents]
        started = time.perf_counter()
        try:
            scores = self.backend.score(prompts, texts)
        except BackendError as error:
            self.usage["score_errors"] += 1
            for info in infos:
                info["score_error"] = str(error)[:200]
            return
        finally:
            self.usage["score_seconds"] += time.perf_counter() - started
        for info, score in zip(infos, scores, strict=True):
            if score.tokens:
                info["nll"] = -score.logprob
                info["nll_tokens"] = score.tokens
