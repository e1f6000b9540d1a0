"""The intervention planner by Stable-Baselines3 PPO (``mfllm train planner --method ppo``).

The planner env of each training scenario is wrapped in
:class:`~mfllm_env.wrappers.FlattenObservations` (its numeric observation: the shares
history, the mean field's shares, decisions and budget left, one-hot) and all of them
become one vector env through SuperSuit (:func:`~mfllm_env.wrappers.to_vec_env`): one
sub-environment per training scenario. PPO (an MLP policy over the menu) trains on it.

Training runs in chunks of ``save_steps`` PPO updates. Each chunk starts from a seed drawn
from ``(config.seed, chunk)``: Python, numpy and torch are seeded with it, the envs are
reset with it, and the chunk ends with a checkpoint (``checkpoints/step-N.zip``, N the
updates done; the optimizer's state included). A run resumed from a checkpoint therefore
ends with the same weights as an uninterrupted one (tested). The run folder has what the
other planner trainers write: ``log.jsonl`` (one row per update: the mean return of the
episodes that ended in its rollout), the checkpoints and the trained planner,
``planner.zip``, which :class:`SB3Planner` plays (``mfllm planner-eval --planners
ppo=PATH``).
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfllm_env import runs
from mfllm_env.planner import PLANNER
from mfllm_env.wrappers import FlattenObservations, to_vec_env
from training.report import read_log
from training.run_folder import check_config, trim_log

PPO_PLANNER_FILE = "planner.zip"
"""The trained planner's file in the run folder."""


@dataclass
class PPOPlannerConfig:
    updates: int = field(default=60, metadata={"help": "PPO updates (rollout + optimisation)"})
    rollout_steps: int = field(
        default=64, metadata={"help": "decisions per training scenario in one update's rollout"}
    )
    batch_size: int = field(default=64, metadata={"help": "minibatch (at most a rollout)"})
    epochs: int = field(default=10, metadata={"help": "passes over a rollout per update"})
    learning_rate: float = 3e-4
    gamma: float = field(default=1.0, metadata={"help": "discount (episodes are short)"})
    entropy_weight: float = 0.01
    hidden: int = field(default=64, metadata={"help": "units of each of the two hidden layers"})
    save_steps: int = field(default=10, metadata={"help": "updates per checkpoint"})
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(
            self,
            counts={
                "updates": 1,
                "rollout_steps": 2,
                "batch_size": 2,
                "epochs": 1,
                "hidden": 1,
                "save_steps": 1,
            },
            positive=("learning_rate",),
            non_negative=("entropy_weight", "gamma"),
        )
        if self.gamma > 1:
            raise ValueError(f"PPOPlannerConfig.gamma must be <= 1, got {self.gamma!r}")


def _chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("step-*.zip"), key=lambda p: int(p.stem.split("-")[1]))


