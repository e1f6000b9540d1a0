"""Supervised fine-tuning of a policy on real reactions (TRL ``SFTTrainer`` with LoRA).

Trains the State-SFT baseline (``context="none"``) and the MF policy
(``context="mean_field"``, on contexts made by a mean-field model over the real history,
see :mod:`training.datasets`). Prompts are rendered with the model's chat template exactly
as the simulation's backend renders them, and the loss is on the completion (the real
reaction) only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.backends.chat import render_chat
from agents.prompts import CONTEXT_KINDS
from training.run_folder import (
    JsonlLogCallback,
    LoraSettings,
    check_config,
    drop_log_printer,
    resume_checkpoint,
    trainer_arguments,
    write_json,
)
from training.speed import SpeedSettings, set_training_threads, use_plain_lm_head


@dataclass
class PolicySFTConfig:
    """Settings of one SFT stage (TRL style: every field has help text)."""

    context: str = field(
        default="none",
        metadata={
            "help": "Policy context: 'none' (State-SFT), 'mean_field' (MF policy), 'recent' "
            "or 'popular' (the Recent(k) and Popular(k) policies)."
        },
    )
    max_steps: int = field(default=100, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=4, metadata={"help": "Examples per optimiser step."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (LoRA)."})
    max_length: int = field(
        default=1024,
        metadata={
            "help": "Longest prompt + reaction in tokens; longer examples are dropped (and "
            "counted), never cut, so no reaction loses its end."
        },
    )
    max_dev_examples: int = field(
        default=64, metadata={"help": "Dev examples scored before and after training."}
    )
    save_steps: int = field(default=25, metadata={"help": "Checkpoint every N steps."})
    logging_steps: int = field(default=1, metadata={"help": "Log the loss every N steps."})
    seed: int = field(default=0, metadata={"help": "Seed of data order, LoRA init, dropout."})
    group_by_length: bool = field(
        default=True,
        metadata={
            "help": "Batch examples of similar length (less padding; the order is still "
            "drawn at random, from groups of 50 batches)."
        },
    )
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA."})
    speed: SpeedSettings = field(
        default_factory=SpeedSettings, metadata={"help": "Threads, precision, memory savers."}
    )

    def __post_init__(self) -> None:
        if self.context not in CONTEXT_KINDS:
            raise ValueError(
                f"PolicySFTConfig.context must be one of {', '.join(CONTEXT_KINDS)}, "
                f"got {self.context!r}"
            )
        if not isinstance(self.group_by_length, bool):
            raise ValueError(
                f"PolicySFTConfig.group_by_length must be True or False, "
                f"got {self.group_by_length!r}"
            )
        check_config(
            self,
            counts={
                "max_steps": 1,
                "batch_size": 1,
                "max_length": 1,
                "max_dev_examples": 0,
                "save_steps": 1,
                "logging_steps": 1,
            },
            positive=("learning_rate",),
        )


def to_dataset(examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[Any, int]:
    """A ``datasets.Dataset`` of rendered ``prompt`` / ``completion`` strings and their
    ``length`` in tokens, and how many examples were dropped for being longer than
    ``max_length`` tokens."""
    from datasets import Dataset

    rows, dropped = [], 0
    for example in examples:
        prompt = render_chat(tokenizer, example["prompt"])
        length = len(tokenizer(prompt + example["completion"], add_special_tokens=False).input_ids)
        if length + 1 > max_length:  # + the end-of-turn token SFTTrainer appends
            dropped += 1
            continue
        rows.append({"prompt": prompt, "completion": example["completion"], "length": length})
    return Dataset.from_list(rows), dropped


LENGTH_GROUP_BATCHES = 50
"""Batches sorted by length together (:func:`length_grouped_order`)."""


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, examples_needed: int, seed: int
) -> list[int]:
    """Example indices to train on in this order, at least ``examples_needed`` of them, in
    batches of examples of similar length (less padding). Each pass over the data is a
    seeded permutation, cut into groups of :data:`LENGTH_GROUP_BATCHES` batches, each group
    sorted by length and cut into batches, the batches shuffled. Passes are drawn from
    ``(seed, pass)``, so the order is fixed by the seed and its start does not depend on
    how many steps are asked for: a resumed (or lengthened) run trains on the same batches
    as an uninterrupted one. (transformers' own length-grouped sampler draws from the global
    random state, which a resumed run does not restore in time: it trained other batches.)"""
    order: list[int] = []
    group = batch_size * LENGTH_GROUP_BATCHES
    epoch = 0
    while len(order) < examples_needed:
        rng = np.random.default_rng([seed, epoch])
        shuffled = rng.permutation(len(lengths)).tolist()
        batches = []
        for start in range(0, len(shuffled), group):
            chunk = sorted(shuffled[start : start + group], key=lambda i: lengths[i])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        order += [i for b in rng.permutation(len(batches)) for i in batches[b]]
        epoch += 1
    return order


def train_policy_sft(
    examples: list[dict[str, Any]],
    dev_examples: list[dict[str, Any]],
    config: PolicySFTConfig,
    stage_dir: Path,
    *,
    model: Any,
    tokenizer: Any,
    log_path: Path,
    stage: str = "sft",
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run one SFT stage into ``stage_dir`` and return its summary.

    ``model`` is the base model (a fresh LoRA adapter is added) or a PEFT model whose
    adapter is trainable (training continues it). The adapter is saved to
    ``stage_dir/adapter``; ``resume`` continues from the newest checkpoint. The mean
    per-token NLL of the dev reactions is measured before (unless resuming mid-stage) and
    after training. ``callbacks`` are extra ``transformers.TrainerCallback``s. Torch runs
    on ``config.speed.threads`` threads (one by default: see :mod:`training.speed`).
    """
    from peft import PeftModel
    from trl import SFTConfig, SFTTrainer

    set_training_threads(config.speed.threads)
    train_set, dropped = to_dataset(examples, tokenizer, config.max_length)
    dev_set, dev_dropped = to_dataset(
        dev_examples[: config.max_dev_examples], tokenizer, config.max_length
    )
    if len(train_set) == 0:
        raise ValueError(
            f"no training examples left ({len(examples)} built, {dropped} longer than "
            f"max_length {config.max_length})"
        )
    distinct_examples = len(train_set)
    if config.group_by_length:
        train_set = train_set.select(
            length_grouped_order(
                train_set["length"], config.batch_size, config.max_steps * config.batch_size,
                config.seed,
            )
        )  # fmt: skip
    train_set, dev_set = (
        data.remove_columns("length") if "length" in data.column_names else data
        for data in (train_set, dev_set)
    )
    args = SFTConfig(
        **trainer_arguments(
            output_dir=stage_dir / "checkpoints",
            max_steps=config.max_steps,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            save_steps=config.save_steps,
            logging_steps=config.logging_steps,
            seed=config.seed,
            progress=progress,
            gradient_checkpointing=config.speed.gradient_checkpointing,
            bf16=config.speed.bf16,
        ),
        max_length=config.max_length,
        completion_only_loss=True,
        per_device_eval_batch_size=config.batch_size,
        # With group_by_length the order is drawn above (resumable); the trainer keeps it.
        train_sampling_strategy="sequential" if config.group_by_length else "random",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dev_set if len(dev_set) else None,
        processing_class=tokenizer,
        peft_config=None if isinstance(model, PeftModel) else config.lora.peft_config(),
        callbacks=[JsonlLogCallback(log_path, stage), *callbacks],
    )
    drop_log_printer(trainer, progress)
    if not config.speed.fused_lm_head:
        use_plain_lm_head(trainer.model.get_base_model())
    checkpoint = resume_checkpoint(stage_dir / "checkpoints", log_path, stage, resume)
    summary: dict[str, Any] = {
        "stage": stage,
        "train_examples": distinct_examples,
        "dropped_too_long": dropped,
        "dev_examples": len(dev_set),
        "dev_dropped_too_long": dev_dropped,
        "resumed_from": checkpoint.name if checkpoint else None,
    }
    before = stage_dir / "dev_before.json"  # kept for a resumed run's summary
    if len(dev_set) and (checkpoint is None or not before.exists()):
        write_json(before, {"dev_nll_per_token_before": trainer.evaluate()["eval_loss"]})
    if len(dev_set):
        summary.update(json.loads(before.read_text()))
    if checkpoint is not None:
        _continue_token_count(trainer, checkpoint)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    summary["train_seconds"] = time.perf_counter() - started
    summary["steps"] = trainer.state.global_step
    # Steps x batch size: the examples passed through the model (``train_examples`` are
    # the distinct ones built); without length grouping an epoch's last batch may be short.
    summary["examples_trained"] = summary["steps"] * config.batch_size
    summary["epochs"] = round(summary["examples_trained"] / distinct_examples, 4)
    summary["train_loss_of_this_run"] = result.training_loss
    summary["tokens_seen"] = _tokens_seen(trainer)
    if len(dev_set):
        summary["dev_nll_per_token_after"] = trainer.evaluate()["eval_loss"]
    trainer.save_model(str(stage_dir / "adapter"))
    write_json(stage_dir / "summary.json", summary)  # written last: the stage is done
    return summary


def _continue_token_count(trainer: Any, checkpoint: Path) -> None:
    """TRL counts the tokens trained on from zero in every run (``num_tokens`` in the
    log); a run resumed from ``checkpoint`` goes on from the count logged there, so its
    log and ``tokens_seen`` are those of an uninterrupted run."""
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    counts = [row["num_tokens"] for row in history if "num_tokens" in row]
    if counts and hasattr(trainer, "_total_train_tokens"):
        trainer._total_train_tokens = int(counts[-1])


def _tokens_seen(trainer: Any) -> int | None:
    """Tokens the trainer has processed (``num_tokens``, which TRL logs), if logged."""
    for entry in reversed(trainer.state.log_history):
        if "num_tokens" in entry:
            return int(entry["num_tokens"])
    return None
