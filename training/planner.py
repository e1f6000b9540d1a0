"""Training intervention planners against a frozen population (Stackelberg leader and followers).

Two trainers, one run-folder layout (:mod:`training.run_folder`):

- :func:`train_reinforce`: a classic-RL planner on the menu action. The policy
  (:class:`LinearMenuPlanner`) is a softmax over the menu, linear in features of the
  observation (the last step's shares, the mean of the shares history, budget and time
  left). REINFORCE with a per-decision baseline (the batch's mean return-to-go at that
  decision) and advantages divided by their standard deviation in the batch. It talks to
  the environment only through the PettingZoo API (``make_env(i)`` returns any parallel
  env with a ``"planner"`` agent).
- :func:`train_grpo_planner`: a language-model planner in text mode, by TRL's GRPO with a
  ``rollout_func`` that steps the environment. Each training prompt is a decision point:
  an episode (scenario, seed) played without intervention up to decision ``d``. The G
  completions of a group are G messages for that one state; each is played in its own
  copy of the environment, seeded identically (the copies share the start state and the
  population's random numbers), and then the episode runs to its end without further
  intervention. The reward of a completion is the return from decision ``d`` on, so a
  group compares messages, and silence, on equal terms.

Both write ``config.json``, ``log.jsonl`` (one row per logged step), checkpoints (resume
continues from the newest), ``report.png`` and the trained planner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfllm_env import runs
from mfllm_env.checks import check_count
from mfllm_env.planner import PLANNER
from training.report import read_log
from training.run_folder import (
    JsonlLogCallback,
    LoraSettings,
    check_config,
    drop_log_printer,
    resume_checkpoint,
    trainer_arguments,
    trim_log,
    write_json,
)

# -- the classic-RL planner -------------------------------------------------------------


def menu_features(observation: Mapping[str, Any], budget: int, decisions: int) -> np.ndarray:
    """Features of a planner observation: the last step's shares, the mean of the non-empty
    rows of the shares history, budget and decisions left (as fractions), and a bias."""
    rows = np.asarray(observation["step_shares"], dtype=np.float64)
    played = rows[rows.sum(1) > 0]
    last = played[-1] if len(played) else np.zeros(rows.shape[1])
    mean = played.mean(0) if len(played) else np.zeros(rows.shape[1])
    budget_left = float(observation["budget_left"]) / max(budget, 1)
    time_left = float(observation["steps_left"]) / max(decisions, 1)
    return np.concatenate([last, mean, [budget_left, time_left, 1.0]])


class LinearMenuPlanner:
    """Softmax over the menu, linear in :func:`menu_features`. With the budget spent it
    waits (option 0). ``greedy`` picks the most likely option instead of sampling."""

    def __init__(
        self,
        weights: np.ndarray,
        *,
        budget: int,
        decisions: int,
        greedy: bool = False,
        seed: int | None = None,
        options: Sequence[str] | None = None,
    ) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.options = None if options is None else list(options)
        self.budget = budget
        self.decisions = decisions
        self.greedy = greedy
        self._rng = np.random.default_rng(seed)

    @classmethod
    def for_spaces(
        cls, observation_space: Any, action_space: Any, **kwargs: Any
    ) -> LinearMenuPlanner:
        """A zero-weight (uniform) planner sized from the env's spaces."""
        k = observation_space["step_shares"].shape[1]
        weights = np.zeros((action_space.n, 2 * k + 3))
        return cls(
            weights,
            budget=int(observation_space["budget_left"].n) - 1,
            decisions=int(observation_space["steps_left"].n) - 1,
            **kwargs,
        )

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def probabilities(self, observation: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(option probabilities, features) for one observation."""
        x = menu_features(observation, self.budget, self.decisions)
        logits = self.weights @ x
        if int(observation["budget_left"]) <= 0:
            logits[1:] = -np.inf
        p = np.exp(logits - logits.max())
        return p / p.sum(), x

    def choose(self, p: np.ndarray) -> int:
        """An option from probabilities ``p``: the likeliest when greedy, else a sample."""
        return int(p.argmax()) if self.greedy else int(self._rng.choice(p.size, p=p))

    def act(self, observations: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        return {
            agent: self.choose(self.probabilities(observation)[0])
            for agent, observation in observations.items()
        }

    def for_options(self, names: Sequence[str]) -> LinearMenuPlanner:
        """This planner on a menu with options ``names`` (a subset of its own, in any
        order: a planner trained with the targeted option plays where it is absent)."""
        if self.options is None:
            raise ValueError("this planner does not know its options' names")
        unknown = [name for name in names if name not in self.options]
        if unknown:
            raise ValueError(f"the planner was not trained with options {unknown}")
        rows = [self.options.index(name) for name in names]
        planner = LinearMenuPlanner(
            self.weights[rows],
            budget=self.budget,
            decisions=self.decisions,
            greedy=self.greedy,
            options=names,
        )
        planner._rng = self._rng
        return planner

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "budget": self.budget,
            "decisions": self.decisions,
            "options": self.options,
        }

    @classmethod
    def load(cls, path: Path, **kwargs: Any) -> LinearMenuPlanner:
        """The planner :meth:`to_json` saved in ``path`` (``planner.json``, a checkpoint).
        A ``ValueError`` naming the file and what is wrong: not JSON, a missing key, a
        budget or decision count that is not an integer >= 0, weights that are not a
        finite matrix of ``2K + 3`` columns (``K`` labels), options that are not one
        distinct name per row."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"planner file {path}: not JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"planner file {path}: holds a {type(data).__name__}, not an object")
        missing = [key for key in ("weights", "budget", "decisions") if key not in data]
        if missing:
            raise ValueError(f"planner file {path}: lacks {', '.join(missing)}")
        try:
            check_count("budget", data["budget"], 0)
            check_count("decisions", data["decisions"], 0)
            weights = np.asarray(data["weights"], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"planner file {path}: {error}") from None
        rows, columns = weights.shape if weights.ndim == 2 else (0, 0)
        if not rows or columns < 5 or (columns - 3) % 2:
            raise ValueError(
                f"planner file {path}: weights must be a matrix of one row per option and "
                f"2K + 3 columns (K >= 1 labels), got shape {weights.shape}"
            )
        if not np.isfinite(weights).all():
            raise ValueError(f"planner file {path}: weights must be finite, got NaN or infinity")
        options = data.get("options")
        if options is not None and (
            not isinstance(options, list)
            or len(options) != rows
            or not all(isinstance(name, str) for name in options)
            or len(set(options)) != rows
        ):
            raise ValueError(
                f"planner file {path}: options must be {rows} distinct names, one per row of "
                f"the weights, got {options!r}"
            )
        return cls(
            weights,
            budget=data["budget"],
            decisions=data["decisions"],
            options=options,
            **kwargs,
        )

    @property
    def num_labels(self) -> int:
        """The number of labels ``K`` of the shares its features are made of."""
        return (self.weights.shape[1] - 3) // 2


