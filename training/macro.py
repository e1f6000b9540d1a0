"""Training the macro-economy's mean-field RL households and their government (the leader).

:func:`train_macro` trains one shared household policy and one government policy
(:mod:`agents.macro_rl`) with PPO (clipped policy ratio, a learned critic, Monte-Carlo
returns bootstrapped at the training horizon, advantages normalised per batch), on the
economy of ``mfllm/Macro-v0``. The run is a schedule of iterations, each of one
*phase*; an iteration plays ``episodes_per_iteration`` episodes of ``horizon`` years and
updates the phase's learner(s):

1. ``households`` (``warmup_iterations``): the households alone on ``Macro-v0``, each
   episode under a baseline government drawn at random (free market, Saez, US federal
   2022), so that they learn to respond to a policy they observe.
2. Then ``rounds`` rounds, by ``mode``:

   * ``"stackelberg"``: ``leader_iterations`` of ``leader`` -- the government samples its
     action, the households see it and respond in the same year with their current
     policy (greedy), and only the government learns, so it learns from the followers'
     response -- then ``follower_iterations`` of ``followers`` -- the government plays its
     current policy (greedy), the households sample and learn.
   * ``"simultaneous"`` (the ablation without Stackelberg ordering): the same number of
     ``joint`` iterations in which both sample and both learn from the same episodes, and
     the households act on what they saw *before* the government's move of that year (the
     previous year's policy): neither side responds to the other's current move.
   * ``"no_mean_field"`` (the ablation without the mean field): as ``"stackelberg"``, but
     the households' features are only their own state and the policy.
   * ``"simultaneous_no_mean_field"``: without both, as ``"simultaneous"`` with the
     households of ``"no_mean_field"``.

Every random draw of iteration ``t`` comes from ``(seed, t)``, and a checkpoint holds both
networks and both optimisers, so a resumed run (from the newest
``checkpoints/step-N.pt``) ends with the same weights, byte for byte, as one that was not
interrupted. The run folder: ``log.jsonl`` (a row per iteration), ``checkpoints/``,
``households.pt`` and ``government.pt`` (:func:`agents.macro_rl.save_policy`),
``summary.json`` and ``report.png`` (the learning curves).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.macro_rl import (
    LEADER_FEATURE_COUNT,
    GaussianPolicy,
    RLGovernment,
    RLHouseholds,
    household_feature_count,
    household_features,
    leader_features,
    save_policy,
    shares,
)
from mfllm_env import runs
from mfllm_env.core.protocols import Policy
from mfllm_env.games.macro import GOVERNMENT, EconomyParameters, MacroEnv, Year
from mfllm_env.games.macro.text import FALLBACK_ACTION
from mfllm_env.registry import family
from training.run_folder import check_config, trim_log, write_json

MODES = ("stackelberg", "simultaneous", "no_mean_field", "simultaneous_no_mean_field")
BASELINE_GOVERNMENTS = ("free_market", "saez", "us_federal_2022")
LEADER_REWARD_SCALES = {"gdp": 10.0, "gini": 10.0, "social_welfare": None, "gdp_gini": 1.0}
"""Rewards are divided by these before returns are taken (the critic's targets stay near
1); ``None``: by the number of households (``social_welfare`` sums their rewards)."""
INITIAL_GOVERNMENT = (0.5, 0.5, 0.1, 0.1, 0.3)
"""The government's initial mean action: a moderate income tax (``tau`` 0.1), a small
wealth tax (0.02) and spending of 9% of output."""


def plays_simultaneously(mode: str | None) -> bool:
    """Whether a run of ``mode`` (``None``: the default) is played in simultaneous order."""
    return mode is not None and mode.startswith("simultaneous")


@dataclass
class MacroTrainConfig:
    mode: str = field(default="stackelberg", metadata={"help": f"one of {MODES}"})
    households: int = field(default=100, metadata={"help": "households in the economy"})
    horizon: int = field(default=100, metadata={"help": "years per training episode"})
    warmup_iterations: int = field(default=30, metadata={"help": "households alone"})
    rounds: int = field(default=5, metadata={"help": "leader/follower alternations"})
    leader_iterations: int = field(default=10, metadata={"help": "per round"})
    follower_iterations: int = field(default=10, metadata={"help": "per round"})
    episodes_per_iteration: int = 4
    leader_reward: str = field(default="gdp", metadata={"help": "MacroPlanner-v0's reward"})
    gamma: float = 0.95
    household_learning_rate: float = 3e-4
    leader_learning_rate: float = 1e-3
    ppo_epochs: int = 4
    minibatch: int = 4096
    clip: float = 0.2
    entropy_weight: float = 0.001
    hidden: int = 64
    save_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"MacroTrainConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.leader_reward not in LEADER_REWARD_SCALES:
            raise ValueError(
                f"MacroTrainConfig.leader_reward must be one of {tuple(LEADER_REWARD_SCALES)}, "
                f"got {self.leader_reward!r}"
            )
        check_config(
            self,
            counts={
                "households": 10,
                "horizon": 1,
                "warmup_iterations": 0,
                "rounds": 0,
                "leader_iterations": 0,
                "follower_iterations": 0,
                "episodes_per_iteration": 1,
                "ppo_epochs": 1,
                "minibatch": 1,
                "hidden": 1,
                "save_every": 1,
            },
            positive=("household_learning_rate", "leader_learning_rate", "clip"),
            non_negative=("entropy_weight",),
        )
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"MacroTrainConfig.gamma must be in [0, 1], got {self.gamma!r}")

    @property
    def mean_field(self) -> bool:
        """Whether the households see the mean field."""
        return not self.mode.endswith("no_mean_field")

    @property
    def simultaneous(self) -> bool:
        """Whether the households act on the policy before the government's move."""
        return plays_simultaneously(self.mode)

    def schedule(self) -> list[str]:
        """The phase of every iteration (module docstring)."""
        rounds = ["leader"] * self.leader_iterations + ["followers"] * self.follower_iterations
        if self.simultaneous:
            rounds = ["joint"] * len(rounds)
        return ["households"] * self.warmup_iterations + rounds * self.rounds


