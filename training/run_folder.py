"""What every trainer shares: the run folder, LoRA settings, the model, logging, report.

A run folder (``mfllm train ... --out RUN_DIR``; created, resumed and overwritten through
:class:`mfllm_env.runs.RunFolder`) holds:

- ``config.json``: the run's configuration (a resumed run must match it, except
  :data:`RESUMABLE_CHANGES`);
- ``data/*.jsonl``: the training examples as built (a resumed run reads them back rather
  than rebuilding them, which for LLM mean fields means generating again);
- ``STAGE/checkpoints/checkpoint-N``: periodic trainer checkpoints (LoRA weights,
  optimiser, scheduler, RNG), the last two kept; ``STAGE/adapter``: the final adapter;
- ``log.jsonl``: every logged value (loss, rewards, learning rate, ...), one JSON object
  per logging step, appended as training goes, so an interrupted run keeps its curves (a
  resumed stage first drops the rows past its checkpoint, :func:`trim_log`);
- ``report.png``: the curves; ``summary.json``: the final figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mfllm_env import runs
from mfllm_env.checks import SEED_MAX, check_count, check_number


def check_config(
    config: Any,
    counts: Mapping[str, int] = {},
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
) -> None:
    """Check a trainer config's fields at construction, naming the config and the field in
    a ``ValueError``: ``counts`` (field -> least value) must be integers, ``positive`` and
    ``non_negative`` finite numbers ``> 0`` / ``>= 0``, and a ``seed`` field an integer in
    ``[0, SEED_MAX]`` (NaN learning rates, 1.5 steps or a negative seed otherwise pass and
    fail deep inside numpy, torch or TRL, or train a model of NaN weights)."""
    owner = type(config).__name__
    for name, least in counts.items():
        check_count(f"{owner}.{name}", getattr(config, name), least)
    for name in positive:
        check_number(f"{owner}.{name}", getattr(config, name), 0, exclusive=True)
    for name in non_negative:
        check_number(f"{owner}.{name}", getattr(config, name), 0)
    if hasattr(config, "seed"):
        check_count(f"{owner}.seed", config.seed, 0, SEED_MAX)


@dataclass
class LoraSettings:
    """LoRA adapter settings (PEFT), shared by every trainer."""

    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    dropout: float = field(
        default=0.0,
        metadata={
            "help": "Dropout on the LoRA branch (0: measured ~17% of an SFT step on CPU, "
            "for a regularisation short LoRA runs do not need)."
        },
    )
    target_modules: str = field(
        default="all-linear",
        metadata={"help": "Modules that get adapters: 'all-linear' or comma-separated names."},
    )

    def __post_init__(self) -> None:
        check_config(self, counts={"r": 1}, positive=("alpha",))
        check_number("LoraSettings.dropout", self.dropout, 0, maximum=0.99)
        if not (isinstance(self.target_modules, str) and self.target_modules.strip(", ")):
            raise ValueError(
                f"LoraSettings.target_modules must be 'all-linear' or comma-separated module "
                f"names, got {self.target_modules!r}"
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


RESUMABLE_CHANGES = frozenset(
    {"threads", "max_steps", "policy_steps", "no_progress", "gradient_checkpointing"}
)
"""Configuration keys a resumed run may change: threads, progress bars, activation
checkpointing (a run killed for memory resumes with it), and how long to train (to stop
a run early or extend it; the learning-rate schedule follows the new length)."""
TRAINING_RESULTS = ("data", "log.jsonl", "checkpoints", "planner", "round_1", "policy")
"""What a training run folder holds once training has begun (kept if the run fails)."""


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
    runs.write_atomic(path, runs.jsonl_text(rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return runs.read_records(path)


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
        with self.path.open("a", encoding="utf-8") as handle:
            runs.append_record(handle, log_row(self.stage, state.global_step, logs))


def log_row(stage: str, step: int, logs: dict[str, Any]) -> dict[str, Any]:
    """The ``log.jsonl`` row of a log event: stage, step and the finite numbers logged."""
    row: dict[str, Any] = {"stage": stage, "step": step}
    for key, value in logs.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
            row[key] = value
    return row


def trim_log(path: Path, stage: str, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Before a stage resumes, drop the rows it logged that ``keep`` rejects: those
    logged after the point it resumes from, which are logged again as training redoes that
    work, so ``log.jsonl`` holds each event once; a truncated last line goes too."""
    rows = runs.read_records(path, ("stage", "step"), "a training log row")
    kept = [r for r in rows if r["stage"] != stage or keep(r)]
    if kept != rows:
        runs.write_atomic(path, runs.jsonl_text(kept))


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


def resume_checkpoint(folder: Path, log_path: Path, stage: str, resume: bool) -> Path | None:
    """The checkpoint under ``folder`` a stage resumes from (``None``: from the start, or
    not resuming); on resume, the stage's log rows past it are dropped (:func:`trim_log`)."""
    if not resume:
        return None
    checkpoint = last_checkpoint(folder)
    if checkpoint is None:  # from the start: even a dev evaluation before step 1 is redone
        trim_log(log_path, stage, lambda row: False)
        return None
    # The rows before the checkpoint's step stay, and of those at its step the ones the
    # checkpoint's log history holds (not, say, the end-of-training row logged after it).
    step = int(checkpoint.name.split("-")[-1])
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    logged = [log_row(stage, entry["step"], entry) for entry in history]
    trim_log(log_path, stage, lambda row: row["step"] < step or row in logged)
    return checkpoint


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
    gradient_checkpointing: bool,
    bf16: bool,
    use_cpu: bool = True,
) -> dict[str, Any]:
    """The arguments every TRL config here shares: the CPU (unless ``use_cpu`` is false),
    fp32 or bf16 autocast (``bf16``), activation checkpointing or not, no hub, no external
    loggers, periodic checkpoints (the last two kept), a linear warm-up then cosine decay.
    (TRL's own defaults are checkpointing on and bf16 autocast: see
    :class:`training.speed.SpeedSettings` for when each pays.)"""
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
        "use_cpu": use_cpu,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": gradient_checkpointing,
        "bf16": bf16,
        "fp16": False,
    }


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a crash leaves the old file or none)."""
    runs.write_json(path, data)
