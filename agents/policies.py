"""LLM policies: one class, :class:`LLMPolicy`, for the agents of every population family,
speaking through the family's :class:`Speech` (how an observation becomes a prompt and a
completion becomes the action's text).

* :class:`RumourSpeech` (this module): the MF-LLM paper's policy and its State / Recent /
  Popular / SFT baselines; only the context the prompt shows changes
  (:data:`agents.prompts.CONTEXT_KINDS`).
* :class:`HouseholdSpeech` (this module): the households of ``mfllm/Macro-v0`` in text
  mode (the env parses their replies, counting what it cannot read).

:func:`llm_policy` (this module) builds the policy of any family of
:mod:`mfllm_env.registry` by its name.

For rumours the context text is the observation's ``mean_field`` text, made by the
environment's mean-field model, so each variant is run with its matching model:

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
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents.backends.base import (
    Backend,
    BackendError,
    GenerationParams,
    Message,
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
    household_messages,
    one_line,
    policy_messages,
)
from mfllm_env.checks import check_count
from mfllm_env.core.protocols import TextCodec
from mfllm_env.games.rumour import RumourTextCodec
from mfllm_env.labels import ActionLabeler
from mfllm_env.registry import family
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
    """The rumour policy prompt for one environment observation: what :class:`LLMPolicy`
    with a :class:`RumourSpeech` sends and what the training data builders
    (:mod:`training.datasets`) train on.

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