@dataclass(frozen=True, slots=True)
class YearPlayed:
    """One year of :func:`play_economy`: the households' rewards, the government's reward
    (``None`` without one), the economy's accounts and the observations after it."""

    rewards: np.ndarray
    leader_reward: float | None
    year: Year
    observations: dict[str, Any]


def play_economy(
    env: MacroEnv,
    households: Policy,
    government: Policy | None = None,
    *,
    seed: int,
    simultaneous: bool = False,
) -> Iterator[YearPlayed]:
    """Play one episode of ``env`` (``Macro-v0``), year by year. With a ``government``
    (a policy acting for ``"government"`` on its ``MacroPlanner-v0`` observation) the
    order is Stackelberg's -- the government moves, then the households observe its
    policy and act -- or, ``simultaneous``, the households act on what they observed
    before its move. Without one, ``env``'s own government taxes."""
    game = env.game
    observations, _ = env.reset(seed=seed)
    households.reset(seed=seed)
    if government is not None:  # its own stream: its draws must not repeat the households'
        government.reset(seed=int(np.random.SeedSequence(seed).generate_state(1)[0]))
    while env.agents:
        if government is not None:
            game.lead(government.act({GOVERNMENT: game.leader_observation()})[GOVERNMENT])
            if not simultaneous:
                observations = env.observe()
        observations, rewards, *_ = env.step(households.act(observations))
        leader_reward = game.settle()[0] if government is not None else None
        assert game.last_year is not None
        yield YearPlayed(
            np.fromiter(rewards.values(), np.float64, len(rewards)),
            leader_reward,
            game.last_year,
            observations,
        )


@dataclass
class _Batch:
    """What a learner saw over an iteration's episodes: features, unbounded actions and
    scaled returns, row-aligned."""

    features: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    returns: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        trace: list[tuple[np.ndarray, np.ndarray]],
        rewards: np.ndarray,
        bootstrap: np.ndarray,
        gamma: float,
    ) -> None:
        """One episode: ``trace`` (features and actions per year), ``rewards`` (years x
        agents, scaled), ``bootstrap`` (the value after the last year: 0 when the economy
        ended, the critic's estimate when the horizon cut the episode). Returns are
        discounted sums times ``1 - gamma`` (a constant reward's return is the reward)."""
        weight = 1.0 - gamma if gamma < 1 else 1.0
        returns = np.empty_like(rewards)
        following = bootstrap
        for t in range(len(rewards) - 1, -1, -1):
            following = weight * rewards[t] + gamma * following
            returns[t] = following
        for (features, actions), row in zip(trace, returns, strict=True):
            self.features.append(features)
            self.actions.append(actions)
            self.returns.append(row)


