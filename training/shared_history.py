"""GRPO over a group of G summaries of one history, with the history run once.

IB-Tune's GRPO samples G summaries of each history (several hundred to ~1,000 tokens)
and scores them: TRL 1.16 runs the whole history G times, both to sample (a batch of G
identical prompts) and in the loss (G rows of history + summary, forward and backward).
The history is most of every row, so on a CPU that is most of a step. Here it runs once:

- :class:`SharedHistoryRollout` samples the G summaries from one key/value cache of
  the history, repeated G times (TRL's ``rollout_func``, with the trainer's own
  generation settings);
- :class:`SharedHistoryGRPOTrainer` computes the loss's per-token log-probabilities from
  one forward pass over the history whose key/value cache, repeated G times, feeds the
  G summaries: the same values and the same gradients (autograd flows back through the
  repeated cache), for about one history's work instead of G.

With an ``engine`` (:func:`sampling_engine`), the rollout samples through the
simulation's own decoding loop instead of ``model.generate``: a copy of the model with
the adapter's current weights merged in (copied in before every sampling), in bf16 where
the CPU multiplies bf16 in hardware, with the hand-written decoding passes and drafts
from the context (:class:`~agents.backends.transformers_backend.TransformersBackend`).
Its next-token distributions are within about 0.001 nats (KL) of the training
weights'; the loss is computed by the training weights, as always.

Rows that do not share their prompt (``histories_per_step > 1`` mixes histories in a
batch; a left-padded prompt), multimodal inputs, and activation checkpointing (which
turns the cache off) take TRL's own path.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from trl import GRPOTrainer

from agents.backends.base import GenerationParams, cpu_has_bf16_units
from agents.backends.transformers_backend import CACHE_ARGUMENT, TOP_K, TransformersBackend


class SharedHistoryRollout:
    """A GRPO ``rollout_func`` sampling one completion per prompt, with the key/value
    cache of each distinct prompt computed once and repeated for its copies. Prompts are
    tokenised as TRL and the compression reward tokenise them; sampling follows the
    trainer's ``generation_config`` (temperature, top-k, top-p, length) and a completion
    ends after its first end-of-sequence token, as in TRL's own generation. ``seconds``
    adds up the time spent sampling.

    With ``engine`` (:func:`sampling_engine`), the completions are sampled by it, its
    weights refreshed from the trainer's model first (:func:`copy_adapted_weights`);
    each step's draws are seeded by the trainer's seed and the step, so a resumed run
    samples what the uninterrupted one did."""

    def __init__(self, tokenizer: Any, engine: TransformersBackend | None = None) -> None:
        self.tokenizer = tokenizer
        self.engine = engine
        self.seconds = 0.0

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        started = time.perf_counter()
        tokenizer = self.tokenizer
        model = trainer.accelerator.unwrap_model(trainer.model)
        prompt_ids = tokenizer(text=list(prompts))["input_ids"]
        if self.engine is not None:
            copy_adapted_weights(model, self.engine.model)
            completion_ids = self.engine.generate_ids(prompt_ids, engine_params(trainer))
            self.seconds += time.perf_counter() - started
            return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}
        copies: dict[str, list[int]] = {}
        for row, prompt in enumerate(prompts):
            copies.setdefault(prompt, []).append(row)
        completion_ids: list[list[int]] = [[] for _ in prompts]
        ends = set(trainer.eos_token_ids)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for rows in copies.values():
                    ids = torch.tensor([prompt_ids[rows[0]]], device=model.device)
                    history = model(input_ids=ids[:, :-1], use_cache=True, logits_to_keep=1)
                    cache = history[CACHE_ARGUMENT]
                    cache.batch_repeat_interleave(len(rows))
                    batch = ids.expand(len(rows), -1)
                    sampled = model.generate(
                        input_ids=batch,
                        attention_mask=torch.ones_like(batch),
                        generation_config=trainer.generation_config,
                        **{CACHE_ARGUMENT: cache},
                    )[:, ids.size(1) :]
                    for row, tokens in zip(rows, sampled.tolist(), strict=True):
                        end = next((i for i, t in enumerate(tokens) if t in ends), len(tokens) - 1)
                        completion_ids[row] = tokens[: end + 1]
        finally:
            model.train(was_training)
        self.seconds += time.perf_counter() - started
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def sampling_engine(model: Any, tokenizer: Any) -> TransformersBackend:
    """A backend over a copy of ``model`` (a base model, or a PEFT model whose adapter is
    merged into the copy) for :class:`SharedHistoryRollout`: bf16 where the CPU multiplies
    bf16 in hardware (:func:`~agents.backends.base.cpu_has_bf16_units`), else fp32. It
    costs one more copy of the weights (270 MB for SmolLM2 in bf16). The copy is a fresh
    model loaded with ``model``'s weights, not a deep copy: a trainer replaces a model's
    ``forward`` by wrappers that would still call the original."""
    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    copied = type(base)(base.config)
    weights = {
        name.replace(".base_layer.", "."): tensor
        for name, tensor in base.state_dict().items()
        if ".lora_" not in name
    }
    copied.load_state_dict(weights)
    if isinstance(model, PeftModel):
        copy_adapted_weights(model, copied)
    dtype = "bfloat16" if cpu_has_bf16_units() else "float32"
    return TransformersBackend(
        copied.to(getattr(torch, dtype)).eval(),
        tokenizer=tokenizer,
        generation_dtype=dtype,
        name="GRPO sampling engine",
    )


def copy_adapted_weights(model: Any, target: Any) -> int:
    """Write into ``target`` (a plain model with ``model``'s architecture) the weights of
    every LoRA-adapted layer of the PEFT ``model``: its base weight plus the active
    adapters' deltas, in ``target``'s precision, in place (so views of them, such as the
    fused matrices of the hand-written decoding passes, see the change). Other weights are
    the frozen base model's, which ``target`` was copied from. Returns how many layers."""
    from peft.tuners.lora import LoraLayer

    count = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, LoraLayer):
                continue
            weight = module.get_base_layer().weight
            for adapter in module.active_adapters:
                if adapter in module.lora_A and not module.merged:
                    weight = weight + module.get_delta_weight(adapter)
            target.get_submodule(name.removeprefix("base_model.model.")).weight.copy_(weight)
            count += 1
    if count == 0:
        raise ValueError("the model has no LoRA layers: nothing to copy into the engine")
    return count