def train_ppo_planner(
    make_env: Callable[[int], Any],
    n_scenarios: int,
    config: PPOPlannerConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """PPO on the menu (see the module docstring). ``make_env(i)`` builds the planner env
    of training scenario ``i`` (PettingZoo parallel, one ``"planner"`` agent, ``Discrete``
    actions). Writes ``checkpoints/step-N.zip``, ``log.jsonl`` and ``planner.zip`` into
    ``out``; returns the run's summary."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.utils import set_random_seed

    envs = [FlattenObservations(make_env(i)) for i in range(n_scenarios)]
    vec = to_vec_env(envs, seed=config.seed)
    per_update = config.rollout_steps * vec.num_envs
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    start = 0
    saved = _checkpoints(checkpoints) if resume else []
    if saved:
        start = int(saved[-1].stem.split("-")[1])
        if start > config.updates:
            raise ValueError(
                f"{out} has a checkpoint at update {start}, past the {config.updates} "
                "updates asked for"
            )
        model = PPO.load(saved[-1], env=vec, device="cpu")
    else:
        model = PPO(
            "MlpPolicy",
            vec,
            n_steps=config.rollout_steps,
            batch_size=min(config.batch_size, per_update),  # at most one rollout
            n_epochs=config.epochs,
            learning_rate=config.learning_rate,
            gamma=config.gamma,
            ent_coef=config.entropy_weight,
            policy_kwargs={"net_arch": [config.hidden, config.hidden]},
            seed=config.seed,
            device="cpu",
            verbose=0,
        )
    if resume:
        trim_log(log_path, "ppo", lambda row: row["step"] <= start)

    class LogUpdates(BaseCallback):
        """One ``log.jsonl`` row per update: the mean return of the episodes that ended
        in its rollout (the planner's return: the sum of its rewards)."""

        def __init__(self) -> None:
            super().__init__()
            self.running = np.zeros(vec.num_envs)
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            self.running += self.locals["rewards"]
            for i in np.flatnonzero(self.locals["dones"]):
                self.returns.append(float(self.running[i]))
                self.running[i] = 0.0
            return True

        def _on_rollout_end(self) -> None:
            update = self.model.num_timesteps // per_update
            row = {"stage": "ppo", "step": update, "timesteps": self.model.num_timesteps}
            if self.returns:
                row.update(reward=float(np.mean(self.returns)), episodes=len(self.returns))
            with log_path.open("a", encoding="utf-8") as handle:
                runs.append_record(handle, row)
            self.returns = []

    from tqdm.auto import tqdm

    started = time.perf_counter()
    bar = tqdm(total=config.updates, initial=start, desc="ppo", disable=not progress)
    done = start
    while done < config.updates:
        chunk = done // config.save_steps
        updates = min(config.save_steps - done % config.save_steps, config.updates - done)
        seed = _chunk_seed(config.seed, chunk)
        set_random_seed(seed)  # random, numpy (minibatches), torch (actions, weights)
        model.action_space.seed(seed)
        # SB3 keeps the last observations between learn() calls; every chunk starts its
        # episodes afresh from its seed, so that a resumed run matches an uninterrupted one.
        model._last_obs = vec.reset(seed=seed)
        model._last_episode_starts = np.ones(vec.num_envs, dtype=bool)
        model.learn(updates * per_update, callback=LogUpdates(), reset_num_timesteps=False)
        done += updates
        model.save(checkpoints / f"step-{done}.zip")
        bar.update(updates)
    bar.close()
    model.save(out / PPO_PLANNER_FILE)
    vec.close()
    summary: dict[str, Any] = {
        "method": "ppo",
        "updates": config.updates,
        "timesteps": int(model.num_timesteps),
        "resumed_from": start or None,
        "train_seconds": time.perf_counter() - started,
        "config": asdict(config),
    }
    returns = read_log(log_path).get("ppo", {}).get("reward", {})
    if returns:
        summary["return first"] = returns[min(returns)]
        summary["return last"] = returns[max(returns)]
    return summary


class SB3Planner:
    """A Stable-Baselines3 model (``planner.zip``) as a planner policy for ``env``: it sees
    each observation as :class:`~mfllm_env.wrappers.FlattenObservations` gives it and
    picks its most likely option (``deterministic``) or samples one."""

    def __init__(self, model: Any, env: Any, *, deterministic: bool = True) -> None:
        self.model = model
        self.flat = FlattenObservations(env)
        self.deterministic = deterministic
        expected = self.flat.observation_space(PLANNER).shape
        if model.observation_space.shape != expected:
            raise ValueError(
                f"the PPO planner observes {model.observation_space.shape} numbers, this "
                f"env gives {expected} (another history length, budget or horizon?)"
            )
        if model.action_space != env.action_space(PLANNER):
            raise ValueError(
                f"the PPO planner chooses in {model.action_space}, this env's menu is "
                f"{env.action_space(PLANNER)}"
            )

    @classmethod
    def load(cls, path: Path, env: Any, **kwargs: Any) -> SB3Planner:
        """The model :func:`train_ppo_planner` saved in ``path``; ``ValueError`` naming the
        file for a missing file or one that is not an SB3 PPO zip."""
        from stable_baselines3 import PPO

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"PPO planner {path}: no such file (give planner.zip of a run)")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"PPO planner {path}: not a zip file saved by Stable-Baselines3")
        try:
            model = PPO.load(path, device="cpu")
        except (KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as error:
            raise ValueError(f"PPO planner {path}: cannot be loaded ({error})") from None
        return cls(model, env, **kwargs)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None and not self.deterministic:  # seeds torch's global generator
            self.model.set_random_seed(seed)

    def act(self, observations: Mapping[str, Any]) -> dict[str, int]:
        actions = {}
        for agent, observation in observations.items():
            flat = self.flat.flatten(agent, observation)
            action, _ = self.model.predict(flat, deterministic=self.deterministic)
            actions[agent] = int(action)
        return actions
