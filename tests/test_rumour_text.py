"""The rumour family's text codec: prompt parts, labels with a counted fallback, and the
labeller's answers checked."""

from __future__ import annotations

import numpy as np
import pytest

from mfllm_env.core.protocols import TextCodec
from mfllm_env.games.rumour import RumourTextCodec
from mfllm_env.labels import SDQC


class Keywords:
    """support for "yes", deny for "no", -1 (cannot label) otherwise."""

    scheme = SDQC

    def label(self, texts):
        return [{"yes": 0, "no": 1}.get(text, -1) for text in texts]


def test_replies_become_label_ids_and_unlabelled_ones_fall_back():
    codec = RumourTextCodec(Keywords())
    assert isinstance(codec, TextCodec)
    decoded = codec.decode_texts(["yes", "hmm", "no"])
    assert decoded.actions.tolist() == [0, SDQC.fallback_id, 1]
    assert decoded.actions.dtype == np.int64
    assert list(decoded.fallbacks) == [(), ("label",), ()]
    assert codec.label(["hmm"]).tolist() == [-1]


def test_prompt_parts_are_the_observations_texts():
    observation = {"event": "E", "state": "S", "mean_field": "M", "shares": np.ones(4) / 4}
    assert RumourTextCodec(Keywords()).prompt_parts(observation) == {
        "event": "E",
        "state": "S",
        "mean_field": "M",
    }


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([0.5, 1.0], "as integers"),
        ([0], r"shape \(1,\) for 2 texts"),
        ([0, 4], r"values 0\.\.4"),
    ],
)
def test_a_labeller_returning_garbage_is_named(returned, message):
    class Garbage(Keywords):
        def label(self, texts):
            return returned

    with pytest.raises(ValueError, match=f"labeler Garbage must return one id in .*{message}"):
        RumourTextCodec(Garbage()).decode_texts(["a", "b"])
