"""Training (TRL + PEFT) on tiny config-built models: data builders, SFT, IB-Tune's reward
and GRPO stage, the run folder and resume; and IB-Tune's compression term on SmolLM2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pytest
from transformers import TrainerCallback

from agents.backends.base import GenerationParams
from agents.backends.transformers_backend import TransformersBackend
from agents.mean_field import LLMMeanField
from agents.policies import LLMPolicy, reference_text
from agents.prompts import mean_field_messages
from mfllm_cli.main import main
from mfllm_env import PopulationEnv, synthetic_scenario
from mfllm_env.mean_field import HistogramMeanField
from tests.conftest import PROJECT_ROOT, build_tiny_model_and_tokenizer
from training.datasets import (
    check_disjoint,
    draw_examples,
    event_key,
    mean_field_examples,
    policy_examples,
    replay,
    split_by_event,
)
from training.ib_tune import (
    CompressionReward,
    IBTuneConfig,
    RelevanceReward,
    train_mean_field,
)
from training.run_folder import LoraSettings
from training.sft import PolicySFTConfig, train_policy_sft
from training.speed import SpeedSettings, cpu_has_bf16_units, use_plain_lm_head

FAST = {"max_new_tokens": 6, "temperature": 1.0}


def _scenarios(n=3, reactions=40):
    return [synthetic_scenario(seed=s, n_reactions=reactions) for s in range(n)]


def _tiny_backend(adapter=None):
    model, tokenizer = build_tiny_model_and_tokenizer()
    return TransformersBackend(model, tokenizer=tokenizer, adapter=adapter, threads=1)


def _parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(before, model):
    """LoRA B matrices that moved away from zero (PEFT initialises them to zero, so a
    trained adapter has some), and frozen weights that changed (compared by name with
    the weights before PEFT wrapped the model)."""
    lora, frozen = [], []
    for name, p in model.named_parameters():
        if "lora_B" in name:
            if p.detach().abs().max() > 0:
                lora.append(name)
            continue
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        old = before[key]
        if not np.array_equal(old.numpy(), p.detach().numpy()):
            frozen.append(name)
    return lora, frozen


# -- data ------------------------------------------------------------------------------


def test_policy_examples_are_the_prompts_simulation_sends(tiny_backend):
    """Teacher-forced replay gives, step by step, the prompts an LLM policy receives in
    the environment when the population acts as it really did."""
    scenario = synthetic_scenario(seed=0, n_reactions=40)
    policy = LLMPolicy(tiny_backend, context="mean_field")
    env = PopulationEnv(scenario, warmup=0, mean_field=HistogramMeanField())
    observations, _ = env.reset(seed=0)
    expected = []
    while env.agents:
        real = env.reference_texts()
        expected += [(policy.prompt(observations[a]), reference_text(real[a])) for a in env.agents]
        observations = env.step(real)[0]
    built = list(policy_examples(replay([scenario], HistogramMeanField), context="mean_field"))
    assert [(e["prompt"], e["completion"]) for e in built] == expected
    assert len(built) == 40 and {e["step"] for e in built} == {0, 1, 2}


def test_mean_field_examples_pair_history_with_the_next_real_reactions(tiny_backend):
    scenario = synthetic_scenario(seed=1, n_reactions=40)
    steps = list(replay([scenario], lambda: LLMMeanField(tiny_backend, seed=0), agents_per_step=16))
    examples = list(mean_field_examples(steps, max_targets=5))
    assert [e["step"] for e in examples] == [0, 1]  # step 2 (the last) has no next step
    first = examples[0]
    # The history X of step 0: no summary yet and step 0's real reactions.
    states = [steps[0].observations[a]["state"] for a in steps[0].observations]
    actions = list(steps[0].real_texts.values())
    assert first["prompt"] == mean_field_messages(scenario.event_text, "", states, actions)
    # Y: the first 5 reactions of step 1, with the states their authors had then.
    assert first["target_texts"] == [reference_text(r.text) for r in scenario.reactions[16:21]]
    assert first["target_states"] == [
        steps[1].observations[a]["state"] for a in list(steps[1].observations)[:5]
    ]
    # Step 1's history starts from the summary the model wrote after step 0.
    assert "Summary so far:\n" in examples[1]["prompt"][1]["content"]
    assert "none yet" not in examples[1]["prompt"][1]["content"]


def _states(steps):
    return [[obs["state"] for obs in step.observations.values()] for step in steps]


def test_scheduled_sampling_feeds_the_policys_own_actions(tiny_backend):
    scenario = synthetic_scenario(seed=2, n_reactions=48)
    policy = LLMPolicy(tiny_backend, context="mean_field", params=GenerationParams(**FAST))
    steps = list(replay([scenario], HistogramMeanField, policy=policy, sampling_prob=1.0, seed=3))
    assert all(s.sampled for s in steps)
    again = list(replay([scenario], HistogramMeanField, policy=policy, sampling_prob=1.0, seed=3))
    assert _states(steps) == _states(again)  # same seed, same replay
    # Authors who post twice carry their earlier post in their state: under scheduled
    # sampling it is what the policy wrote, not what they really wrote.
    forced = list(replay([scenario], HistogramMeanField))
    assert _states(steps)[0] == _states(forced)[0]
    assert _states(steps)[1:] != _states(forced)[1:]
    with pytest.raises(ValueError, match="needs a policy"):
        list(replay([scenario], HistogramMeanField, sampling_prob=0.5))


def test_split_by_event_never_leaks_an_event(rumoureval_dir):
    from mfllm_env.loaders import iter_scenarios

    threads = list(iter_scenarios("rumoureval", rumoureval_dir, split="train", episode="thread"))
    train, dev = split_by_event(threads, 0.25, seed=1)
    assert train and dev and len(train) + len(dev) == len(threads)
    assert {event_key(s) for s in train}.isdisjoint(event_key(s) for s in dev)
    check_disjoint(train, dev)
    with pytest.raises(ValueError, match="share"):
        check_disjoint(train, train[:1])
    with pytest.raises(ValueError, match="two events"):
        split_by_event(threads[:1])


# -- SFT -----------------------------------------------------------------------------------


def test_sft_trains_lora_weights_only_and_logs(tmp_path):
    examples = list(policy_examples(replay(_scenarios(2), HistogramMeanField), context="none"))
    model, tokenizer = build_tiny_model_and_tokenizer()
    before = _parameters(model)
    config = PolicySFTConfig(max_steps=3, logging_steps=1, save_steps=3, max_dev_examples=8)
    summary = train_policy_sft(
        examples[:40],
        examples[40:],
        config,
        tmp_path / "sft",
        model=model,
        tokenizer=tokenizer,
        log_path=tmp_path / "log.jsonl",
        progress=False,
    )
    trained = [p for p in (tmp_path / "sft").rglob("adapter_model.safetensors")]
    assert (tmp_path / "sft" / "adapter" / "adapter_config.json").is_file() and trained
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2, 3]
    assert all(np.isfinite(row["loss"]) for row in log if "loss" in row)
    assert summary["dev_nll_per_token_before"] > 0 and summary["dev_nll_per_token_after"] > 0
    # PEFT injects the adapters in place: compare each weight with its value before.
    lora, frozen = _changed(before, model)
    assert lora, "no LoRA weight changed"
    assert not frozen, f"frozen weights changed: {frozen[:3]}"


# -- IB-Tune ---------------------------------------------------------------------------


def _read_summaries(model, tokenizer, pairs, steps=150):
    """Teach the tiny model, by plain full fine-tuning, to answer each summary with its
    reaction, so that it reads the mean-field context (what a tuned policy does)."""
    import torch

    from agents.backends.chat import render_chat
    from agents.backends.transformers_backend import continuation_logprobs
    from agents.policies import policy_prompt

    torch.manual_seed(0)
    prompts, targets = [], []
    for state in ("User a, 5 followers.", "User b, 80 followers.", "User c, 3 followers."):
        for summary, reaction in pairs:
            observation = {"event": "The minister resigned.", "state": state, "mean_field": summary}
            text = render_chat(tokenizer, policy_prompt(observation, context="mean_field"))
            prompts.append(tokenizer(text, add_special_tokens=False).input_ids)
            targets.append(tokenizer(reaction, add_special_tokens=False).input_ids)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        logprobs = continuation_logprobs(model, prompts, targets, tokenizer.pad_token_id)
        loss = -torch.cat(logprobs).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return float(loss.detach())


def test_relevance_rewards_the_summary_that_states_the_right_shares():
    deny = ("Most users deny it and call it fake.", "This is fake news.")
    support = ("Most users support it and confirm it.", "Confirmed, it is true.")
    model, tokenizer = build_tiny_model_and_tokenizer()
    final_loss = _read_summaries(model, tokenizer, [deny, support])
    assert final_loss < 0.5, f"the tiny policy did not learn to read summaries ({final_loss})"
    relevance = RelevanceReward(TransformersBackend(model, tokenizer=tokenizer, threads=1))
    states = ["User d, 12 followers.", "User e, 7 followers."]
    for truth, wrong in ((deny, support), (support, deny)):
        rewards = relevance(
            completions=[truth[0], wrong[0]],
            observed_event=["The minister resigned."] * 2,
            target_states=[states, states],
            target_texts=[[truth[1]] * 2, [truth[1]] * 2],
        )
        assert rewards[0] > rewards[1] + 1.0, rewards


def test_compression_grows_with_the_summarys_dependence_on_history():
    """SmolLM2, untuned (a fresh LoRA adapter is zero at the start): a summary that
    repeats what the history says is far more likely given the history than without it;
    a generic one is about as likely either way."""
    from peft import get_peft_model

    from agents.backends.chat import render_chat
    from training.run_folder import LoraSettings, load_trainable

    model, tokenizer = load_trainable("smollm2")
    model = get_peft_model(model, LoraSettings().peft_config())
    event = "Reports say the Springfield mayor resigned."
    replies = [
        "The zebra escaped from the Springfield zoo and the mayor resigned over it.",
        "Zebra chaos at the zoo, mayor quits, unbelievable.",
        "So the mayor resigned because of the zebra escape?",
    ]
    history = mean_field_messages(event, "", ["User a.", "User b.", "User c."], replies)
    copied = "Users say the mayor resigned after a zebra escaped from the Springfield zoo."
    generic = "Users are reacting to the post."
    compression = CompressionReward(tokenizer)
    compression.model = model
    ids = [tokenizer(text, add_special_tokens=False).input_ids for text in (copied, generic)]
    values = compression(
        prompts=[render_chat(tokenizer, history)] * 2,
        completion_ids=ids,
        event=[event] * 2,
        language=["en"] * 2,
    )
    assert values[0] > values[1] + 5.0, values
    assert values[0] > 0


def test_a_lazy_draw_of_mean_field_examples_spreads_over_every_event(tiny_backend):
    """IB-Tune's histories: a lazy draw steps every event together, so the examples are
    not all from the first eight events (12 events of 10 steps; 40 examples read)."""
    params = GenerationParams(max_new_tokens=4)
    examples = draw_examples(
        _scenarios(12, reactions=160),
        partial(LLMMeanField, tiny_backend, params=params, seed=0),
        mean_field_examples,
        20,
        lazy=True,
        max_targets=2,
    )
    assert len(examples) == 20
    assert len({e["scenario_id"] for e in examples}) > 8
    assert max(e["step"] for e in examples) <= 3  # the first rounds of every event


def test_grpo_stage_logs_both_terms_and_trains_lora_only(tmp_path, tiny_backend):
    steps = replay(_scenarios(2), lambda: LLMMeanField(tiny_backend, seed=0))
    examples = list(mean_field_examples(steps, max_targets=3))
    model, tokenizer = build_tiny_model_and_tokenizer()
    before = _parameters(model)
    config = IBTuneConfig(mu_steps=2, summary_tokens=8, save_steps=2, num_generations=3)
    summary = train_mean_field(
        examples,
        config,
        tmp_path / "mu",
        model=model,
        tokenizer=tokenizer,
        policy_backend=_tiny_backend(),
        log_path=tmp_path / "log.jsonl",
        stage="mu",
        progress=False,
    )
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    logged = [row for row in log if "rewards/relevance/mean" in row]
    assert [row["step"] for row in logged] == [1, 2]
    assert all("rewards/compression/mean" in row for row in logged)
    assert all(row["rewards/relevance/mean"] < 0 for row in logged)  # log-likelihoods
    # The total is relevance - beta * compression, as configured.
    for row in logged:
        expected = row["rewards/relevance/mean"] - 0.02 * row["rewards/compression/mean"]
        assert row["reward"] == pytest.approx(expected, abs=1e-3)
    assert summary["summaries_sampled"] == 6
    assert (tmp_path / "mu" / "adapter" / "adapter_config.json").is_file()
    lora, frozen = _changed(before, model)
    assert lora and not frozen


# -- the command line and resume -------------------------------------------------------


def _train_argv(model_dir, out, *extra):
    return [
        "train",
        *extra,
        "--scenarios",
        "synthetic:0-3",
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--max-reactions",
        "32",
        "--threads",
        "1",
        "--no-progress",
    ]


def test_cli_sft_then_simulate_with_the_adapter(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    assert main([*_train_argv(tiny_model_dir, out, "sft"), "--max-steps", "2"]) == 0
    assert (out / "policy" / "adapter" / "adapter_config.json").is_file()
    assert (out / "report.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["examples_trained"] == 8
    # The data is drawn for the steps asked: 8 distinct examples, each trained once.
    assert summary["train_examples"] == 8 and summary["epochs"] == 1.0
    printed, err = capsys.readouterr()
    # What training sees: episodes cut to --max-reactions 32 (the scenarios hold 300 each).
    assert "3 training and 1 dev scenario(s) (96 and 32 reactions, at most 32 per" in err
    assert "simulate with" in printed
    held = "config.json, data/, log.jsonl, policy/, report.png, summary.json"
    assert f"wrote {out}/ ({held})" in printed  # what the folder holds (no adapters/)
    # Same folder again without --resume: refused, nothing overwritten.
    assert main([*_train_argv(tiny_model_dir, out, "sft"), "--max-steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    sim = tmp_path / "sim"
    argv = ["simulate", "--scenario", "synthetic:5", "--policy", "sft", "--model"]
    argv += [str(tiny_model_dir), "--adapter", str(out / "policy" / "adapter")]
    argv += ["--max-reactions", "32", "--warmup", "16", "--max-new-tokens", "4"]
    assert main([*argv, "--no-progress", "--out", str(sim)]) == 0
    assert json.loads((sim / "config.json").read_text())["adapter"].endswith("adapter")


@pytest.mark.parametrize("context", ["recent", "popular"])
def test_cli_sft_trains_the_recent_and_popular_policies(tmp_path, tiny_model_dir, capsys, context):
    out = tmp_path / context
    argv = [*_train_argv(tiny_model_dir, out, "sft"), "--context", context, "--k", "3"]
    assert main([*argv, "--max-steps", "1"]) == 0, capsys.readouterr().err
    assert (out / "policy" / "adapter" / "adapter_config.json").is_file()
    assert f"simulate with: mfllm simulate --policy {context} " in capsys.readouterr().out
    header = {"recent": "The most recent replies:", "popular": "Replies from the most-followed"}
    lines = (out / "data" / "train.jsonl").read_text().splitlines()
    prompts = [json.dumps(json.loads(line)["prompt"]) for line in lines]
    assert prompts and all(header[context] in p for p in prompts)


def test_cli_ib_tune_writes_both_adapters_for_simulate(tmp_path, tiny_model_dir):
    out = tmp_path / "ib"
    argv = _train_argv(tiny_model_dir, out, "ib-tune")
    argv += ["--max-steps", "2", "--policy-steps", "2", "--summary-tokens", "8"]
    argv += ["--generations", "2", "--max-targets", "2", "--save-steps", "1"]
    assert main(argv) == 0
    adapters = out / "adapters"
    assert (adapters / "mean_field" / "adapter_config.json").is_file()
    assert (adapters / "policy" / "adapter_config.json").is_file()
    stages = json.loads((out / "summary.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["round_1/mean_field", "round_1/policy"]
    # Resume as if the run had died after the policy stage's first checkpoint: mu is not
    # retrained, the policy stage continues from that checkpoint.
    (out / "round_1" / "policy" / "summary.json").unlink()
    shutil.rmtree(out / "round_1" / "policy" / "adapter")
    shutil.rmtree(out / "round_1" / "policy" / "checkpoints" / "checkpoint-2")
    assert main([*argv, "--resume"]) == 0
    again = json.loads((out / "summary.json").read_text())["stages"]
    assert again[0] == stages[0]
    assert again[1]["resumed_from"] == "checkpoint-1" and again[1]["steps"] == 2
    sim = tmp_path / "sim"
    argv = ["simulate", "--scenario", "synthetic:5", "--policy", "mf", "--mean-field", "llm"]
    argv += ["--model", str(tiny_model_dir), "--adapter", str(adapters / "policy")]
    argv += ["--mean-field-adapter", str(adapters / "mean_field"), "--max-reactions", "32"]
    argv += ["--warmup", "16", "--max-new-tokens", "4", "--summary-tokens", "4"]
    assert main([*argv, "--no-progress", "--out", str(sim)]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["sft", "--max-steps", "0"], "argument --max-steps: must be an integer >= 1"),
        (["sft", "--sampling-prob", "0.5"], "need --context mean_field"),
        (["ib-tune", "--generations", "1"], "argument --generations: must be an integer >= 2"),
    ],
)
def test_cli_reports_bad_training_options(tmp_path, tiny_model_dir, capsys, extra, message):
    method, *rest = extra
    assert main([*_train_argv(tiny_model_dir, tmp_path / "run", method), *rest]) == 2
    assert message in capsys.readouterr().err


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, tiny_model_dir):
    """A real interruption: the training process is killed after its first checkpoint,
    and ``--resume`` finishes the run from there."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "mfllm_cli.main"]
    argv += _train_argv(tiny_model_dir, out, "sft")
    argv += ["--max-steps", "40", "--save-steps", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = out / "policy" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert state.exists(), process.stderr.read().decode()[-2000:]
    assert not (out / "policy" / "adapter").exists()  # it did not finish
    done = sorted(int(p.name.split("-")[1]) for p in state.parents[1].glob("checkpoint-*"))
    resumed = [*_train_argv(tiny_model_dir, out, "sft"), "--max-steps", "40", "--save-steps", "2"]
    assert main([*resumed, "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == f"checkpoint-{done[-1]}"
    assert summary["steps"] == 40
    assert (out / "policy" / "adapter" / "adapter_config.json").is_file()


def test_shared_prompt_scoring_matches_scoring_each_row():
    """The compression term runs a GRPO group's common history once: the log-probs are
    those of scoring every row on its own."""
    import torch

    from agents.backends.transformers_backend import continuation_logprobs
    from training.ib_tune import shared_prompt_logprobs

    model, _ = build_tiny_model_and_tokenizer()
    model.eval()
    prompts = [[5, 6, 7, 8, 9]] * 3 + [[10, 11, 12]]
    targets = [[20, 21, 22], [23], [24, 25, 26, 27], [30, 31]]
    with torch.no_grad():
        shared = shared_prompt_logprobs(model, prompts, targets)
        alone = continuation_logprobs(model, prompts, targets, pad_id=0)
    for a, b, target in zip(shared, alone, targets, strict=True):
        assert a.shape == (len(target),)
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PolicySFTConfig(context="x"), "PolicySFTConfig.context must be one of none"),
        (lambda: PolicySFTConfig(max_steps=0), "PolicySFTConfig.max_steps must be an integer >= 1"),
        (lambda: PolicySFTConfig(batch_size=1.5), "PolicySFTConfig.batch_size must be an integer"),
        (lambda: PolicySFTConfig(learning_rate=float("nan")), "learning_rate must be a finite"),
        (lambda: PolicySFTConfig(seed=-1), "PolicySFTConfig.seed must be an integer >= 0"),
        (lambda: IBTuneConfig(beta=float("nan")), "IBTuneConfig.beta must be a finite number >= 0"),
        (lambda: IBTuneConfig(max_reactions=0), "IBTuneConfig.max_reactions must be an integer"),
        (lambda: IBTuneConfig(mu_learning_rate=0), "mu_learning_rate must be a finite number > 0"),
        (lambda: LoraSettings(dropout=1.0), "LoraSettings.dropout must be a finite number >= 0"),
        (lambda: LoraSettings(r=1.5), "LoraSettings.r must be an integer >= 1"),
        (lambda: LoraSettings(target_modules=""), "LoraSettings.target_modules must be"),
        (lambda: SpeedSettings(threads=0), "SpeedSettings.threads must be an integer >= 1"),
        (lambda: SpeedSettings(precision="fp16"), "SpeedSettings.precision must be one of"),
        (lambda: SpeedSettings(fused_lm_head=1), "SpeedSettings.fused_lm_head must be True"),
        (lambda: SpeedSettings(fast_sampling="yes"), "SpeedSettings.fast_sampling must be True"),
        (
            lambda: SpeedSettings(relevance_precision="bf16"),
            "SpeedSettings.relevance_precision must be one of auto, fp32",
        ),
        (lambda: PolicySFTConfig(group_by_length="yes"), "group_by_length must be True or"),
        (lambda: IBTuneConfig(generation_engine="vLLM"), "generation_engine must be one of"),
        (lambda: split_by_event([], "0.2"), r"dev_fraction must be in \(0, 1\), got '0.2'"),
        (lambda: split_by_event([], 0.5, seed=-1), "seed must be None or an integer >= 0, got -1"),
    ],
)
def test_training_configs_name_a_field_with_an_odd_value(build, message):
    """These passed (a NaN learning rate trains NaN weights; context 'x' trained the
    State-SFT prompt) or failed deep inside numpy, torch or TRL."""
    with pytest.raises(ValueError, match=message):
        build()


