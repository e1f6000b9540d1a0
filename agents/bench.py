"""A bench's policies (:class:`BenchPolicies`) and :func:`run_bench`, which plays a bench
with them: ``mfllm bench`` without the command line.

>>> from agents.bench import run_bench
>>> from mfllm_env.bench_pipeline import BenchConfig
>>> table, note = run_bench(BenchConfig(
...     scenarios="synthetic:0-1", policies=["random", "herding"], seeds=[0, 1],
...     out="runs/bench", max_reactions=48, warmup=16))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.backends import Backend
from agents.baselines import RealTextPolicy
from agents.policy_factory import PolicyOptions, build_policy, llm_parts, load_llm_backends
from mfllm_env.bench_pipeline import (
    CLASSIFIER_POLICIES,
    MEAN_FIELD_POLICIES,
    NON_LLM,
    REAL_TEXTS,
    BenchConfig,
    bench,
)
from mfllm_env.labels import ActionLabeler, LabelScheme
from mfllm_env.mean_field import MeanFieldModel
from mfllm_env.runs import RunFolder
from mfllm_env.scenario import Scenario
from mfllm_env.simulation import Policy


class BenchPolicies:
    """Builds each policy of a bench once per seed, loading each model and fitting each
    classifier once per bench (a :class:`mfllm_env.bench_pipeline.PolicySource`). With
    ``samples_per_agent`` K > 1, the LLM policies draw K samples per agent and label them
    with ``labeler``, the one the bench's environments label with."""

    def __init__(
        self,
        config: BenchConfig,
        scheme: LabelScheme,
        evaluated: list[Scenario],
        labeler: ActionLabeler | None = None,
    ) -> None:
        self.config, self.scheme, self.evaluated = config, scheme, evaluated
        self.labeler = labeler
        self.backends: dict[tuple, Backend] = {}
        self.classifiers: dict[str, Policy] = {}

    def options(self, name: str, seed: int) -> PolicyOptions:
        """The options that build policy ``name`` under ``seed``."""
        config = self.config
        settings = config.policy_settings()
        if name not in MEAN_FIELD_POLICIES:  # config.mean_field is the mf policy's
            settings["mean_field"] = None
        options = PolicyOptions(
            policy="mf" if name == "mf-ib-tune" else name,
            seed=seed,
            scenario=config.scenarios,
            **settings,
        )
        if name == "sft":
            options.adapter = config.sft_adapter
        if name == "mf-ib-tune":
            options.mean_field = "llm"
            options.adapter = config.ib_tune / "adapters" / "policy"
            options.mean_field_adapter = config.ib_tune / "adapters" / "mean_field"
        return options

    def settings(self, name: str) -> dict[str, Any]:
        """What policy ``name`` is, kept in each of its records."""
        options = self.options(name, 0)
        if name in NON_LLM:
            return {"kind": "non-LLM", "fit": self.config.fit if name != REAL_TEXTS else None}
        settings = {
            "kind": "LLM",
            "model": options.model,
            "adapter": str(options.adapter) if options.adapter else None,
            "mean_field": options.mean_field or ("llm" if options.policy == "mf" else None),
            "mean_field_adapter": (
                str(options.mean_field_adapter) if options.mean_field_adapter else None
            ),
        }
        if self.config.samples_per_agent > 1:  # one sample: the records of earlier versions
            settings["samples_per_agent"] = self.config.samples_per_agent
        return settings

    def build(
        self, name: str, seed: int, language: str
    ) -> tuple[Policy, Callable[[], MeanFieldModel] | None]:
        """Policy ``name`` under ``seed`` and, for an LLM policy, a factory of fresh
        mean-field models."""
        options = self.options(name, seed)
        if name == REAL_TEXTS:
            return RealTextPolicy(), None
        if name in CLASSIFIER_POLICIES:
            if name not in self.classifiers:
                self.classifiers[name] = build_policy(options, self.scheme, self.evaluated)
            return self.classifiers[name], None
        backends = load_llm_backends(options, self.backends)
        policy, new_mean_field = llm_parts(options, self.scheme, language, backends)
        if self.config.samples_per_agent > 1:
            policy = policy.sampling(self.config.samples_per_agent, self.labeler)
        return policy, new_mean_field


def run_bench(
    config: BenchConfig, folder: RunFolder | None = None
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Play the bench ``config`` describes with :class:`BenchPolicies` and write its
    folder (:func:`mfllm_env.bench_pipeline.bench`); returns the leaderboard table and
    the note on scored real reactions without a human label (``None`` when none)."""
    return bench(config, BenchPolicies, folder)
