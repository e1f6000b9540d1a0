"""Training (TRL + PEFT) on tiny config-built models: data builders, SFT, IB-Tune's reward
and GRPO stage, the run folder and resume; and IB-Tune's compression term on SmolLM2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

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
    assert summary["steps"] == 2 and summary["train_examples"] == 8
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
        (lambda: PolicySFTConfig(context="x"), "PolicySFTConfig.context must be 'none' or"),
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
        (lambda: split_by_event([], "0.2"), r"dev_fraction must be in \(0, 1\), got '0.2'"),
        (lambda: split_by_event([], 0.5, seed=-1), "seed must be None or an integer >= 0, got -1"),
    ],
)
def test_training_configs_name_a_field_with_an_odd_value(build, message):
    """These passed (a NaN learning rate trains NaN weights; context 'x' trained the
    State-SFT prompt) or failed deep inside numpy, torch or TRL."""
    with pytest.raises(ValueError, match=message):
        build()