def _ppo_update(
    model: GaussianPolicy,
    optimizer: torch.optim.Optimizer,
    batch: _Batch,
    config: MacroTrainConfig,
    generator: torch.Generator,
) -> float:
    """PPO epochs over ``batch``; the mean critic loss of the last epoch."""
    x = torch.as_tensor(np.concatenate(batch.features), dtype=torch.float32)
    u = torch.as_tensor(np.concatenate(batch.actions), dtype=torch.float32)
    returns = torch.as_tensor(np.concatenate(batch.returns), dtype=torch.float32)
    with torch.no_grad():
        old_logp = model.distribution(x).log_prob(u).sum(-1)
        advantages = returns - model.value(x)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    value_losses: list[float] = []
    for _ in range(config.ppo_epochs):
        value_losses = []
        for rows in torch.randperm(len(x), generator=generator).split(config.minibatch):
            distribution = model.distribution(x[rows])
            ratio = (distribution.log_prob(u[rows]).sum(-1) - old_logp[rows]).exp()
            clipped = ratio.clamp(1 - config.clip, 1 + config.clip)
            policy_loss = -torch.min(ratio * advantages[rows], clipped * advantages[rows]).mean()
            value_loss = (model.value(x[rows]) - returns[rows]).pow(2).mean()
            entropy = distribution.entropy().sum(-1).mean()
            loss = policy_loss + 0.5 * value_loss - config.entropy_weight * entropy
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            value_losses.append(value_loss.item())
    return float(np.mean(value_losses))