# -- speed settings ----------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_plain_lm_head_gives_what_trls_fused_head_gives(temperature):
    """The plain head projects only the labelled positions, once; log-probabilities,
    entropies, top-1 flags, the loss and the gradients are those of TRL's fused head."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    models = []
    for plain in (False, True):
        model, _ = build_tiny_model_and_tokenizer()
        add_fused_lm_head(model, temperature, outputs=("log_probs", "entropy", "is_top1"))
        if plain:
            use_plain_lm_head(model, temperature)
        models.append(model)
    ids = torch.randint(3, 300, (3, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[2, 10:] = -100  # padding
    outputs = []
    for model in models:
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        outputs.append(out)
    fused, plain = outputs
    assert torch.equal(fused.label_mask, plain.label_mask)
    assert torch.equal(fused.is_top1, plain.is_top1)
    for name in ("loss", "log_probs", "entropy"):
        assert torch.allclose(getattr(fused, name), getattr(plain, name), atol=1e-5), name
    grads = [dict(m.named_parameters())["model.layers.0.mlp.up_proj.weight"].grad for m in models]
    assert grads[0].abs().max() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)
    # Calls without the fused head (generation) are the model's own.
    assert torch.equal(models[0](input_ids=ids).logits, models[1](input_ids=ids).logits)


def test_plain_lm_head_needs_trls_head_first():
    model, _ = build_tiny_model_and_tokenizer()
    with pytest.raises(ValueError, match="build the trainer first"):
        use_plain_lm_head(model)


class _Seen(TrainerCallback):
    """Notes how training runs when it begins."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch

        self.threads = torch.get_num_threads()
        self.checkpointing = model.is_gradient_checkpointing
        self.dropouts = {
            type(module).__name__
            for name, module in model.named_modules()
            if name.endswith("lora_dropout.default")
        }
        self.bf16 = args.bf16


