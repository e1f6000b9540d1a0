"""Training speed on this machine: SFT tokens per second (LoRA) and IB-Tune's
sample-and-score loop in summaries per second, with where a GRPO step's time goes.

For SFT: examples from teacher-forced replays of the scenarios (State prompts), LoRA on
all linear layers, batch 4; tokens/s counts every token through forward and backward
(prompt and reaction; TRL's ``num_tokens``), after one warm-up step.

For IB-Tune: GRPO steps of the mean-field model, G summaries per history, rewarded by the
frozen policy (relevance: ``max_targets`` next reactions scored per summary) and the
compression term. A step's time is split into generation (``model.generate`` inside
GRPO), relevance scoring, compression scoring, the optimiser step, and the rest (mostly
the loss's forward and backward pass).

    python benchmarks/train_speed.py [--json] [--model smollm2] [--scenarios synthetic:0-3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from agents.backends import GenerationParams, load_backend
from agents.mean_field import LLMMeanField
from mfllm_cli.specs import iter_spec
from mfllm_env.mean_field import HistogramMeanField
from training.datasets import mean_field_examples, policy_examples, replay
from training.ib_tune import IBTuneConfig, train_mean_field
from training.run_folder import load_trainable
from training.sft import PolicySFTConfig, train_policy_sft


class StepClock(TrainerCallback):
    """Times ``model.generate`` calls, optimiser steps and whole training steps."""

    def __init__(self) -> None:
        self.generate = 0.0
        self.optimiser = 0.0
        self.steps: list[float] = []
        self._step_started = self._optimiser_started = 0.0

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
        self._step_started = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._optimiser_started = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.optimiser += time.perf_counter() - self._optimiser_started

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._step_started)


def sft_speed(args: argparse.Namespace, scenarios: list) -> dict[str, Any]:
    steps = args.sft_steps + 1
    replayed = replay(scenarios, HistogramMeanField, max_reactions=64)
    examples = list(policy_examples(replayed, context="none"))
    model, tokenizer = load_trainable(args.model)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        config = PolicySFTConfig(
            max_steps=steps, logging_steps=1, save_steps=steps, max_dev_examples=0
        )
        train_policy_sft(
            examples[: 4 * steps], [], config, Path(folder) / "sft", model=model,
            tokenizer=tokenizer, log_path=Path(folder) / "log.jsonl", progress=False,
            callbacks=[clock],
        )  # fmt: skip
        log = [json.loads(line) for line in (Path(folder) / "log.jsonl").open()]
    tokens = [row["num_tokens"] for row in log if "num_tokens" in row]
    measured_tokens = tokens[-1] - tokens[0]  # the first step is the warm-up
    measured_seconds = sum(clock.steps[1:])
    return {
        "steps_timed": len(clock.steps) - 1,
        "tokens": measured_tokens,
        "seconds": measured_seconds,
        "tokens_per_second": measured_tokens / measured_seconds,
        "seconds_per_step": measured_seconds / (len(clock.steps) - 1),
    }


def grpo_speed(args: argparse.Namespace, scenarios: list) -> dict[str, Any]:
    config = IBTuneConfig(
        mu_steps=args.grpo_steps, num_generations=args.generations, max_targets=args.targets,
        summary_tokens=args.summary_tokens, save_steps=args.grpo_steps,
    )  # fmt: skip
    backend = load_backend(args.model, threads=args.threads)
    params = GenerationParams(max_new_tokens=args.summary_tokens, temperature=0.7)
    steps = replay(
        scenarios,
        lambda: LLMMeanField(backend, params=params, seed=0),
        max_reactions=48,
        parallel=args.grpo_steps,
    )
    examples = list(
        itertools.islice(mean_field_examples(steps, max_targets=args.targets), args.grpo_steps)
    )
    model, tokenizer = load_trainable(args.model)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        summary = train_mean_field(
            examples, config, Path(folder) / "mu", model=model, tokenizer=tokenizer,
            policy_backend=backend, log_path=Path(folder) / "log.jsonl", stage="mu",
            progress=False, callbacks=[clock],
        )  # fmt: skip
    total = sum(clock.steps)
    parts = {
        "generation": clock.generate,
        "relevance_scoring": summary["relevance_seconds"],
        "compression_scoring": summary["compression_seconds"],
        "optimiser_step": clock.optimiser,
    }
    parts["loss_forward_backward_and_rest"] = total - sum(parts.values())
    return {
        "steps": len(clock.steps),
        "summaries": summary["summaries_sampled"],
        "seconds": total,
        "summaries_per_second": summary["summaries_sampled"] / total,
        "seconds_per_step": total / len(clock.steps),
        "share_of_time": {name: seconds / total for name, seconds in parts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--scenarios", default="synthetic:0-3")
    parser.add_argument("--sft-steps", type=int, default=5, help="timed SFT steps")
    parser.add_argument("--grpo-steps", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--summary-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    scenarios = list(iter_spec(args.scenarios))
    results = {
        "model": args.model,
        "scenarios": args.scenarios,
        "threads": args.threads,
        "sft": sft_speed(args, scenarios),
        "ib_tune_grpo": grpo_speed(args, scenarios),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    sft, grpo = results["sft"], results["ib_tune_grpo"]
    print(
        f"SFT (LoRA): {sft['tokens_per_second']:.0f} tokens/s trained, "
        f"{sft['seconds_per_step']:.1f} s per step of 4 examples"
    )
    print(
        f"IB-Tune GRPO: {grpo['summaries_per_second']:.3f} summaries/s, "
        f"{grpo['seconds_per_step']:.0f} s per step of {args.generations} summaries"
    )
    for name, share in grpo["share_of_time"].items():
        print(f"  {name:32s} {100 * share:5.1f}%")


if __name__ == "__main__":
    main()