def _value(model: GaussianPolicy, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.value(torch.as_tensor(features, dtype=torch.float32)).double().numpy()


class MacroTrainer:
    """The state of a :func:`train_macro` run: both networks, their optimisers, the
    environments of each phase."""

    def __init__(self, config: MacroTrainConfig) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.households = GaussianPolicy(
            household_feature_count(config.mean_field),
            2,
            hidden=config.hidden,
            initial=FALLBACK_ACTION,
        )
        self.government = GaussianPolicy(
            LEADER_FEATURE_COUNT, 5, hidden=config.hidden, initial=INITIAL_GOVERNMENT
        )
        self.household_optimizer = torch.optim.Adam(
            self.households.parameters(), lr=config.household_learning_rate
        )
        self.leader_optimizer = torch.optim.Adam(
            self.government.parameters(), lr=config.leader_learning_rate
        )
        parameters = EconomyParameters(years=config.horizon)
        macro = family("macro")
        self.baseline_envs = {
            name: macro.population_env(config.households, government=name, parameters=parameters)
            for name in BASELINE_GOVERNMENTS
        }
        self.led_env = macro.population_env(
            config.households, parameters=parameters, leader_reward=config.leader_reward
        )
        scale = LEADER_REWARD_SCALES[config.leader_reward]
        self.leader_scale = float(config.households) if scale is None else scale

    def state(self, iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "households": self.households.state_dict(),
            "government": self.government.state_dict(),
            "household_optimizer": self.household_optimizer.state_dict(),
            "leader_optimizer": self.leader_optimizer.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> int:
        self.households.load_state_dict(state["households"])
        self.government.load_state_dict(state["government"])
        self.household_optimizer.load_state_dict(state["household_optimizer"])
        self.leader_optimizer.load_state_dict(state["leader_optimizer"])
        return int(state["iteration"])

    def iterate(self, iteration: int, phase: str) -> dict[str, Any]:
        """Play and learn one iteration of ``phase``; its log row."""
        config = self.config
        rng = np.random.default_rng([config.seed, iteration])
        update_households = phase in ("households", "followers", "joint")
        update_leader = phase in ("leader", "joint")
        households = RLHouseholds(
            self.households, mean_field=config.mean_field, greedy=not update_households
        )
        government = (
            None
            if phase == "households"
            else RLGovernment(self.government, greedy=not update_leader)
        )
        household_batch, leader_batch = _Batch(), _Batch()
        rewards_seen, years, saving, labour, leader_returns, actions = [], [], [], [], [], []
        for _ in range(config.episodes_per_iteration):
            env = self.led_env
            if government is None:
                env = self.baseline_envs[BASELINE_GOVERNMENTS[int(rng.integers(3))]]
            households.trace = []
            if government is not None:
                government.trace = []
            played = list(
                play_economy(
                    env,
                    households,
                    government,
                    seed=int(rng.integers(2**31 - 1)),
                    simultaneous=config.simultaneous,
                )
            )
            last = played[-1]
            truncated = last.year.ended is None
            household_rewards = np.stack([year.rewards for year in played])
            rewards_seen.append(household_rewards.mean())
            years.append(len(played))
            saving.append(np.mean([year.year.saving.mean() for year in played]))
            labour.append(np.mean([year.year.labour.mean() for year in played]))
            if update_households:
                features = households.trace[-1][0]
                bootstrap = np.zeros(features.shape[0])
                if truncated:
                    final = household_features(
                        list(last.observations.values()), mean_field=config.mean_field
                    )
                    bootstrap = _value(self.households, final)
                household_batch.add(households.trace, household_rewards, bootstrap, config.gamma)
            if government is not None:
                leader_rewards = np.array([year.leader_reward for year in played])
                leader_returns.append(float(leader_rewards.sum()))
                moves = np.concatenate([u for _, u in government.trace])
                actions.append(shares(torch.as_tensor(moves)).mean(0).tolist())
                if update_leader:
                    bootstrap = np.zeros(1)
                    if truncated:
                        observation = env.game.leader_observation()
                        bootstrap = _value(self.government, leader_features(observation)[None])
                    leader_batch.add(
                        government.trace,
                        leader_rewards[:, None] / self.leader_scale,
                        bootstrap,
                        config.gamma,
                    )
        generator = torch.Generator()
        generator.manual_seed(int(rng.integers(2**31 - 1)))
        row: dict[str, Any] = {
            "phase": phase,
            "household_reward": float(np.mean(rewards_seen)),
            "years": float(np.mean(years)),
            "saving": float(np.mean(saving)),
            "labour": float(np.mean(labour)),
        }
        if leader_returns:
            row["leader_return"] = float(np.mean(leader_returns))
            row["government_action"] = np.mean(actions, axis=0).round(4).tolist()
        if update_households:
            row["household_value_loss"] = _ppo_update(
                self.households, self.household_optimizer, household_batch, config, generator
            )
        if update_leader:
            row["leader_value_loss"] = _ppo_update(
                self.government, self.leader_optimizer, leader_batch, config, generator
            )
        return row


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def train_macro(
    config: MacroTrainConfig, out: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run ``config``'s schedule (module docstring) into the run folder ``out``; the
    summary (also ``summary.json``)."""
    from tqdm.auto import tqdm

    trainer = MacroTrainer(config)
    schedule = config.schedule()
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    start = 0
    if resume:
        saved = _checkpoints(checkpoints)
        if saved:
            start = trainer.load_state(torch.load(saved[-1], weights_only=True))
            if start > len(schedule):
                raise ValueError(
                    f"{out} has a checkpoint at iteration {start}, past the {len(schedule)} "
                    "iterations asked for"
                )
        trim_log(log_path, "macro", lambda row: row["step"] <= start)
    started = time.perf_counter()
    bar = tqdm(
        range(start, len(schedule)),
        desc=f"macro {config.mode}",
        disable=not progress,
        initial=start,
        total=len(schedule),
    )
    for iteration in bar:
        row = trainer.iterate(iteration, schedule[iteration])
        with log_path.open("a", encoding="utf-8") as handle:
            runs.append_record(handle, {"stage": "macro", "step": iteration + 1, **row})
        bar.set_postfix(reward=f"{row['household_reward']:.3f}", years=f"{row['years']:.0f}")
        if (iteration + 1) % config.save_every == 0 or iteration + 1 == len(schedule):
            path = checkpoints / f"step-{iteration + 1}.pt"
            torch.save(trainer.state(iteration + 1), path.with_suffix(".partial"))
            path.with_suffix(".partial").replace(path)
            for old in _checkpoints(checkpoints)[:-2]:
                old.unlink()
    save_policy(
        out / "households.pt", trainer.households, "households", mean_field=config.mean_field
    )
    save_policy(out / "government.pt", trainer.government, "government", mean_field=True)
    rows = [row for row in runs.read_records(log_path) if row.get("stage") == "macro"]
    summary: dict[str, Any] = {
        "mode": config.mode,
        "iterations": len(schedule),
        "resumed_from": start or None,
        "train_seconds": time.perf_counter() - started,
        "config": asdict(config),
    }
    for phase in dict.fromkeys(schedule):
        phase_rows = [row for row in rows if row["phase"] == phase]
        if phase_rows:
            summary[f"{phase} first"] = _brief(phase_rows[0])
            summary[f"{phase} last"] = _brief(phase_rows[-1])
    write_json(out / "summary.json", summary)
    plot_macro_training(rows, out / "report.png")
    return summary


def plot_macro_training(rows: list[dict[str, Any]], path: Path) -> None:
    """``report.png``: the households' mean reward and the government's mean return per
    iteration, a marker colour per phase."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mfllm_env.report import save_png

    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 1, sharex=True)
    for index, phase in enumerate(dict.fromkeys(row["phase"] for row in rows)):
        chosen = [row for row in rows if row["phase"] == phase]
        steps = [row["step"] for row in chosen]
        colour = f"C{index}"
        axes[0].plot(steps, [row["household_reward"] for row in chosen], ".", color=colour,
                     label=phase)  # fmt: skip
        led = [(row["step"], row["leader_return"]) for row in chosen if "leader_return" in row]
        if led:
            axes[1].plot(*zip(*led, strict=True), ".", color=colour)
    axes[0].set_ylabel("household reward / year")
    axes[1].set_ylabel("government return")
    axes[1].set_xlabel("iteration")
    axes[0].legend(fontsize=8)
    save_png(figure, path)


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("household_reward", "years", "saving", "labour", "leader_return")
    return {key: row[key] for key in keys if key in row}