@runtime_checkable
class Speech(Protocol):
    """How one family's agents speak to a language model: ``prompt(observation)`` is the
    chat prompt of one agent's observation, ``clean(text)`` the action text a completion
    becomes; ``default_params`` are the sampling parameters a policy uses unless given
    others, and ``until_first_line`` tells the backend that only the completion's first
    non-empty line is read (it may stop there)."""

    default_params: GenerationParams
    until_first_line: bool

    def prompt(self, observation: Mapping[str, Any]) -> list[Message]: ...

    def clean(self, text: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class RumourSpeech:
    """How a rumour population speaks: the prompt shows the ``context`` kind
    (:data:`~agents.prompts.CONTEXT_KINDS`) of the observation's mean field and, with
    ``share_labels`` (the scheme's label names), its numeric label shares; ``language``
    ``"en"``/``"zh"``, or ``None`` to detect it from each event text. The action is the
    completion's first non-empty line, cut to ``max_action_chars``
    (:func:`~agents.prompts.clean_action`)."""

    context: ContextKind = "mean_field"
    share_labels: tuple[str, ...] | None = None
    language: str | None = None
    max_action_chars: int = ACTION_CHARS
    default_params: GenerationParams = dataclasses.field(default_factory=GenerationParams)
    until_first_line: bool = True

    def __post_init__(self) -> None:
        if self.context not in CONTEXT_KINDS:
            raise ValueError(f"context must be one of {CONTEXT_KINDS}, got {self.context!r}")
        if self.share_labels is not None:
            if isinstance(self.share_labels, str) or not all(
                isinstance(name, str) and name for name in self.share_labels
            ):
                raise ValueError(
                    f"share_labels must be label names (non-empty strings), "
                    f"got {self.share_labels!r}"
                )
            object.__setattr__(self, "share_labels", tuple(self.share_labels) or None)
        check_count("max_action_chars", self.max_action_chars, 1)

    def prompt(self, observation: Mapping[str, Any]) -> list[Message]:
        """The prompt for one observation (the same builder training uses)."""
        return policy_prompt(
            observation,
            context=self.context,
            share_labels=self.share_labels,
            language=self.language,
        )

    def clean(self, text: str) -> str:
        return clean_action(text, self.max_action_chars)


HOUSEHOLD_PARAMS = GenerationParams(max_new_tokens=40, temperature=0.7)
"""A household policy's sampling parameters unless given others."""
REPLY_CHARS = 400
"""Characters of a household's reply kept for the parser (whitespace runs collapsed)."""


@dataclasses.dataclass(frozen=True)
class HouseholdSpeech:
    """How the households of ``mfllm/Macro-v0`` (text mode) speak: the prompt is built
    (:func:`agents.prompts.household_messages`) from ``codec``'s prompt parts of the
    observation (default: the family's codec in the registry,
    :class:`~mfllm_env.games.macro.HouseholdTextCodec`), and a reply is kept whole on one
    line, cut to :data:`REPLY_CHARS` (:func:`~agents.prompts.one_line`), for the env's
    parser, which reads hours and saving anywhere in it ("I will work 40 hours a week and
    save 20% of my income") and counts what it cannot read (``stats["fallback"]``)."""

    codec: TextCodec[Any] = dataclasses.field(default_factory=family("macro").codec)
    default_params: GenerationParams = HOUSEHOLD_PARAMS
    until_first_line: bool = False

    def prompt(self, observation: Mapping[str, Any]) -> list[Message]:
        """The prompt of one household observation."""
        return household_messages(self.codec.prompt_parts(observation))

    def clean(self, text: str) -> str:
        return one_line(text, REPLY_CHARS)


SPEECHES: Mapping[str, Callable[..., Speech]] = MappingProxyType(
    {"rumour": RumourSpeech, "macro": HouseholdSpeech}
)
"""The speech of each population family of :data:`mfllm_env.registry.FAMILIES`, by the
family's name (its options are the speech class's)."""


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
    """A language model acting for every agent it is given, speaking through ``speech``
    (see the module docstring; default: ``RumourSpeech(**rumour_speech)``, so
    ``LLMPolicy(backend, context="none")`` is the rumour State policy).

    ``params`` are the sampling parameters (default: the speech's); each :meth:`act` call
    draws its sampling seed from a generator seeded by :meth:`reset`, so the same seed
    gives the same episode. ``score_references``: when the runner passes the real
    reactions (``references``), their log-likelihood under the prompt is scored in one
    batched call and reported per agent as ``nll`` (nats, summed over ``nll_tokens``
    tokens). ``samples_per_agent`` (K) and ``labeler``: see the module docstring; K > 1
    needs the labeller the environment labels actions with. After each :meth:`act`,
    :attr:`label_distributions` maps each agent to its K samples' label shares (empty
    with K = 1).

    Every action is an :class:`~mfllm_env.spaces.AnnotatedText` whose ``info`` carries
    ``prompt_tokens``, ``completion_tokens`` and, when they happen, ``error`` (the backend
    failed for this agent: the action is empty, which the environment counts) and the NLL.
    :attr:`usage` totals them over the policy's life (``calls``, ``actions``, ``errors``,
    tokens, and the wall times ``generate_seconds``/``score_seconds``).
    """

    action_mode = "text"

    def __init__(
        self,
        backend: Backend,
        speech: Speech | None = None,
        *,
        params: GenerationParams | None = None,
        score_references: bool = False,
        samples_per_agent: int = 1,
        labeler: ActionLabeler | None = None,
        **rumour_speech: Any,
    ) -> None:
        _check_sampling(samples_per_agent, labeler)
        if speech is None:
            speech = RumourSpeech(**rumour_speech)
        elif rumour_speech:
            raise ValueError(
                f"{', '.join(rumour_speech)}: RumourSpeech options, given with a speech "
                f"({type(speech).__name__}); set them on the speech"
            )
        if isinstance(speech, type):
            raise ValueError(
                f"speech must be a speech object, got the class {speech.__name__}: "
                f"pass {speech.__name__}(...)"
            )
        if not isinstance(speech, Speech):
            raise ValueError(
                f"speech must have prompt, clean, default_params and until_first_line, "
                f"got {type(speech).__name__}"
            )
        check_backend_and_params(backend, params)
        self.backend = backend
        self.speech = speech
        self.params = params or speech.default_params
        self.score_references = score_references
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

    def prompt(self, observation: Mapping[str, Any]) -> list[Message]:
        """The prompt for one observation (the speech's)."""
        return self.speech.prompt(observation)

    def act(
        self,
        observations: Mapping[str, Mapping[str, Any]],
        references: Mapping[str, str] | None = None,
    ) -> dict[str, AnnotatedText]:
        agents = list(observations)
        if not agents:
            return {}
        prompts = [self.prompt(observations[agent]) for agent in agents]
        params = dataclasses.replace(
            self.params,
            seed=int(self._rng.integers(2**31 - 1)),
            until_first_line=self.speech.until_first_line,  # the speech knows what it reads
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
        texts = ["" if c.error else self.speech.clean(c.text) for c in completions]
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
        size = labeler.scheme.size
        # The env's own labelling: the labeller's output checked, -1 -> the fallback label.
        ids = RumourTextCodec(labeler).decode_texts(texts).actions.reshape(-1, agents)
        counts = np.stack([np.bincount(column, minlength=size) for column in ids.T])
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


def llm_policy(
    family_name: str,
    backend: Backend,
    *,
    speech: Speech | Mapping[str, Any] | None = None,
    **options: Any,
) -> LLMPolicy:
    """The LLM policy of the population family ``family_name`` (a name of
    :data:`mfllm_env.registry.FAMILIES`; :class:`~mfllm_env.registry.UnknownNameError`
    listing them otherwise) on ``backend``: its :data:`SPEECHES` entry built with the
    ``speech`` options (or ``speech`` itself, an instance of that entry), and
    :class:`LLMPolicy`'s ``options`` (``params``, ...). Any other ``speech`` is a
    ``ValueError`` naming what was given and what the family speaks with."""
    name = family(family_name).name
    make = SPEECHES[name]
    if speech is None or isinstance(speech, Mapping):
        return LLMPolicy(backend, make(**(speech or {})), **options)
    if isinstance(make, type) and isinstance(speech, make):
        return LLMPolicy(backend, speech, **options)
    given = f"the class {speech.__name__}" if isinstance(speech, type) else type(speech).__name__
    raise ValueError(
        f"speech of the {name} family must be a {getattr(make, '__name__', make)} or a "
        f"mapping of its options, got {given}"
    )
