"""Training speed on this machine, before and after the CPU speed settings, in one run:
SFT tokens per second against a raw PyTorch LoRA loop, and IB-Tune's GRPO loop in
summaries per second, with where a GRPO step's time goes and its peak memory.

Variants, each in a fresh process (so each has its own peak RSS), all on ``--threads``
torch threads:

- ``sft_before``: :func:`training.sft.train_policy_sft` with the settings of commit
  921312c: activation checkpointing, LoRA dropout 0.05, TRL's fused LM head, fp32, random
  batches;
- ``sft``: the same with today's defaults (:class:`training.speed.SpeedSettings`: no
  checkpointing, dropout 0, the plain LM head, bf16 autocast where the CPU has bf16
  units, batches grouped by length); ``sft_fp32``: the same in fp32;
- ``raw_loop``: a plain PyTorch loop, no TRL: PEFT LoRA with the same settings (r 16,
  alpha 32, dropout 0, all linear layers), AdamW at the same learning rate, the same
  examples tokenised as SFT does, batches of the same size padded on the right, the loss
  from the model's own forward (full logits) on the reaction tokens, in the precision of
  ``sft``; ``raw_loop_fp32`` in fp32;
- ``grpo_before``, ``grpo_model_sampling`` and ``grpo``:
  :func:`training.ib_tune.train_mean_field` with the settings of commit 921312c (TRL
  running each history G times, to sample and in the loss; the frozen policy scoring
  every relevance prompt whole, in fp32), with today's defaults but the summaries sampled
  by ``model.generate`` and relevance scored in fp32 (the history run once per group:
  :mod:`training.shared_history`; relevance prompts' common prefixes scored once,
  ``TransformersBackend.share_prefixes``), and with today's defaults (sampled by the
  simulation's decoding loop, ``SpeedSettings.fast_sampling``; relevance scored with the
  generation weights, ``SpeedSettings.relevance_precision``).

SFT examples are teacher-forced replays of the scenarios (State prompts), batch 4;
tokens count every real token through forward and backward (prompt and reaction,
padding excluded; TRL's ``num_tokens``), timed after one warm-up step. GRPO: G summaries
per history, rewarded by the frozen policy (``--targets`` next reactions scored per
summary) and the compression term; every step timed; a step's time split into
generation (sampling the summaries), relevance scoring, compression scoring, the
optimiser step, and the rest (mostly the loss's forward and backward pass). Rates are
given per wall second and per CPU second (the process's CPU time: on a shared machine
the wall time also counts waiting for a core).

    python benchmarks/train_speed.py [--json] [--threads 1] [--model smollm2]
        [--scenarios synthetic:0-3] [--sections sft grpo] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

SFT_VARIANTS = ("sft_before", "sft", "sft_fp32", "raw_loop", "raw_loop_fp32")
GRPO_VARIANTS = ("grpo_before", "grpo_model_sampling", "grpo")


def _before_settings(threads: int) -> dict[str, Any]:
    """The trainers' settings at commit 921312c, before the speed work."""
    from training.run_folder import LoraSettings
    from training.speed import SpeedSettings

    speed = SpeedSettings(
        threads=threads,
        precision="fp32",
        gradient_checkpointing=True,
        fused_lm_head=True,
        share_history=False,
        fast_sampling=False,
        relevance_precision="fp32",
    )
    return {"lora": LoraSettings(dropout=0.05), "speed": speed}


class StepClock(TrainerCallback):
    """Times whole steps (wall and CPU), ``model.generate`` calls and optimiser steps."""

    def __init__(self) -> None:
        self.generate = 0.0
        self.optimiser = 0.0
        self.steps: list[float] = []
        self.cpu_steps: list[float] = []
        self._started = self._cpu_started = self._optimiser_started = 0.0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        inner = model.generate

        def timed(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.generate += time.perf_counter() - started

        model.generate = timed

    def on_step_begin(self, args, state, control, **kwargs):
        self._started, self._cpu_started = time.perf_counter(), time.process_time()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._optimiser_started = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.optimiser += time.perf_counter() - self._optimiser_started

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._started)
        self.cpu_steps.append(time.process_time() - self._cpu_started)