def test_trainers_default_to_one_thread_no_dropout_no_checkpointing(tmp_path, tiny_backend):
    """SFT and IB-Tune's GRPO train on one torch thread whatever was set before, with no
    LoRA dropout, no activation checkpointing, bf16 autocast only on CPUs with bf16 units;
    each is a setting."""
    import torch

    examples = list(policy_examples(replay(_scenarios(1), HistogramMeanField), context="none"))
    mf_examples = list(
        mean_field_examples(replay(_scenarios(1), lambda: LLMMeanField(tiny_backend)))
    )
    def sft(config, seen):
        model, tokenizer = build_tiny_model_and_tokenizer()
        train_policy_sft(
            examples[:4], [], config, tmp_path / "sft", model=model, tokenizer=tokenizer,
            log_path=tmp_path / "log.jsonl", progress=False, callbacks=[seen],
        )  # fmt: skip

    def grpo(config, seen):
        model, tokenizer = build_tiny_model_and_tokenizer()
        train_mean_field(
            mf_examples[:1], config, tmp_path / "mu", model=model, tokenizer=tokenizer,
            policy_backend=tiny_backend, log_path=tmp_path / "log.jsonl", stage="mu",
            progress=False, callbacks=[seen],
        )  # fmt: skip

    runs = {"sft": sft, "grpo": grpo}
    defaults = {
        "sft": PolicySFTConfig(max_steps=1, batch_size=2, save_steps=1, max_dev_examples=0),
        "grpo": IBTuneConfig(mu_steps=1, summary_tokens=4, save_steps=1, num_generations=2),
    }
    for name, run in runs.items():
        torch.set_num_threads(2)
        seen = _Seen()
        run(defaults[name], seen)
        assert seen.threads == 1 and not seen.checkpointing, name
        assert seen.dropouts == {"Identity"}, name  # PEFT's dropout 0 is an Identity
        assert seen.bf16 == cpu_has_bf16_units(), name
        # Each is a setting.
        config = defaults[name]
        config.lora = LoraSettings(dropout=0.1)
        config.speed = SpeedSettings(precision="fp32", gradient_checkpointing=True)
        shutil.rmtree(tmp_path / ("sft" if name == "sft" else "mu"))
        seen = _Seen()
        run(config, seen)
        assert seen.checkpointing and seen.dropouts == {"Dropout"} and not seen.bf16, name
    torch.set_num_threads(1)


