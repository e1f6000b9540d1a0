"""IB-Tune: information-bottleneck tuning of the mean-field model, then of the policy.

The mean-field model mu writes a summary m of the history X (its previous summary and the
newest (state, action) pairs). IB-Tune asks m to keep what predicts the population's next
reactions Y and to drop the rest of X (the MF-LLM paper, Mi et al., 2025):

    reward(m) = relevance_weight * relevance(m) - beta * compression(m)
    relevance(m)   = mean over the next real reactions a* of log pi(a* | s, m)
                     under the *frozen* policy pi (batched ``Backend.score``), nats per
                     reaction;
    compression(m) = log q_mu(m | X) - log r(m), nats per summary: a one-sample estimate
                     of KL(q_mu(. | X) || r), with r the prior, by default the untuned
                     model prompted with the event but without the history.

m is sampled text, so the relevance term has no gradient path into mu (the trap of the
reference implementation, which added the policy's loss to mu's loss anyway): it is a
*reward*, and mu is optimised with TRL's GRPO, G summaries per history. The two terms are
two GRPO reward functions, weighted by ``reward_weights``, so TRL logs each of them
(``rewards/relevance/mean``, ``rewards/compression/mean``) at every logging step.

Then the policy is fine-tuned (SFT, :mod:`training.sft`) on (state, m from the tuned mu)
-> real reaction. ``rounds > 1`` alternates the two stages: round r's mu is rewarded by
round r-1's policy and continues round r-1's adapter.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agents.backends.base import Backend, GenerationParams
from agents.backends.chat import render_chat
from agents.mean_field import SUMMARY_PARAMS, LLMMeanField, summary_text
from agents.policies import policy_prompt
from agents.prompts import mean_field_prior_messages
from mfllm_env.checks import check_count
from mfllm_env.scenario import Scenario
from training.datasets import draw_examples, mean_field_examples, policy_examples
from training.run_folder import (
    JsonlLogCallback,
    LoraSettings,
    cached_examples,
    check_config,
    drop_log_printer,
    resume_checkpoint,
    trainer_arguments,
    write_json,
)
from training.sft import PolicySFTConfig, train_policy_sft
from training.speed import (
    GENERATION_ENGINES,
    SpeedSettings,
    check_generation_engine,
    set_training_threads,
    use_plain_lm_head,
)


@dataclass
class IBTuneConfig:
    """Settings of an IB-Tune run (TRL style: every field has help text)."""

    rounds: int = field(default=1, metadata={"help": "Alternations of mu-GRPO then policy-SFT."})
    beta: float = field(
        default=0.02, metadata={"help": "Weight of the compression term (nats per summary)."}
    )
    relevance_weight: float = field(
        default=1.0, metadata={"help": "Weight of the relevance term (nats per reaction)."}
    )
    num_generations: int = field(
        default=4, metadata={"help": "G: summaries sampled per history (a GRPO group)."}
    )
    histories_per_step: int = field(default=1, metadata={"help": "Histories per GRPO step."})
    max_targets: int = field(
        default=8, metadata={"help": "Next real reactions scored per history (relevance)."}
    )
    summary_tokens: int = field(
        default=SUMMARY_PARAMS.max_new_tokens,
        metadata={"help": "Longest sampled summary (simulate with the same --summary-tokens)."},
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of mu."})
    prior: str = field(
        default="base",
        metadata={
            "help": "r(m): 'base' (the untuned model, prompted without the history) or "
            "'none' (no compression term)."
        },
    )
    mu_steps: int = field(default=20, metadata={"help": "GRPO steps for mu per round."})
    mu_learning_rate: float = field(default=5e-5, metadata={"help": "GRPO learning rate."})
    policy: PolicySFTConfig = field(
        default_factory=lambda: PolicySFTConfig(context="mean_field", max_steps=50),
        metadata={"help": "The policy's SFT stage (its context must be 'mean_field')."},
    )
    agents_per_step: int = field(
        default=16, metadata={"help": "Reactions per step (as simulated)."}
    )
    max_reactions: int | None = field(
        default=64, metadata={"help": "Reactions of each event replayed for training data."}
    )
    save_steps: int = field(default=5, metadata={"help": "GRPO checkpoint every N steps."})
    logging_steps: int = field(default=1, metadata={"help": "Log rewards every N steps."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, data order and LoRA."})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA."})
    speed: SpeedSettings = field(
        default_factory=SpeedSettings,
        metadata={"help": "Threads, precision, memory savers of the GRPO stage."},
    )
    generation_engine: str = field(
        default="transformers",
        metadata={
            "help": "What samples GRPO's summaries: 'transformers' (the model itself, on "
            "CPU) or 'vllm' (TRL's vLLM integration, colocated on a CUDA GPU; needs vllm "
            "installed; untested: no GPU where this was built)."
        },
    )

    def __post_init__(self) -> None:
        if self.generation_engine not in GENERATION_ENGINES:
            raise ValueError(
                f"IBTuneConfig.generation_engine must be one of {', '.join(GENERATION_ENGINES)}, "
                f"got {self.generation_engine!r}"
            )
        if self.prior not in ("base", "none"):
            raise ValueError(f"prior must be 'base' or 'none', got {self.prior!r}")
        if self.num_generations == 1:
            raise ValueError("num_generations must be >= 2 (GRPO compares summaries in a group)")
        check_config(
            self,
            counts={
                "rounds": 1,
                "num_generations": 2,
                "histories_per_step": 1,
                "max_targets": 1,
                "summary_tokens": 1,
                "mu_steps": 1,
                "agents_per_step": 1,
                "save_steps": 1,
                "logging_steps": 1,
            },
            positive=("mu_learning_rate",),
            non_negative=("beta", "relevance_weight", "temperature"),
        )
        if self.max_reactions is not None:
            check_count("IBTuneConfig.max_reactions", self.max_reactions, 1)
        if self.policy.context != "mean_field":
            raise ValueError("IB-Tune's policy stage trains the MF policy: context='mean_field'")


# -- the reward -----------------------------------------------------------------------


class RelevanceReward:
    """Mean log-likelihood (nats per reaction) of the next real reactions under the frozen
    policy ``backend``, each prompted with its agent's state and the sampled summary as
    the mean-field context: exactly the prompt the MF policy gets in simulation."""

    __name__ = "relevance"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.seconds = 0.0

    def __call__(
        self,
        completions: Sequence[str],
        observed_event: Sequence[str],
        target_states: Sequence[Sequence[str]],
        target_texts: Sequence[Sequence[str]],
        **_: Any,
    ) -> list[float]:
        started = time.perf_counter()
        prompts, texts, owner = [], [], []
        for i, completion in enumerate(completions):
            context = summary_text(completion)
            for state, text in zip(target_states[i], target_texts[i], strict=True):
                observation = {"event": observed_event[i], "state": state, "mean_field": context}
                prompts.append(policy_prompt(observation, context="mean_field"))
                texts.append(text)
                owner.append(i)
        scores = self.backend.score(prompts, texts)
        totals = np.zeros(len(completions))
        counts = np.zeros(len(completions))
        for i, score in zip(owner, scores, strict=True):
            totals[i] += score.logprob
            counts[i] += 1
        self.seconds += time.perf_counter() - started
        return (totals / np.maximum(counts, 1)).tolist()


class CompressionReward:
    """``log q_mu(m | X) - log r(m)`` in nats per summary, with q_mu the model being
    trained (set :attr:`model` to the trainer's PEFT model) and r the same model with its
    adapter disabled, prompted with the event only (:func:`mean_field_prior_messages`).
    Both are scored on the sampled token ids, without gradients and without dropout. In
    a trainer with bf16 mixed precision the model's forward runs under bf16 autocast
    (accelerate wraps it), so these values are computed in bf16 there, as the loss is."""

    __name__ = "compression"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.model: Any = None
        self.seconds = 0.0

    def __call__(
        self,
        prompts: Sequence[str],
        completion_ids: Sequence[Sequence[int]],
        event: Sequence[str],
        language: Sequence[str],
        **_: Any,
    ) -> list[float]:
        import torch

        if self.model is None:
            raise RuntimeError("CompressionReward.model is not set (the trainer's model)")
        started = time.perf_counter()
        # Tokenised as GRPO tokenises its prompts, so q is scored on what was sampled from.
        prompt_ids = self.tokenizer(text=list(prompts))["input_ids"]
        prior_texts = [
            render_chat(self.tokenizer, mean_field_prior_messages(e, language=lang))
            for e, lang in zip(event, language, strict=True)
        ]
        prior_ids = self.tokenizer(text=prior_texts)["input_ids"]
        targets = [list(ids) for ids in completion_ids]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                q = shared_prompt_logprobs(self.model, prompt_ids, targets)
                with self.model.disable_adapter():
                    r = shared_prompt_logprobs(self.model, prior_ids, targets)
        finally:
            self.model.train(was_training)
        self.seconds += time.perf_counter() - started
        return [float(a.sum() - b.sum()) for a, b in zip(q, r, strict=True)]


def shared_prompt_logprobs(
    model: Any, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
) -> list[Any]:
    """Log-probability of each target token after its prompt (one 1-d tensor per row),
    running each distinct prompt through the model once: the G summaries of a GRPO group
    share their history, so their prompt's key/value cache is computed once and repeated
    for the group's rows (about G times less work than scoring each row on its own)."""
    import torch

    from agents.backends.transformers_backend import CACHE_ARGUMENT

    device = model.device
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, prompt in enumerate(prompts):
        groups.setdefault(tuple(prompt), []).append(row)
    results: list[Any] = [None] * len(prompts)
    for prompt, rows in groups.items():
        prefix = model(
            input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1
        )
        cache = prefix[CACHE_ARGUMENT]
        cache.batch_repeat_interleave(len(rows))
        lengths = [len(targets[row]) for row in rows]
        width = max(max(lengths), 1)
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        mask = torch.zeros((len(rows), len(prompt) + width), dtype=torch.long, device=device)
        mask[:, : len(prompt)] = 1
        for i, row in enumerate(rows):
            ids[i, : lengths[i]] = torch.tensor(targets[row], dtype=torch.long, device=device)
            mask[i, len(prompt) : len(prompt) + lengths[i]] = 1
        logits = model(input_ids=ids, attention_mask=mask, **{CACHE_ARGUMENT: cache}).logits
        # Target token k is predicted by the prompt's last position (k = 0) or by target
        # position k - 1.
        first = prefix.logits[:, -1:].expand(len(rows), 1, -1)
        logprobs = torch.log_softmax(torch.cat([first, logits[:, :-1]], dim=1).float(), dim=-1)
        picked = logprobs.gather(2, ids[:, :, None])[:, :, 0]
        for i, row in enumerate(rows):
            results[row] = picked[i, : lengths[i]]
    return results


# -- the stages -----------------------------------------------------------------------


def _summariser(backend: Backend, config: IBTuneConfig) -> Callable[[], LLMMeanField]:
    """Fresh LLM mean fields on ``backend``, writing summaries as the config says."""
    params = GenerationParams(max_new_tokens=config.summary_tokens, temperature=config.temperature)
    return partial(LLMMeanField, backend, params=params, seed=config.seed)


def _replayed(
    scenarios: Sequence[Scenario],
    backend: Backend,
    config: IBTuneConfig,
    build: Callable[..., Iterator[dict[str, Any]]],
    count: int,
    **options: Any,
) -> list[dict[str, Any]]:
    """:func:`~training.datasets.draw_examples` over a lazy replay with an LLM mean field
    on ``backend``."""
    return draw_examples(
        scenarios,
        _summariser(backend, config),
        build,
        count,
        agents_per_step=config.agents_per_step,
        max_reactions=config.max_reactions,
        seed=config.seed,
        lazy=True,
        **options,
    )


def _trainable(load_model: Callable[[], tuple[Any, Any]], adapter: Path | None) -> tuple[Any, Any]:
    """A fresh base model and its tokenizer; with ``adapter``, that adapter on it, trainable
    (a later round continues the previous round's adapter)."""
    from peft import PeftModel

    model, tokenizer = load_model()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    return model, tokenizer


def train_mean_field(
    examples: list[dict[str, Any]],
    config: IBTuneConfig,
    stage_dir: Path,
    *,
    model: Any,
    tokenizer: Any,
    policy_backend: Backend,
    log_path: Path,
    stage: str,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """GRPO on mu with the IB reward; the adapter goes to ``stage_dir/adapter``.

    ``model`` is the base model (a fresh LoRA adapter is added) or a PEFT model with a
    trainable adapter; ``policy_backend`` is the frozen policy that scores relevance;
    ``callbacks`` are extra ``transformers.TrainerCallback``s. Torch runs on
    ``config.speed.threads`` threads (one by default: see :mod:`training.speed`). The
    summaries are sampled, by default, by the simulation's decoding loop on a copy of the
    model refreshed with the adapter's weights every step
    (:func:`training.shared_history.sampling_engine`; ``config.speed.fast_sampling``), and
    the relevance reward is scored with the frozen policy's generation weights (bf16 where
    the CPU has bf16 units; ``config.speed.relevance_precision``); with
    ``config.generation_engine == "vllm"`` the summaries are sampled by vLLM colocated
    with training on the GPU (TRL's ``use_vllm``; untested here)."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import GRPOConfig, GRPOTrainer

    from training.shared_history import (
        SharedHistoryGRPOTrainer,
        SharedHistoryRollout,
        sampling_engine,
    )

    check_generation_engine(config.generation_engine)
    set_training_threads(config.speed.threads)
    vllm = config.generation_engine == "vllm"
    if not examples:
        raise ValueError(
            "no mean-field examples: IB-Tune needs events with more than one step of "
            f"reactions (> {config.agents_per_step})"
        )
    rows = [
        {
            "prompt": render_chat(tokenizer, e["prompt"]),
            "event": e["event"],
            "observed_event": e["observed_event"],
            "language": e["language"],
            "target_states": e["target_states"],
            "target_texts": e["target_texts"],
        }
        for e in examples
    ]
    scorer = policy_backend
    if config.speed.relevance_precision == "auto" and hasattr(
        policy_backend, "scoring_with_generation_weights"
    ):
        scorer = policy_backend.scoring_with_generation_weights()
    relevance = RelevanceReward(scorer)
    compression = CompressionReward(tokenizer)
    funcs: list[Any] = [relevance]
    weights = [config.relevance_weight]
    if config.prior != "none":
        funcs.append(compression)
        weights.append(-config.beta)
    args = GRPOConfig(
        **trainer_arguments(
            output_dir=stage_dir / "checkpoints",
            max_steps=config.mu_steps,
            batch_size=config.num_generations * config.histories_per_step,
            learning_rate=config.mu_learning_rate,
            save_steps=config.save_steps,
            logging_steps=config.logging_steps,
            seed=config.seed,
            progress=progress,
            gradient_checkpointing=config.speed.gradient_checkpointing,
            bf16=config.speed.bf16,
            use_cpu=not vllm,
        ),
        num_generations=config.num_generations,
        max_completion_length=config.summary_tokens,
        temperature=config.temperature,
        top_k=50,
        top_p=0.95,
        reward_weights=weights,
        beta=0.0,  # no reference model: the compression term is the regulariser
        use_vllm=vllm,
        vllm_mode="colocate",
    )
    share = config.speed.share_history
    rollout = None
    if share and not vllm:
        # The engine copies the model before the trainer wraps it.
        engine = sampling_engine(model, tokenizer) if config.speed.fast_sampling else None
        rollout = SharedHistoryRollout(tokenizer, engine=engine)
    trainer = (SharedHistoryGRPOTrainer if share else GRPOTrainer)(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=None if isinstance(model, PeftModel) else config.lora.peft_config(),
        callbacks=[JsonlLogCallback(log_path, stage), *callbacks],
        rollout_func=rollout,
    )
    drop_log_printer(trainer, progress)
    if not config.speed.fused_lm_head:
        use_plain_lm_head(trainer.model.get_base_model(), temperature=trainer.temperature)
    compression.model = trainer.model
    checkpoint = resume_checkpoint(stage_dir / "checkpoints", log_path, stage, resume)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    trainer.save_model(str(stage_dir / "adapter"))
    logged = [e for e in trainer.state.log_history if "rewards/relevance/mean" in e]
    summary = {
        "stage": stage,
        "histories": len(rows),
        "steps": trainer.state.global_step,
        "summaries_sampled": trainer.state.global_step * args.per_device_train_batch_size,
        "train_seconds": seconds,
        "relevance_seconds": relevance.seconds,
        "compression_seconds": compression.seconds,
        # None where TRL samples (inside the trainer: not timed here)
        "generation_seconds": rollout.seconds if rollout else None,
        "resumed_from": checkpoint.name if checkpoint else None,
    }
    for key in ("reward", "rewards/relevance/mean", "rewards/compression/mean"):
        values = [e[key] for e in logged if key in e]
        if values:
            summary[f"{key} first"] = values[0]
            summary[f"{key} last"] = values[-1]
    write_json(stage_dir / "summary.json", summary)  # written last: the stage is done
    return summary


def run_ib_tune(
    train_scenarios: Sequence[Scenario],
    dev_scenarios: Sequence[Scenario],
    config: IBTuneConfig,
    out: Path,
    *,
    load_model: Callable[[], tuple[Any, Any]],
    load_backend: Callable[[Path | None], Backend],
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """All rounds of IB-Tune into the run folder ``out`` (see :mod:`training.run_folder`).

    ``load_model()`` gives a fresh trainable base model and its tokenizer;
    ``load_backend(adapter)`` a frozen backend on the base model with ``adapter`` merged
    (``None``: the untuned model). A stage whose adapter exists is skipped on resume; a
    stage with checkpoints continues from the newest. The final adapters are copied to
    ``out/adapters/mean_field`` and ``out/adapters/policy``.
    """

    log_path = out / "log.jsonl"
    rng = np.random.default_rng(config.seed)
    order = [train_scenarios[i] for i in rng.permutation(len(train_scenarios))]
    summaries: list[dict[str, Any]] = []
    mu_adapter: Path | None = None
    policy_adapter: Path | None = None
    for round_index in range(1, config.rounds + 1):
        round_dir = out / f"round_{round_index}"
        # Stage 1: mu by GRPO, rewarded by the frozen policy of the previous round.
        mu_dir = round_dir / "mean_field"
        if (mu_dir / "summary.json").exists():
            summaries.append(json.loads((mu_dir / "summary.json").read_text()))
        else:
            history_backend = load_backend(mu_adapter)
            examples = cached_examples(
                out / "data" / f"round_{round_index}_mean_field.jsonl",
                partial(
                    _replayed,
                    order,
                    history_backend,
                    config,
                    mean_field_examples,
                    config.mu_steps * config.histories_per_step,
                    max_targets=config.max_targets,
                ),
            )
            del history_backend
            model, tokenizer = _trainable(load_model, mu_adapter)
            summaries.append(
                train_mean_field(
                    examples,
                    config,
                    mu_dir,
                    model=model,
                    tokenizer=tokenizer,
                    policy_backend=load_backend(policy_adapter),
                    log_path=log_path,
                    stage=f"round_{round_index}/mean_field",
                    resume=resume,
                    progress=progress,
                )
            )
        mu_adapter = mu_dir / "adapter"
        # Stage 2: the MF policy by SFT on summaries written by the tuned mu.
        policy_dir = round_dir / "policy"
        if (policy_dir / "summary.json").exists():
            summaries.append(json.loads((policy_dir / "summary.json").read_text()))
        else:
            mu_backend = load_backend(mu_adapter)
            sft = config.policy
            examples = cached_examples(
                out / "data" / f"round_{round_index}_policy_train.jsonl",
                partial(
                    _replayed,
                    order,
                    mu_backend,
                    config,
                    policy_examples,
                    sft.max_steps * sft.batch_size,
                    context="mean_field",
                    min_step=1,
                ),
            )
            dev = cached_examples(
                out / "data" / f"round_{round_index}_policy_dev.jsonl",
                partial(
                    _replayed,
                    dev_scenarios,
                    mu_backend,
                    config,
                    policy_examples,
                    sft.max_dev_examples,
                    context="mean_field",
                    min_step=1,
                ),
            )
            del mu_backend
            model, tokenizer = _trainable(load_model, policy_adapter)
            summaries.append(
                train_policy_sft(
                    examples,
                    dev,
                    sft,
                    policy_dir,
                    model=model,
                    tokenizer=tokenizer,
                    log_path=log_path,
                    stage=f"round_{round_index}/policy",
                    resume=resume,
                    progress=progress,
                )
            )
        policy_adapter = policy_dir / "adapter"
    for name, adapter in (("mean_field", mu_adapter), ("policy", policy_adapter)):
        target = out / "adapters" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(adapter, target)
    return {"stages": summaries}
