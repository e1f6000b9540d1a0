"""The rumour family's policies by name, built in one place for ``mfllm simulate`` and
``mfllm bench`` (and for a Python user): the non-LLM baselines (``random``, ``herding``,
the classifiers, fitted on the fit set :func:`mfllm_env.specs.fit_scenarios` derives) and
the MF-LLM paper's LLM variants (through :func:`agents.mf_llm.mf_llm_population`), and the
LLM population an intervention planner steers (:func:`planner_population`). The LLM policy
of any family (the macro-economy's households too) is :func:`agents.policies.llm_policy`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.backends import Backend, load_backend
from agents.baselines import ClassifierPolicy, HerdingPolicy, UniformRandomPolicy, collect_examples
from agents.mf_llm import mf_llm_population
from mfllm_env.bench_pipeline import CLASSIFIER_POLICIES, LLM_POLICIES, PolicySettings
from mfllm_env.labels import LabelScheme, scheme_for
from mfllm_env.mean_field import MeanFieldModel
from mfllm_env.scenario import Scenario
from mfllm_env.simulation import Policy
from mfllm_env.specs import fit_scenarios

POLICIES = CLASSIFIER_POLICIES + LLM_POLICIES
"""Every policy of ``mfllm simulate``."""
MEAN_FIELDS = ("histogram", "llm", "cos")
"""Mean fields an LLM policy other than ``recent``/``popular`` can be given."""
CONTEXT_OF_POLICY = {"mf": "mean_field", "state": "none", "sft": "none"}

BackendCache = dict[tuple, Backend]


@dataclass
class PolicyOptions(PolicySettings):
    """What builds one policy: its name (:data:`POLICIES`), seed, the evaluated scenario
    spec (the classifiers' fit set is derived from it), the LLM policy's and mean field's
    adapters, and the settings it reads (:class:`~mfllm_env.bench_pipeline.PolicySettings`,
    with ``mfllm simulate``'s flags of the same names and defaults)."""

    policy: str
    seed: int = 0
    scenario: str = "synthetic"
    adapter: Path | None = None
    mean_field_adapter: Path | None = None


def mean_field_choice(options: PolicyOptions) -> str:
    """The mean field a policy uses (``options.mean_field``, or the policy's default);
    ``ValueError`` for a mean field given to ``recent`` or ``popular``."""
    if options.policy in ("recent", "popular"):
        if options.mean_field is not None:
            raise ValueError(
                f"--policy {options.policy} shows reactions, not a mean field: drop --mean-field"
            )
        return options.policy
    return options.mean_field or ("llm" if options.policy == "mf" else "histogram")


def load_llm_backends(
    options: PolicyOptions, cache: BackendCache | None = None
) -> tuple[Backend, Backend]:
    """The policy's backend and the mean field's (the same one without a
    ``mean_field_adapter``); ``cache`` keeps loaded backends for later calls."""
    cache = {} if cache is None else cache

    def load(adapter: Path | None) -> Backend:
        key = (
            options.model,
            str(adapter),
            options.threads,
            options.tokenizer,
            options.generation_dtype,
            options.draft_tokens,
        )
        if key not in cache:
            cache[key] = load_backend(
                options.model,
                adapter=adapter,
                threads=options.threads,
                tokenizer=options.tokenizer,
                generation_dtype=options.generation_dtype,
                draft_tokens=options.draft_tokens,
            )
        return cache[key]

    backend = load(options.adapter)
    if options.mean_field_adapter is None:
        return backend, backend
    return backend, load(options.mean_field_adapter)


def llm_parts(
    options: PolicyOptions,
    scheme: LabelScheme,
    language: str,
    backends: tuple[Backend, Backend] | None = None,
) -> tuple[Policy, Callable[[], MeanFieldModel]]:
    """The LLM policy and a factory of fresh mean-field models (one per episode), on
    ``backends`` (policy, mean field) or on those :func:`load_llm_backends` loads."""
    backend, mean_field_backend = backends or load_llm_backends(options)
    return mf_llm_population(
        backend,
        mean_field=mean_field_choice(options),
        mean_field_backend=mean_field_backend,
        context=CONTEXT_OF_POLICY.get(options.policy, options.policy),
        max_new_tokens=options.max_new_tokens,
        summary_tokens=options.summary_tokens,
        temperature=options.temperature,
        show_shares=options.show_shares,
        share_labels=scheme.names(language),
        score_references=options.nll,
        k=options.k,
        cos_every=options.cos_every,
        seed=options.seed,
    )


def planner_population(
    model: str,
    scenario: Scenario,
    *,
    population_adapter: Path | None = None,
    mean_field_adapter: Path | None = None,
    threads: int | None = None,
    max_new_tokens: int,
    summary_tokens: int,
) -> tuple[Policy, Callable[..., MeanFieldModel]]:
    """The MF-LLM population an intervention planner steers (``planner-eval`` and ``train
    planner`` with ``--population mf``): the ``mf`` policy on ``model`` (with
    ``population_adapter``) and a factory of llm mean fields (on ``mean_field_adapter``'s
    model, else the policy's; ``seed=`` seeds one, as each scenario's is), the shares
    named in ``scenario``'s scheme and language."""
    backend = load_backend(model, adapter=population_adapter, threads=threads)
    mean_field_backend = (
        load_backend(model, adapter=mean_field_adapter, threads=threads)
        if mean_field_adapter
        else backend
    )
    scheme = scheme_for(scenario.default_label_dimension)
    return mf_llm_population(
        backend,
        mean_field_backend=mean_field_backend,
        max_new_tokens=max_new_tokens,
        summary_tokens=summary_tokens,
        share_labels=scheme.names(scenario.language),
    )


def build_policy(options: PolicyOptions, scheme: LabelScheme, evaluated: list[Scenario]) -> Policy:
    """A non-LLM policy of :data:`CLASSIFIER_POLICIES`; a classifier is fitted on the fit
    set of ``evaluated`` (it says on stderr how many reactions, from what)."""
    if options.policy == "random":
        return UniformRandomPolicy(scheme, seed=options.seed)
    if options.policy == "herding":
        return HerdingPolicy()
    if options.policy not in CLASSIFIER_POLICIES:
        raise ValueError(f"not a non-LLM policy: {options.policy!r} ({CLASSIFIER_POLICIES})")
    features = "state" if options.policy == "state-classifier" else "state+mean_field"
    fitted, described = fit_scenarios(options.scenario, evaluated, options.fit)
    examples = collect_examples(
        fitted, agents_per_step=options.agents_per_step, max_reactions=options.max_reactions
    )
    print(
        f"fitted {options.policy} on {len(examples.labels)} reactions ({described})",
        file=sys.stderr,
    )
    return ClassifierPolicy(scheme, features, seed=options.seed).fit(examples)