def test_bf16_units_are_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16\n")
    assert cpu_has_bf16_units(info)
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
    assert not cpu_has_bf16_units(info)
    assert not cpu_has_bf16_units(tmp_path / "missing")


def test_cli_ib_tune_refuses_vllm_where_it_is_not_installed(tmp_path, tiny_model_dir, capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    argv = _train_argv(tiny_model_dir, tmp_path / "run", "ib-tune")
    assert main([*argv, "--generation-engine", "vllm"]) == 2
    err = capsys.readouterr().err
    assert "mfllm train ib-tune: error: generation engine 'vllm' needs the vllm package" in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_train_speed_benchmark_prints_its_figures(tiny_model_dir):
    """``benchmarks/train_speed.py --quick`` on the tiny model: every variant runs and the
    issue's figures are printed."""
    argv = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "train_speed.py"), "--quick"]
    argv += ["--model", str(tiny_model_dir), "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    for key in (
        "sft_tokens_per_s", "sft_tokens_per_cpu_s", "raw_loop_tokens_per_s", "sft_vs_raw",
        "sft_before_tokens_per_cpu_s", "sft_speedup", "grpo_summaries_per_s",
        "grpo_before_summaries_per_s", "grpo_speedup", "grpo_engine_speedup",
        "grpo_peak_rss_gb",
    ):  # fmt: skip
        assert np.isfinite(report[key]) and report[key] > 0, key
    assert report["threads"] == 1
    assert report["variants"]["sft_before"]["bf16"] is False
    assert report["sft_vs_raw"] == pytest.approx(
        report["sft_tokens_per_cpu_s"] / report["raw_loop_tokens_per_cpu_s"]
    )


