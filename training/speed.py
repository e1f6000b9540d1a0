"""What keeps the trainers near the hardware's speed on a CPU: the torch-thread rule and a
plain LM head in place of TRL's fused one.

Both SFT (:mod:`training.sft`) and IB-Tune's GRPO (:mod:`training.ib_tune`) use them;
``benchmarks/train_speed.py`` measures each against the settings they replace.

- **Threads.** Training runs on :data:`DEFAULT_THREADS` (one) torch thread unless told
  otherwise (``threads`` in the configs, ``--threads`` on the command line). Two torch
  threads on a 2-core machine where anything else runs collapse to a tenth (sometimes a
  fiftieth) of one thread's speed, spinning against each other; one thread is never slow.
  Raise it only when that many cores stay free for the whole run: a load measured at the
  start says nothing about the job that starts an hour later.
- **The LM head.** TRL 1.16's SFT and GRPO trainers compute the loss through a fused LM
  head that never builds the ``(tokens, vocabulary)`` logits. On a GPU it projects only
  the positions that carry a label; on a CPU (no Triton) it projects *every* position,
  prompt included, folds the tiles in plain torch, and projects them all again in the
  backward pass. Our prompts are most of each sequence (a policy prompt of ~110 tokens
  for a ~15-token reaction; a mean-field history of hundreds of tokens for a summary of
  48-96), so :func:`use_plain_lm_head` projects the labelled positions only, once, and
  lets autograd keep their logits: a few MB where the fused head saves memory nobody
  needed.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

from agents.backends.base import cpu_has_bf16_units
from mfllm_env.checks import check_count

DEFAULT_THREADS = 1
"""Torch threads of a training run unless told otherwise (see the module docstring)."""

THREADS_HELP = (
    f"torch threads (default {DEFAULT_THREADS}: two threads on a 2-core machine where anything "
    "else runs are ~10x slower than one; give more only when that many cores stay free for "
    "the whole run)"
)


PRECISIONS = ("auto", "fp32", "bf16")
RELEVANCE_PRECISIONS = ("auto", "fp32")
GENERATION_ENGINES = ("transformers", "vllm")


@dataclass
class SpeedSettings:
    """How a trainer runs (not what it learns), shared by SFT and IB-Tune's GRPO. The
    defaults are the fastest measured on 2-core CPUs (``benchmarks/train_speed.py``)."""

    threads: int = field(
        default=DEFAULT_THREADS, metadata={"help": "Torch threads (see the module docstring)."}
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "'fp32', 'bf16' (autocast: bf16 matrix products, fp32 weights and "
            "optimiser) or 'auto': bf16 where the CPU has bf16 matrix instructions "
            "(avx512_bf16 or AMX), where it measured ~1.5x fp32; fp32 elsewhere (without "
            "them bf16 runs on a slow fallback kernel)."
        },
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Recompute activations in the backward pass instead of keeping them: "
            "~27% of an SFT step, for memory only long GRPO histories need."
        },
    )
    fused_lm_head: bool = field(
        default=False,
        metadata={
            "help": "TRL's fused LM head (never builds logits; on CPU it projects every "
            "position twice) instead of the plain one (use_plain_lm_head)."
        },
    )

    share_history: bool = field(
        default=True,
        metadata={
            "help": "GRPO only: run the history a group's G summaries share once, to sample "
            "and in the loss, instead of G times (the same values and gradients; "
            "training.shared_history)."
        },
    )

    fast_sampling: bool = field(
        default=True,
        metadata={
            "help": "GRPO only, with share_history: sample the summaries through the "
            "simulation's decoding loop (bf16 where the CPU has bf16 units, the hand-written "
            "decoding passes, drafts from the context) on a copy of the model refreshed "
            "with the adapter's weights every step (training.shared_history.sampling_engine), "
            "instead of model.generate on the training weights."
        },
    )

    relevance_precision: str = field(
        default="auto",
        metadata={
            "help": "IB-Tune only: the weights the frozen policy scores the relevance reward "
            "with: 'fp32', or 'auto': its generation weights (bf16 where the CPU has bf16 "
            "units; TransformersBackend.scoring_with_generation_weights), about twice as "
            "fast; the group-normalised advantages moved by at most 0.03 (benchmarks/"
            "train_speed.py). Backends without that method score as they serve."
        },
    )

    def __post_init__(self) -> None:
        check_count("SpeedSettings.threads", self.threads, 1)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"SpeedSettings.precision must be one of {', '.join(PRECISIONS)}, "
                f"got {self.precision!r}"
            )
        if self.relevance_precision not in RELEVANCE_PRECISIONS:
            raise ValueError(
                "SpeedSettings.relevance_precision must be one of "
                f"{', '.join(RELEVANCE_PRECISIONS)}, got {self.relevance_precision!r}"
            )
        for name in ("gradient_checkpointing", "fused_lm_head", "share_history", "fast_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"SpeedSettings.{name} must be True or False, got {getattr(self, name)!r}"
                )

    @property
    def bf16(self) -> bool:
        """Whether training runs under bf16 autocast (``precision``, with ``auto``
        settled by :func:`cpu_has_bf16_units`)."""
        return self.precision == "bf16" or (self.precision == "auto" and cpu_has_bf16_units())


def check_generation_engine(engine: str) -> None:
    """Refuse a generation engine that is not one of :data:`GENERATION_ENGINES`, or
    ``"vllm"`` where the vllm package cannot be imported (before any work)."""
    import importlib.util

    if engine not in GENERATION_ENGINES:
        raise ValueError(
            f"generation engine must be one of {', '.join(GENERATION_ENGINES)}, got {engine!r}"
        )
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "generation engine 'vllm' needs the vllm package in this Python environment "
            "(pip install vllm, on a machine with a CUDA GPU); it is not installed here. "
            "Use 'transformers' (the default) to sample with the model itself"
        )


def set_training_threads(threads: int) -> None:
    """Run torch on ``threads`` intra-op threads (a count >= 1; see the module docstring)."""
    import torch

    check_count("threads", threads, 1)
    torch.set_num_threads(threads)


def use_plain_lm_head(model: Any, temperature: float = 1.0) -> None:
    """Replace the fused LM head TRL's trainers put on ``model`` (the base model, under
    any PEFT wrapper) by a plain one: ``model(..., labels=L, fused_lm_head=True)`` then
    projects only the positions whose next-token label is not ``-100``, divides the logits
    by ``temperature`` (GRPO scores its samples at the sampling temperature), and returns
    what TRL's head returns (``trl.trainer.utils.FusedCausalLMOutput``: per-token
    log-probabilities, entropies, whether the label is the top-1 token, the label mask,
    and the mean negative log-likelihood as ``loss``). Calls without ``fused_lm_head``
    (generation, plain evaluation) are untouched."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    trl_forward = vars(model).get("forward")  # TRL sets the fused head on the instance
    if trl_forward is None:
        raise ValueError(
            "use_plain_lm_head replaces the fused LM head a TRL trainer adds: build the "
            "trainer first (no fused head found on this model)"
        )

    def forward(
        self: Any,
        *args: Any,
        fused_lm_head: bool = False,
        labels: Any = None,
        shift_labels: Any = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        if not fused_lm_head:
            return trl_forward(
                *args,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:  # the state at position t predicts the token at t + 1
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        targets = labels[mask]
        logits = self.get_output_embeddings()(hidden[mask]).float() / temperature
        all_logprobs = torch.log_softmax(logits, dim=-1)
        picked = all_logprobs.gather(-1, targets[:, None])[:, 0]
        entropy = -(all_logprobs.exp() * all_logprobs).sum(-1)
        with torch.no_grad():
            is_top1 = logits.argmax(-1) == targets

        def per_position(values: Any) -> Any:
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        log_probs = per_position(picked)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count,
            log_probs=log_probs,
            entropy=per_position(entropy),
            is_top1=per_position(is_top1),
            label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)
