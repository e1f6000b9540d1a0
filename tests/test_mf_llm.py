"""The MF-LLM population built in one place: which policy and mean fields the options give."""

from __future__ import annotations

import pytest
from conftest import ReturnsBackend

from agents.backends.base import GenerationParams
from agents.mean_field import ChainOfSummarization, LLMMeanField
from agents.mf_llm import MEAN_FIELD_KINDS, mf_llm_population
from mfllm_env.mean_field import HistogramMeanField, PopularReactions, RecentReactions


def _population(**options):
    backend = ReturnsBackend(lambda prompts: [])
    return mf_llm_population(backend, max_new_tokens=12, summary_tokens=34, **options)


def test_the_policy_and_the_llm_mean_field_share_the_options():
    policy, new_mean_field = _population(temperature=0.3, context="none", seed=5)
    assert policy.speech.context == "none" and policy.speech.share_labels is None
    assert policy.params == GenerationParams(12, temperature=0.3)
    first, second = new_mean_field(), new_mean_field(seed=9)
    assert isinstance(first, LLMMeanField) and first is not second
    assert first.params == GenerationParams(34, temperature=0.3)
    assert (first.seed, second.seed) == (5, 9)


def test_no_temperature_keeps_the_default_and_a_second_backend_writes_the_summaries():
    summariser = ReturnsBackend(lambda prompts: [])
    policy, new_mean_field = _population(mean_field="cos", mean_field_backend=summariser, k=3)
    default = GenerationParams(1).temperature
    assert policy.params.temperature == default
    model = new_mean_field()
    assert isinstance(model, ChainOfSummarization) and model.backend is summariser
    assert model.params.temperature == default and model.params.max_new_tokens == 34


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("histogram", HistogramMeanField), ("recent", RecentReactions), ("popular", PopularReactions)],
)
def test_llm_free_mean_fields(kind, cls):
    _, new_mean_field = _population(mean_field=kind, k=3)
    model = new_mean_field()
    assert type(model) is cls and getattr(model, "k", 3) == 3
    assert kind in MEAN_FIELD_KINDS


def test_an_unknown_mean_field_is_named():
    with pytest.raises(ValueError, match=r"mean_field must be one of .*'summary'"):
        _population(mean_field="summary")


def test_shares_are_shown_only_when_asked_and_need_their_names():
    names = ("support", "deny", "query", "comment")
    shown, _ = _population(show_shares=True, share_labels=names)
    hidden, _ = _population(share_labels=names)
    assert shown.speech.share_labels == names and hidden.speech.share_labels is None
    with pytest.raises(ValueError, match="show_shares needs share_labels"):
        _population(show_shares=True)