def _shared_history_trainer(tmp_path, generations=3):
    from datasets import Dataset
    from trl import GRPOConfig

    from training.shared_history import SharedHistoryGRPOTrainer

    model, tokenizer = build_tiny_model_and_tokenizer()
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", bf16=False,
        per_device_train_batch_size=generations, num_generations=generations,
        max_completion_length=5, temperature=0.7, gradient_checkpointing=False,
    )  # fmt: skip

    def reward(completions, **_):
        return [float(len(c)) for c in completions]

    trainer = SharedHistoryGRPOTrainer(
        model=model, reward_funcs=[reward], args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": "Is this true?"}]),
        peft_config=LoraSettings().peft_config(),
    )  # fmt: skip
    for name, p in trainer.model.named_parameters():  # LoRA B starts at zero: move it
        if "lora_B" in name:
            p.data.normal_(0, 0.5, generator=torch_generator())
    return trainer, tokenizer


def torch_generator():
    import torch

    return torch.Generator().manual_seed(0)


def test_shared_history_loss_gives_trls_values_and_gradients(tmp_path):
    """The loss's log-probabilities and entropies from one pass over the shared history
    are TRL's (G passes), and so are their gradients; rows that do not share their
    prompt take TRL's path."""
    import torch
    from trl import GRPOTrainer

    trainer, _ = _shared_history_trainer(tmp_path)
    model = trainer.model
    ids = torch.randint(3, 300, (3, 11), generator=torch_generator())
    ids[:, :7] = ids[0, :7]  # one history of 7 tokens, 4 completion tokens per row
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0  # a shorter completion, padded
    results = []
    for method in (type(trainer), GRPOTrainer):
        model.zero_grad()
        logps, entropies, _ = method._get_per_token_logps_and_entropies(
            trainer, model, ids, mask, 4, compute_entropy=True
        )
        kept = mask[:, 7:].bool()
        (logps[kept].sum() + entropies[kept].sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logps[kept], entropies[kept], grads))
    (ours, our_entropy, our_grads), (theirs, their_entropy, their_grads) = results
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(our_entropy, their_entropy, atol=1e-5)
    assert our_grads.keys() == their_grads.keys() and len(our_grads) > 0
    for name, grad in our_grads.items():
        # float sums in another order: equal to 1e-4 of the gradient's size
        assert (grad - their_grads[name]).norm() <= 1e-4 * their_grads[name].norm(), name
    # Two different histories: TRL's own path, the same result.
    ids[1, 0] = ids[0, 0] + 1
    mixed = trainer._get_per_token_logps_and_entropies(model, ids, mask, 4)[0]
    trl = GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, ids, mask, 4)[0]
    assert torch.allclose(mixed[kept], trl[kept], atol=1e-5)


