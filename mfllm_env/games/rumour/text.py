"""How the rumour family speaks: its :class:`~mfllm_env.core.protocols.TextCodec`.

A rumour observation is already text (the event, the agent's state, the mean field), so
its prompt parts are those texts; a reply becomes a label id through the labeller, and a
reply the labeller cannot label (it returns -1) gets the scheme's ``fallback`` label,
named in :attr:`~mfllm_env.core.protocols.Decoded.fallbacks` (the env counts it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mfllm_env.core.protocols import Decoded
from mfllm_env.labels import UNLABELLED, ActionLabeler

PROMPT_PARTS = ("event", "state", "mean_field")
"""The observation's texts a prompt is built from."""


class RumourTextCodec:
    """The labeller as the rumour family's text codec. ``decode_texts(texts)``: one label
    id per text (:class:`Decoded`, ``actions`` an int64 array), ``("label",)`` where the
    labeller could not label a text and the fallback label was used. What the labeller
    returns is checked: one integer id in ``[-1, K)`` per text, else a ``ValueError``
    naming the labeller."""

    def __init__(self, labeler: ActionLabeler) -> None:
        self.labeler = labeler
        self.scheme = labeler.scheme

    def prompt_parts(self, observation: Mapping[str, Any]) -> dict[str, str]:
        return {part: observation[part] for part in PROMPT_PARTS}

    def label(self, texts: Sequence[str]) -> np.ndarray:
        """The labeller's ids for ``texts``, checked: one per text, each in [-1, K) (-1:
        it could not label the text)."""
        labeler = self.labeler
        returned = labeler.label(list(texts))
        try:
            ids = np.asarray(returned)
        except ValueError:  # ragged nested lists
            ids = np.asarray(None)
        wrong = f"must return one id in [-1, {self.scheme.size}) per text"
        if ids.dtype.kind not in "iu":  # floats would be cut, strings parsed: refuse both
            raise ValueError(
                f"labeler {type(labeler).__name__} {wrong} as integers; got {returned!r:.100}"
            )
        if ids.shape != (len(texts),) or (
            ids.size and (ids.min() < UNLABELLED or ids.max() >= self.scheme.size)
        ):
            raise ValueError(
                f"labeler {type(labeler).__name__} {wrong}; got shape {ids.shape} for "
                f"{len(texts)} texts" + (f", values {ids.min()}..{ids.max()}" if ids.size else "")
            )
        return ids.astype(np.int64)

    def decode_texts(self, texts: Sequence[str]) -> Decoded:
        ids = self.label(texts)
        unread = ids == UNLABELLED
        ids[unread] = self.scheme.fallback_id
        return Decoded(ids, [("label",) if u else () for u in unread.tolist()])
