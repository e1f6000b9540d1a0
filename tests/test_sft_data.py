"""``mfllm train sft``'s data in the library (training.datasets.context_mean_field and
policy_sft_examples): the contexts' mean fields and the shuffled, seeded draw."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from agents.mean_field import LLMMeanField
from mfllm_env.mean_field import HistogramMeanField, PopularReactions, RecentReactions
from mfllm_env.synthetic import synthetic_scenario
from training.datasets import (
    context_mean_field,
    draw_examples,
    policy_examples,
    policy_sft_examples,
)


def test_each_context_gets_the_mean_field_it_reads() -> None:
    recent = context_mean_field("recent", k=3)()
    assert isinstance(recent, RecentReactions) and recent.k == 3
    assert isinstance(context_mean_field("popular", "llm", k=2)(), PopularReactions)
    assert context_mean_field("none", "llm") is HistogramMeanField
    assert context_mean_field("mean_field", "histogram") is HistogramMeanField
    backend = object()
    llm = context_mean_field("mean_field", "llm", backend=backend, seed=7)  # type: ignore[arg-type]
    assert isinstance(llm, partial) and llm.func is LLMMeanField
    assert llm.args == (backend,) and llm.keywords == {"seed": 7}
    with pytest.raises(ValueError, match="'llm' without a backend"):
        context_mean_field("mean_field", "llm")
    with pytest.raises(ValueError, match="got 'cos'"):
        context_mean_field("mean_field", "cos")


def test_sft_examples_are_drawn_from_a_seeded_shuffle_of_the_scenarios() -> None:
    scenarios = [synthetic_scenario(seed=s, n_reactions=20) for s in range(4)]
    options = {"agents_per_step": 4, "max_reactions": 12}
    got = policy_sft_examples(
        scenarios, 6, context="recent", new_mean_field=partial(RecentReactions, 2), seed=3,
        **options,
    )  # fmt: skip
    order = [scenarios[i] for i in np.random.default_rng(3).permutation(4)]
    expected = draw_examples(
        order, partial(RecentReactions, 2), policy_examples, 6, seed=3, context="recent",
        **options,
    )  # fmt: skip
    assert got == expected and len(got) == 6
    again = policy_sft_examples(
        scenarios, 6, context="recent", new_mean_field=partial(RecentReactions, 2), seed=3,
        **options,
    )  # fmt: skip
    assert again == got
    other = policy_sft_examples(
        scenarios, 6, context="recent", new_mean_field=partial(RecentReactions, 2), seed=4,
        **options,
    )  # fmt: skip
    assert other != got