def test_shared_history_rollout_samples_what_generate_samples(tmp_path):
    """Greedy decoding from the repeated cache of the history gives what ``generate``
    gives on the G full prompts; each completion ends after its first end token."""
    import torch
    from transformers import GenerationConfig

    from training.shared_history import SharedHistoryRollout

    trainer, tokenizer = _shared_history_trainer(tmp_path, generations=2)
    trainer.generation_config = GenerationConfig(
        do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id
    )
    trainer.eos_token_ids = [tokenizer.eos_token_id]
    prompts = ["Is this true?", "Is this true?", "The police confirmed it."]
    rollout = SharedHistoryRollout(tokenizer)
    out = rollout(prompts, trainer)
    assert rollout.seconds > 0
    assert out["prompt_ids"] == tokenizer(text=prompts)["input_ids"]
    model = trainer.model
    for prompt_ids, completion in zip(out["prompt_ids"], out["completion_ids"], strict=True):
        ids = torch.tensor([prompt_ids])
        with torch.no_grad():
            full = model.generate(input_ids=ids, generation_config=trainer.generation_config)
        expected = full[0, ids.size(1) :].tolist()
        if tokenizer.eos_token_id in expected:
            expected = expected[: expected.index(tokenizer.eos_token_id) + 1]
        assert completion == expected
    assert model.training  # put back as it was