def engine_params(trainer: Any) -> GenerationParams:
    """The trainer's sampling settings as the engine's :class:`GenerationParams`, seeded by
    the trainer's seed and step. Settings the engine does not have are refused."""
    args = trainer.args
    if (args.top_k or 0) != TOP_K:
        raise ValueError(
            f"the sampling engine draws from the top {TOP_K} tokens, got top_k={args.top_k}"
        )
    if args.min_p is not None or (args.repetition_penalty or 1.0) != 1.0:
        raise ValueError("the sampling engine has no min_p or repetition penalty")
    return GenerationParams(
        max_new_tokens=args.max_completion_length,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=(args.seed * 1_000_003 + trainer.state.global_step) % 2**32,
    )


class SharedHistoryGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` whose loss runs a group's shared history once (see the
    module docstring)."""

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: Any,
        attention_mask: Any,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **inputs: Any,
    ) -> tuple[Any, Any, Any]:
        width = input_ids.size(1) - logits_to_keep
        prompts = input_ids[:, :width]
        shared = (
            not compute_aux_loss
            and not self.args.gradient_checkpointing
            and all(value is None for value in inputs.values())
            and bool(attention_mask[:, :width].all())
            and bool((prompts == prompts[:1]).all())
        )
        if not shared:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **inputs,
            )  # fmt: skip
        rows = input_ids.size(0)
        completions = input_ids[:, width:]
        with self.accelerator.autocast():
            # The history's last position predicts the first completion token; completion
            # position k predicts token k + 1.
            history = model(input_ids=prompts[:1], use_cache=True, logits_to_keep=1)
            logits = [history.logits[:, -1:].expand(rows, -1, -1)]
            if logits_to_keep > 1:
                cache = history[CACHE_ARGUMENT]
                cache.batch_repeat_interleave(rows)
                rest = model(
                    input_ids=completions[:, :-1],
                    attention_mask=attention_mask[:, :-1],
                    use_cache=True,
                    **{CACHE_ARGUMENT: cache},
                )
                logits.append(rest.logits)
        scaled = torch.cat(logits, dim=1).float() / self.temperature
        logprobs = torch.log_softmax(scaled, dim=-1)
        picked = logprobs.gather(-1, completions[:, :, None])[:, :, 0]
        entropies = -(logprobs.exp() * logprobs).sum(-1) if compute_entropy else None
        return picked, entropies, None
