"""What every trainer shares: the run folder, LoRA settings, the model, logging, report.

A run folder (``mfllm train ... --out RUN_DIR``) holds:

- ``config.json``: the run's configuration (written once; a resumed run must match it);
- ``data/*.jsonl``: the training examples as built (a resumed run reads them back rather
  than rebuilding them, which for LLM mean fields means generating again);
- ``STAGE/checkpoints/checkpoint-N``: periodic trainer checkpoints (LoRA weights,
  optimiser, scheduler, RNG), the last two kept; ``STAGE/adapter``: the final adapter;
- ``log.jsonl``: every logged value (loss, rewards, learning rate, ...), one JSON object
  per logging step, appended as training goes, so an interrupted run keeps its curves;
- ``report.png``: the curves; ``summary.json``: the final figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


@dataclass
class LoraSettings:
    """LoRA adapter settings (PEFT), shared by every trainer."""

    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    target_modules: str = field(
        default="all-linear",
        metadata={"help": "Modules that get adapters: 'all-linear' or comma-separated names."},
    )

    def peft_config(self) -> Any:
        from peft import LoraConfig

        targets: str | list[str] = self.target_modules
        if targets != "all-linear":
            targets = [name.strip() for name in targets.split(",") if name.strip()]
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )


def resolve_model(spec: str | Path) -> str:
    """A model folder for ``spec``: ``"smollm2"`` is the offline default model."""
    from agents.backends import default_model

    if str(spec) == default_model.NAME:
        return str(default_model.model_dir())
    return str(spec)


def load_trainable(spec: str | Path | Any, tokenizer: Any = None) -> tuple[Any, Any]:
    """Model and tokenizer for training: a spec (folder, hub id, ``"smollm2"``) or an
    already-built model with its ``tokenizer``."""
    from agents.backends.transformers_backend import load_model_and_tokenizer

    if isinstance(spec, (str, Path)):
        model, loaded = load_model_and_tokenizer(resolve_model(spec))
        tokenizer = tokenizer or loaded
    elif tokenizer is None:
        raise ValueError("a model object needs its tokenizer")
    else:
        model = spec
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def prepare_run_folder(
    out: Path,
    config: dict[str, Any],
    *,
    resume: bool,
    kind: str = "a training run",
    resumable: frozenset[str] | None = None,
) -> None:
    """Create ``out`` and write ``config.json``; refuse to overwrite an earlier run (``kind``
    names it in the message) unless resuming, and refuse to resume a run with a different
    configuration, except in the keys ``resumable`` (default :data:`RESUMABLE_CHANGES`)."""
    resumable = RESUMABLE_CHANGES if resumable is None else resumable
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    if path.exists():
        if not resume:
            raise ValueError(
                f"{out} already holds {kind}; pass --resume to continue it or choose another --out"
            )
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
        changed = [k for k in changed if k not in resumable]
        if changed:
            raise ValueError(
                f"cannot resume {out}: its configuration differs in {', '.join(changed)}"
            )
    path.write_text(json.dumps(config, indent=2, default=str) + "\n")


RESUMABLE_CHANGES = frozenset({"threads", "max_steps", "policy_steps"})
"""Configuration keys a resumed run may change: threads, and how long to train (to stop
a run early or extend it; the learning-rate schedule follows the new length)."""


def command_config(args: Any, leave_out: set[str]) -> dict[str, Any]:
    """A command's parsed arguments as a JSON-ready ``config.json`` (paths as strings),
    less ``leave_out``."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in leave_out
    }


def hide_progress_bars() -> None:
    """Silence transformers' and datasets' own progress bars (``--no-progress``)."""
    import datasets
    from transformers.utils import logging

    logging.disable_progress_bar()
    datasets.disable_progress_bars()


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` atomically (a crash leaves no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def cached_examples(path: Path, build: Any) -> list[dict[str, Any]]:
    """The examples in ``path`` if a previous (interrupted) run wrote them, else
    ``build()``, written to ``path`` before training starts."""
    if path.exists():
        return read_jsonl(path)
    rows = build()
    write_jsonl(path, rows)
    return rows


class JsonlLogCallback(TrainerCallback):
    """Appends every log event to ``log.jsonl`` with the stage name and global step."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = path
        self.stage = stage

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if not logs:
            return
        row = {"stage": self.stage, "step": state.global_step}
        for key, value in logs.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                row[key] = value
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def drop_log_printer(trainer: Any, progress: bool) -> None:
    """Without progress bars the trainer would print every log dict on stdout instead;
    they are in ``log.jsonl`` already, so drop that printer."""
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` under ``folder`` (``None`` when there is none).
    The trainer writes ``trainer_state.json`` last: a checkpoint without it was cut short
    by a crash and is passed over."""
    checkpoints = [
        p
        for p in folder.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def trainer_arguments(
    *,
    output_dir: Path,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    save_steps: int,
    logging_steps: int,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """The arguments every TRL config here shares: CPU in fp32, no hub, no external
    loggers, periodic checkpoints (the last two kept), a linear warm-up
    then cosine decay."""
    for name, value in (
        ("max_steps", max_steps),
        ("batch_size", batch_size),
        ("save_steps", save_steps),
        ("logging_steps", logging_steps),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return {
        "output_dir": str(output_dir),
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": min(10, max_steps // 10),
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 2,
        "logging_steps": logging_steps,
        "seed": seed,
        "data_seed": seed,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        # Activation checkpointing (TRL's default) stays on: without it one GRPO step over
        # four 1,500-token histories held 20 GB of activations and was killed for memory.
        # TRL also defaults to bf16 autocast; on a CPU without bf16 matrix units that runs
        # on a slow fallback kernel (several times slower than fp32 here).
        "bf16": False,
        "fp16": False,
    }


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a crash leaves the old file or none)."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    partial.replace(path)