def _peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _sft_examples(args: argparse.Namespace) -> list[dict[str, Any]]:
    from mfllm_env.mean_field import HistogramMeanField
    from mfllm_env.specs import iter_spec
    from training.datasets import policy_examples, replay

    replayed = replay(list(iter_spec(args.scenarios)), HistogramMeanField, max_reactions=64)
    return list(policy_examples(replayed, context="none"))[: 4 * (args.sft_steps + 1)]


def _rates(tokens: float, wall: float, cpu: float, steps: int) -> dict[str, Any]:
    return {
        "steps_timed": steps,
        "tokens": tokens,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "tokens_per_s": tokens / wall,
        "tokens_per_cpu_s": tokens / cpu,
    }


def sft_speed(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One SFT variant (``sft_before``, ``sft`` or ``sft_fp32``) on ``args.sft_steps``
    timed steps after a warm-up one."""
    from training.run_folder import load_trainable
    from training.sft import PolicySFTConfig, train_policy_sft
    from training.speed import SpeedSettings

    steps = args.sft_steps + 1
    settings: dict[str, Any] = {"speed": SpeedSettings(threads=args.threads)}
    if variant == "sft_before":
        settings = {**_before_settings(args.threads), "group_by_length": False}
    elif variant == "sft_fp32":
        settings = {"speed": SpeedSettings(threads=args.threads, precision="fp32")}
    examples = _sft_examples(args)
    model, tokenizer = load_trainable(args.model)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        config = PolicySFTConfig(
            max_steps=steps, logging_steps=1, save_steps=steps, max_dev_examples=0, **settings
        )
        summary = train_policy_sft(
            examples, [], config, Path(folder) / "sft", model=model, tokenizer=tokenizer,
            log_path=Path(folder) / "log.jsonl", progress=False, callbacks=[clock],
        )  # fmt: skip
        log = [json.loads(line) for line in (Path(folder) / "log.jsonl").open()]
    tokens = [row["num_tokens"] for row in log if "num_tokens" in row]
    losses = [row["loss"] for row in log if "loss" in row]
    result = _rates(tokens[-1] - tokens[0], sum(clock.steps[1:]), sum(clock.cpu_steps[1:]),
                    len(clock.steps) - 1)  # fmt: skip
    return {
        **result,
        "bf16": config.speed.bf16,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "train_loss": summary["train_loss_of_this_run"],
        "peak_rss_gb": _peak_rss_gb(),
    }


def raw_loop_speed(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """The raw PyTorch LoRA loop (``raw_loop`` in the precision ``sft`` trains in,
    ``raw_loop_fp32`` in fp32) on the SFT examples, ``args.sft_steps`` timed steps after a
    warm-up one."""
    import torch
    from peft import get_peft_model

    from agents.backends.chat import render_chat
    from training.run_folder import LoraSettings, load_trainable
    from training.speed import SpeedSettings, set_training_threads

    set_training_threads(args.threads)
    bf16 = variant == "raw_loop" and SpeedSettings().bf16
    model, tokenizer = load_trainable(args.model)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraSettings().peft_config())
    model.train()
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0
    )
    rows = []
    for example in _sft_examples(args):
        prompt = tokenizer(render_chat(tokenizer, example["prompt"]), add_special_tokens=False)
        reaction = tokenizer(example["completion"], add_special_tokens=False)
        ids = prompt.input_ids + reaction.input_ids + [tokenizer.eos_token_id]
        rows.append((ids, len(prompt.input_ids)))
    walls, cpus, tokens, losses = [], [], [], []
    for start in range(0, 4 * (args.sft_steps + 1), 4):
        batch = rows[start : start + 4]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100)
        for i, (ids, prompt_length) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
            labels[i, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        tokens.append(int(mask.sum()))
        losses.append(float(loss))
    return {
        **_rates(sum(tokens[1:]), sum(walls[1:]), sum(cpus[1:]), len(walls) - 1),
        "bf16": bf16,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_rss_gb": _peak_rss_gb(),
    }


def grpo_speed(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One IB-Tune GRPO variant (``grpo_before`` or ``grpo``) on ``args.grpo_steps``
    steps, every step timed."""
    from agents.backends import GenerationParams, load_backend
    from agents.backends.chat import render_chat
    from agents.mean_field import LLMMeanField
    from mfllm_env.specs import iter_spec
    from training.datasets import mean_field_examples, replay
    from training.ib_tune import IBTuneConfig, train_mean_field
    from training.run_folder import load_trainable
    from training.speed import SpeedSettings

    if variant == "grpo_before":
        settings = _before_settings(args.threads)
    elif variant == "grpo_model_sampling":  # the defaults before the sampling engine
        speed = SpeedSettings(threads=args.threads, fast_sampling=False, relevance_precision="fp32")
        settings = {"speed": speed}
    else:
        settings = {"speed": SpeedSettings(threads=args.threads)}
    config = IBTuneConfig(
        mu_steps=args.grpo_steps, num_generations=args.generations, max_targets=args.targets,
        summary_tokens=args.summary_tokens, save_steps=args.grpo_steps, **settings,
    )  # fmt: skip
    backend = load_backend(args.model, threads=args.threads)
    params = GenerationParams(max_new_tokens=args.summary_tokens, temperature=0.7)
    steps = replay(
        list(iter_spec(args.scenarios)),
        lambda: LLMMeanField(backend, params=params, seed=0),
        max_reactions=args.grpo_reactions,
        parallel=args.grpo_steps,
    )
    examples = list(
        itertools.islice(mean_field_examples(steps, max_targets=args.targets), args.grpo_steps)
    )
    if variant == "grpo_before":
        backend.share_prefixes = False  # before, scoring ran every prompt whole
    model, tokenizer = load_trainable(args.model)
    history_tokens = [
        len(tokenizer(render_chat(tokenizer, e["prompt"]), add_special_tokens=False).input_ids)
        for e in examples
    ]
    rss_before_training = _peak_rss_gb()
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        summary = train_mean_field(
            examples, config, Path(folder) / "mu", model=model, tokenizer=tokenizer,
            policy_backend=backend, log_path=Path(folder) / "log.jsonl", stage="mu",
            progress=False, callbacks=[clock],
        )  # fmt: skip
    wall, cpu = sum(clock.steps), sum(clock.cpu_steps)
    parts = {
        # Sampling: by the shared-history rollout (which times itself), else by TRL
        # through model.generate.
        "generation": summary["generation_seconds"] or clock.generate,
        "relevance_scoring": summary["relevance_seconds"],
        "compression_scoring": summary["compression_seconds"],
        "optimiser_step": clock.optimiser,
    }
    parts["loss_forward_backward_and_rest"] = wall - sum(parts.values())
    return {
        "steps": len(clock.steps),
        "summaries": summary["summaries_sampled"],
        "history_tokens_mean": sum(history_tokens) / len(history_tokens),
        "history_tokens_max": max(history_tokens),
        "bf16": config.speed.bf16,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "summaries_per_s": summary["summaries_sampled"] / wall,
        "summaries_per_cpu_s": summary["summaries_sampled"] / cpu,
        "seconds_per_step": wall / len(clock.steps),
        "share_of_time": {name: seconds / wall for name, seconds in parts.items()},
        "reward_first": summary.get("reward first"),
        "reward_last": summary.get("reward last"),
        "peak_rss_gb_before_training": rss_before_training,
        "peak_rss_gb": _peak_rss_gb(),
    }


MEASURE = {
    **{name: sft_speed for name in ("sft_before", "sft", "sft_fp32")},
    **{name: raw_loop_speed for name in ("raw_loop", "raw_loop_fp32")},
    **{name: grpo_speed for name in GRPO_VARIANTS},
}


def measure(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One variant's figures (run in a fresh process unless ``--quick``)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from training.run_folder import hide_progress_bars
    from training.speed import set_training_threads

    hide_progress_bars()
    set_training_threads(args.threads)
    return MEASURE[variant](variant, args)


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's figures and ratios, from the variants measured."""
    figures: dict[str, Any] = {}
    if "sft" in results:
        sft, before = results["sft"], results["sft_before"]
        raw, raw_fp32, sft_fp32 = results["raw_loop"], results["raw_loop_fp32"], results["sft_fp32"]
        figures.update(
            sft_tokens_per_s=sft["tokens_per_s"],
            sft_tokens_per_cpu_s=sft["tokens_per_cpu_s"],
            raw_loop_tokens_per_s=raw["tokens_per_s"],
            raw_loop_tokens_per_cpu_s=raw["tokens_per_cpu_s"],
            sft_vs_raw=sft["tokens_per_cpu_s"] / raw["tokens_per_cpu_s"],
            sft_vs_raw_fp32_both=sft_fp32["tokens_per_cpu_s"] / raw_fp32["tokens_per_cpu_s"],
            sft_before_tokens_per_s=before["tokens_per_s"],
            sft_before_tokens_per_cpu_s=before["tokens_per_cpu_s"],
            sft_speedup=sft["tokens_per_cpu_s"] / before["tokens_per_cpu_s"],
            sft_fp32_speedup=sft_fp32["tokens_per_cpu_s"] / before["tokens_per_cpu_s"],
        )
    if "grpo" in results:
        grpo, before = results["grpo"], results["grpo_before"]
        figures.update(
            grpo_summaries_per_s=grpo["summaries_per_s"],
            grpo_summaries_per_cpu_s=grpo["summaries_per_cpu_s"],
            grpo_before_summaries_per_s=before["summaries_per_s"],
            grpo_before_summaries_per_cpu_s=before["summaries_per_cpu_s"],
            grpo_speedup=grpo["summaries_per_cpu_s"] / before["summaries_per_cpu_s"],
            grpo_engine_speedup=grpo["summaries_per_cpu_s"]
            / results["grpo_model_sampling"]["summaries_per_cpu_s"],
            grpo_peak_rss_gb=grpo["peak_rss_gb"],
            grpo_before_peak_rss_gb=before["peak_rss_gb"],
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--scenarios", default="synthetic:0-3")
    parser.add_argument(
        "--sections", nargs="+", choices=("sft", "grpo"), default=["sft", "grpo"]
    )
    parser.add_argument("--sft-steps", type=int, default=5, help="timed SFT steps")
    parser.add_argument("--grpo-steps", type=int, default=2, help="timed GRPO steps")
    parser.add_argument("--generations", type=int, default=4, help="G")
    parser.add_argument("--targets", type=int, default=4, help="reactions scored per summary")
    parser.add_argument("--summary-tokens", type=int, default=48)
    parser.add_argument(
        "--grpo-reactions", type=int, default=48, help="reactions per event replayed for GRPO"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 1 step of each, 8-token summaries, every variant in this process "
        "(so peak RSS is of the whole run)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.sft_steps, args.grpo_steps, args.summary_tokens, args.targets = 1, 1, 8, 2
    variants = [
        *(SFT_VARIANTS if "sft" in args.sections else ()),
        *(GRPO_VARIANTS if "grpo" in args.sections else ()),
    ]
    results: dict[str, dict[str, Any]] = {}
    for variant in variants:
        if args.quick:
            results[variant] = measure(variant, args)
            continue
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            results[variant] = pool.submit(measure, variant, args).result()
    report = {
        "model": args.model,
        "scenarios": args.scenarios,
        "threads": args.threads,
        **headline(results),
        "variants": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for variant, figures in results.items():
        rate = (
            f"{figures['tokens_per_cpu_s']:.0f} tokens/CPU-s, {figures['tokens_per_s']:.0f}/s"
            if "tokens" in figures
            else f"{figures['summaries_per_cpu_s']:.4f} summaries/CPU-s, "
            f"{figures['summaries_per_s']:.4f}/s"
        )
        print(f"{variant:14s} {rate}, peak RSS {figures['peak_rss_gb']:.1f} GB")
    for name, value in headline(results).items():
        print(f"{name:32s} {value:.3f}")


if __name__ == "__main__":
    main()