@dataclass
class ReinforceConfig:
    iterations: int = field(default=60, metadata={"help": "policy-gradient updates"})
    episodes_per_iteration: int = field(default=16, metadata={"help": "episodes per update"})
    learning_rate: float = 2.0
    entropy_weight: float = 0.01
    save_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(
            self,
            counts={"iterations": 1, "episodes_per_iteration": 1, "save_steps": 1},
            positive=("learning_rate",),
            non_negative=("entropy_weight",),
        )


def _play(env: Any, planner: LinearMenuPlanner, seed: int) -> tuple[list, list, list, list]:
    """One episode through the PettingZoo API: features, actions, probabilities, rewards."""
    observations, _ = env.reset(seed=seed)
    planner.reset(seed=seed)
    xs, actions, probs, rewards = [], [], [], []
    while env.agents:
        p, x = planner.probabilities(observations[PLANNER])
        action = planner.choose(p)
        observations, reward, *_ = env.step({PLANNER: action})
        xs.append(x)
        actions.append(action)
        probs.append(p)
        rewards.append(reward[PLANNER])
    return xs, actions, probs, rewards


def train_reinforce(
    make_env: Callable[[int], Any],
    n_scenarios: int,
    config: ReinforceConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """REINFORCE on the menu. ``make_env(i)`` builds the env of training scenario ``i``
    (PettingZoo parallel, one ``"planner"`` agent, ``Discrete`` menu actions). Iteration
    ``t`` plays ``episodes_per_iteration`` episodes, scenario and seed drawn from
    ``(config.seed, t)``, so a resumed run replays exactly what an uninterrupted one would.
    Writes ``checkpoints/step-N.json``, ``log.jsonl`` and ``planner.json`` into ``out``."""
    from tqdm.auto import tqdm

    envs = [make_env(i) for i in range(n_scenarios)]
    menu = getattr(envs[0], "menu", None)  # names, where the env has a menu attribute
    planner = LinearMenuPlanner.for_spaces(
        envs[0].observation_space(PLANNER),
        envs[0].action_space(PLANNER),
        options=None if menu is None else [option.name for option in menu],
    )
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    start = 0
    if resume:
        saved = sorted(checkpoints.glob("step-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        if saved:
            start = int(saved[-1].stem.split("-")[1])
            if start > config.iterations:
                raise ValueError(
                    f"{out} has a checkpoint at iteration {start}, past the "
                    f"{config.iterations} iterations asked for"
                )
            planner = LinearMenuPlanner.load(saved[-1])
    log_path = out / "log.jsonl"
    if resume:
        trim_log(log_path, "reinforce", lambda row: row["step"] <= start)
    started = time.perf_counter()
    bar = tqdm(
        range(start, config.iterations),
        desc="reinforce",
        disable=not progress,
        initial=start,
        total=config.iterations,
    )
    for iteration in bar:
        rng = np.random.default_rng([config.seed, iteration])
        episodes = []
        for _ in range(config.episodes_per_iteration):
            scenario = int(rng.integers(n_scenarios))
            seed = int(rng.integers(2**31 - 1))
            episodes.append(_play(envs[scenario], planner, seed))
        # Return-to-go per decision; baseline: the batch's mean at that decision index.
        togo = [np.cumsum(rewards[::-1])[::-1] for *_, rewards in episodes]
        length = max(len(g) for g in togo)
        baseline = np.array([np.mean([g[t] for g in togo if len(g) > t]) for t in range(length)])
        advantages = [g - baseline[: len(g)] for g in togo]
        scale = float(np.concatenate(advantages).std()) or 1.0  # normalised advantages
        grad = np.zeros_like(planner.weights)
        count = 0
        for (xs, actions, probs, _), advantage in zip(episodes, advantages, strict=True):
            for x, a, p, adv in zip(xs, actions, probs, advantage / scale, strict=True):
                score = -p  # d log p[a] / d logits (masked options have p = 0)
                score[a] += 1.0
                logp = np.log(np.where(p > 0, p, 1.0))
                entropy_grad = -p * (logp - (p * logp).sum())  # d H / d logits
                grad += np.outer(adv * score + config.entropy_weight * entropy_grad, x)
                count += 1
        planner.weights += config.learning_rate * grad / max(count, 1)
        mean_return = float(np.mean([g[0] for g in togo]))
        interventions = float(
            np.mean([sum(a != 0 for a in actions) for _, actions, _, _ in episodes])
        )
        with log_path.open("a", encoding="utf-8") as handle:
            row = {
                "stage": "reinforce",
                "step": iteration + 1,
                "reward": mean_return,
                "interventions": interventions,
            }
            runs.append_record(handle, row)
        bar.set_postfix(ret=f"{mean_return:.3f}")
        if (iteration + 1) % config.save_steps == 0 or iteration + 1 == config.iterations:
            write_json(checkpoints / f"step-{iteration + 1}.json", planner.to_json())
    write_json(out / "planner.json", planner.to_json())
    summary = {
        "method": "reinforce",
        "iterations": config.iterations,
        "resumed_from": start or None,
        "train_seconds": time.perf_counter() - started,
        "config": asdict(config),
    }
    returns = read_log(log_path).get("reinforce", {}).get("reward", {})  # the whole run's
    if returns:
        summary["return first"] = returns[min(returns)]
        summary["return last"] = returns[max(returns)]
    return summary


# -- the language-model planner (GRPO) ---------------------------------------------------


@dataclass
class GRPOPlannerConfig:
    max_steps: int = field(default=30, metadata={"help": "GRPO steps"})
    num_generations: int = field(default=4, metadata={"help": "G: messages per decision point"})
    states_per_step: int = field(default=2, metadata={"help": "decision points per step"})
    message_tokens: int = 32
    temperature: float = 1.0
    learning_rate: float = 5e-5
    save_steps: int = 10
    logging_steps: int = 1
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if self.num_generations == 1:
            raise ValueError("num_generations must be >= 2 (GRPO compares messages in a group)")
        check_config(
            self,
            counts={
                "max_steps": 1,
                "num_generations": 2,
                "states_per_step": 1,
                "message_tokens": 1,
                "save_steps": 1,
                "logging_steps": 1,
            },
            positive=("learning_rate",),
            non_negative=("temperature",),
        )


def _advance(env: Any, seed: int, decisions: int) -> dict[str, Any]:
    """Reset ``env`` with ``seed`` and wait ``decisions`` times; the observation then."""
    observations, _ = env.reset(seed=seed)
    for _ in range(decisions):
        observations, *_ = env.step({PLANNER: ""})
    return observations[PLANNER]


def decision_points(
    make_env: Callable[[int], Any], n_scenarios: int, count: int, seed: int
) -> list[dict[str, Any]]:
    """``count`` start states (scenario, episode seed, decision index), drawn reproducibly."""
    rng = np.random.default_rng(seed)
    decisions = [make_env(i).num_decisions for i in range(n_scenarios)]
    points = []
    for _ in range(count):
        scenario = int(rng.integers(n_scenarios))
        points.append(
            {
                "scenario": scenario,
                "seed": int(rng.integers(2**31 - 1)),
                "decision": int(rng.integers(decisions[scenario])),
            }
        )
    return points


def decision_states(
    envs: Sequence[Any], render: Callable[[Any, Any], str], count: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Up to ``count`` decision points keyed by their prompt (``render(observation,
    env)``), one per distinct prompt: the rollout finds a group's start state by its
    prompt. Decision 0 of an event looks the same under every seed (its warm-up is the
    real reactions); such repeats are drawn again, 20 draws per wanted point at most."""
    states: dict[str, dict[str, Any]] = {}
    for point in decision_points(lambda i: envs[i], len(envs), 20 * count, seed):
        env = envs[point["scenario"]]
        prompt = render(_advance(env, point["seed"], point["decision"]), env)
        states.setdefault(prompt, point)
        if len(states) == count:
            break
    return states


def cut_at_end(completion: list[int], end_ids: set[int]) -> list[int]:
    """A sampled completion up to and including its first end token (any of the model's
    end-of-turn ids): what follows is padding, which must not be trained on."""
    for j, token in enumerate(completion):
        if token in end_ids:
            return completion[: j + 1]
    return completion


def steering_return(env: Any, point: Mapping[str, int], message: str) -> float:
    """The return from ``point``'s decision on when the planner posts ``message`` there
    (``""``: waits) and waits afterwards."""
    _advance(env, point["seed"], point["decision"])
    total = 0.0
    action = message
    while env.agents:
        _, rewards, *_ = env.step({PLANNER: action})
        total += rewards[PLANNER]
        action = ""
    return total


def train_grpo_planner(
    make_env: Callable[[int], Any],
    n_scenarios: int,
    config: GRPOPlannerConfig,
    out: Path,
    *,
    model: Any,
    tokenizer: Any,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """GRPO on a text-mode LLM planner (see the module docstring); the LoRA adapter goes
    to ``out/planner/adapter``. ``make_env(i)`` builds a text-mode planner env of training
    scenario ``i`` with a frozen population."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from agents.backends.chat import render_chat
    from agents.planners import parse_planner_reply, planner_prompt

    envs = [make_env(i) for i in range(n_scenarios)]
    if envs[0].action_mode != "text":
        raise ValueError("the GRPO planner trains in text mode (action_mode='text')")
    states = decision_states(
        envs,
        lambda observation, env: render_chat(
            tokenizer, planner_prompt(observation, labels=env.scheme.labels, target=env.target)
        ),
        config.max_steps * config.states_per_step,
        config.seed,
    )
    rows = [{"prompt": prompt} for prompt in states]
    returns_seen: list[float] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    end_ids = {tokenizer.eos_token_id}
    end_ids.update(configured if isinstance(configured, list) else [configured])
    end_ids.discard(None)

    def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        encoded = tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(unwrapped.device)
        was_training = unwrapped.training
        unwrapped.eval()
        torch.manual_seed(config.seed * 100_003 + trainer.state.global_step)
        with torch.no_grad():
            output = unwrapped.generate(
                **encoded,
                do_sample=True,
                temperature=config.temperature,
                top_k=50,
                max_new_tokens=config.message_tokens,
                pad_token_id=tokenizer.pad_token_id,
                use_cache=True,
            )
        if was_training:
            unwrapped.train()
        width = encoded["input_ids"].shape[1]
        prompt_ids, completion_ids, rewards = [], [], []
        for i, prompt in enumerate(prompts):
            ids = encoded["input_ids"][i][encoded["attention_mask"][i].bool()].tolist()
            completion = cut_at_end(output[i, width:].tolist(), end_ids)
            message, _ = parse_planner_reply(tokenizer.decode(completion, skip_special_tokens=True))
            point = states[prompt]
            rewards.append(steering_return(envs[point["scenario"]], point, str(message)))
            prompt_ids.append(ids)
            completion_ids.append(completion or [tokenizer.eos_token_id])
        returns_seen.extend(rewards)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": None,
            "steering_return": rewards,
        }

    def steering_reward(
        completions: list[Any], steering_return: list[float], **_: Any
    ) -> list[float]:
        return list(steering_return)

    stage_dir = out / "planner"
    args = GRPOConfig(
        **trainer_arguments(
            output_dir=stage_dir / "checkpoints",
            max_steps=config.max_steps,
            batch_size=config.num_generations * config.states_per_step,
            learning_rate=config.learning_rate,
            save_steps=config.save_steps,
            logging_steps=config.logging_steps,
            seed=config.seed,
            progress=progress,
            # Not measured for the planner's rollouts: kept as they were.
            gradient_checkpointing=True,
            bf16=False,
        ),
        num_generations=config.num_generations,
        max_completion_length=config.message_tokens,
        temperature=config.temperature,  # the log-probabilities of what rollout sampled
        top_k=50,
        beta=0.0,
        shuffle_dataset=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[steering_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=config.lora.peft_config(),
        rollout_func=rollout,
        callbacks=[JsonlLogCallback(out / "log.jsonl", "grpo")],
    )
    drop_log_printer(trainer, progress)
    checkpoint = resume_checkpoint(stage_dir / "checkpoints", out / "log.jsonl", "grpo", resume)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.save_model(str(stage_dir / "adapter"))
    logged = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    summary: dict[str, Any] = {
        "method": "grpo",
        "steps": trainer.state.global_step,
        "decision_points": len(states),
        "messages_sampled": len(returns_seen),
        "train_seconds": time.perf_counter() - started,
        "resumed_from": checkpoint.name if checkpoint else None,
    }
    if logged:
        summary["reward first"] = logged[0]
        summary["reward last"] = logged[-1]
    return summary