def test_length_grouped_order_is_fixed_by_the_seed_and_groups_lengths():
    from training.sft import length_grouped_order

    lengths = [(i * 37) % 101 for i in range(400)]
    order = length_grouped_order(lengths, 4, 1000, seed=3)
    assert len(order) >= 1000
    assert sorted(order[:400]) == list(range(400))  # each pass uses every example once
    assert order == length_grouped_order(lengths, 4, 1000, seed=3)
    assert order[:400] == length_grouped_order(lengths, 4, 10, seed=3)  # a prefix of a longer run
    assert order != length_grouped_order(lengths, 4, 1000, seed=4)
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in
              (order[k : k + 4] for k in range(0, 400, 4))]  # fmt: skip
    assert sum(spread) / len(spread) < 5  # batches of similar length (random: about 60)


def test_engine_rollout_samples_what_the_adapted_model_samples(tmp_path, monkeypatch):
    """The sampling engine, refreshed with the adapter's current weights, computes the
    trainer model's logits and decodes (greedy) what ``generate`` decodes from it, end
    token kept; sampled draws are fixed by the trainer's seed and step."""
    import torch
    from transformers import GenerationConfig

    import training.shared_history as shared_history
    from training.shared_history import (
        SharedHistoryRollout,
        copy_adapted_weights,
        engine_params,
        sampling_engine,
    )

    trainer, tokenizer = _shared_history_trainer(tmp_path, generations=2)
    monkeypatch.setattr(shared_history, "cpu_has_bf16_units", lambda: False)  # fp32: exact
    engine = sampling_engine(trainer.model, tokenizer)
    assert engine.generation_dtype == "float32"
    model = trainer.model
    for name, p in model.named_parameters():  # an optimiser step after the copy
        if "lora_B" in name:
            p.data.add_(torch.randn(p.shape, generator=torch_generator()) * 0.3)
    ids = torch.tensor([tokenizer("The police confirmed it.")["input_ids"]])
    model.eval()
    with torch.no_grad():
        before = engine.model(input_ids=ids).logits
        assert copy_adapted_weights(model, engine.model) > 0
        after = engine.model(input_ids=ids).logits
        expected_logits = model(input_ids=ids).logits
    assert not torch.allclose(before, expected_logits, atol=1e-3)
    assert torch.allclose(after, expected_logits, atol=1e-5)

    trainer.args.temperature = 0.0  # greedy: the engine must decode what generate does
    trainer.args.max_completion_length = 6
    trainer.args.top_k = 50
    prompts = ["Is this true?", "Is this true?", "The police confirmed it."]
    rollout = SharedHistoryRollout(tokenizer, engine=engine)
    out = rollout(prompts, trainer)
    assert rollout.seconds > 0 and out["prompt_ids"] == tokenizer(text=prompts)["input_ids"]
    config = GenerationConfig(do_sample=False, max_new_tokens=6, pad_token_id=0)
    ends = set(engine._end_ids)
    for prompt_ids, completion in zip(out["prompt_ids"], out["completion_ids"], strict=True):
        with torch.no_grad():
            full = model.generate(input_ids=torch.tensor([prompt_ids]), generation_config=config)
        expected = full[0, len(prompt_ids) :].tolist()
        end = next((i for i, t in enumerate(expected) if t in ends), None)
        assert completion == (expected if end is None else expected[: end + 1])

    trainer.args.temperature = 0.7
    trainer.args.max_completion_length = 12
    first = rollout(prompts, trainer)["completion_ids"]
    assert first == rollout(prompts, trainer)["completion_ids"]  # same step: same draws
    assert first[0] != first[1]  # repeats of one history draw differently
    trainer.state.global_step += 1
    assert rollout(prompts, trainer)["completion_ids"] != first
    trainer.args.top_k = 10
    with pytest.raises(ValueError, match="top 50 tokens"):
        engine_params(trainer)
