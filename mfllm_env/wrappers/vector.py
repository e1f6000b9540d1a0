"""to_vec_env: PettingZoo parallel envs as one vector env, through SuperSuit.

The one module of this package that uses SuperSuit (imported when :func:`to_vec_env` is
called; install the ``rl`` extra). PettingZoo plans to take SuperSuit's wrappers into
``pettingzoo.wrappers`` (PettingZoo issue #1365): the switch is a change to this file.

Each agent of each env becomes one sub-environment of the vector env (parameter sharing:
one policy acts for every agent), as SuperSuit's ``pettingzoo_env_to_vec_env_v1`` does;
``concat_vec_envs_v1``'s constructor then joins ``copies`` copies of every env given (a
list of envs: one per training scenario, say). Sub-environment ``i`` is reset with seed
``seed + i`` first (in worker processes, ``num_cpus > 1``, SuperSuit gives process ``p``'s
``k``-th sub-environment ``seed + p + k``: seeds repeat across processes); later episodes
continue each env's own seeded stream, so the same seed gives the same episodes, in one
process or several (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from gymnasium import spaces
from pettingzoo import ParallelEnv

from mfllm_env.checks import check_count, check_seed

BASE_CLASSES = ("stable_baselines3", "gymnasium")


def _check_env(env: ParallelEnv, seed: int) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
    """The env's one observation and action space; ``ValueError`` naming what a vector env
    cannot take (and the wrapper that fixes it). Resets ``env`` with ``seed``."""
    if not isinstance(env, ParallelEnv):
        raise TypeError(f"to_vec_env takes PettingZoo parallel envs, got {type(env).__name__}")
    agents = list(env.possible_agents)
    observation, action = env.observation_space(agents[0]), env.action_space(agents[0])
    for agent in agents:
        if env.observation_space(agent) != observation or env.action_space(agent) != action:
            raise ValueError(
                f"agents {agents[0]!r} and {agent!r} have different spaces; one policy acts "
                "for all agents of a vector env"
            )
    if not isinstance(observation, (spaces.Box, spaces.Discrete)):
        raise ValueError(
            f"observations must be a Box or Discrete for a vector env, got {observation}; "
            "wrap the env in mfllm_env.wrappers.FlattenObservations"
        )
    env.reset(seed=seed)
    if list(env.agents) != agents:
        raise ValueError(
            f"{len(env.agents)} of the env's {len(agents)} agents act after reset; a vector "
            "env needs every agent at every step: wrap the env in mfllm_env.wrappers.FixedSlots"
        )
    return observation, action


def to_vec_env(
    envs: ParallelEnv | Sequence[ParallelEnv],
    *,
    copies: int = 1,
    num_cpus: int = 0,
    base_class: Literal["stable_baselines3", "gymnasium"] = "stable_baselines3",
    seed: int = 0,
) -> Any:
    """A vector env over every agent of ``envs`` (one parallel env or a list), ``copies``
    copies each, stepped in ``num_cpus`` processes (0: in this one); a Stable-Baselines3
    ``VecEnv`` (``base_class="stable_baselines3"``) or a gymnasium ``VectorEnv``. The
    envs given are reset (with ``seed``) to check them; the vector env steps copies.

    ``ValueError`` for a bad count, base class or seed, envs whose spaces differ, an
    observation that is not a ``Box`` or ``Discrete`` (wrap in
    :class:`~mfllm_env.wrappers.FlattenObservations`), or agents that do not all act at
    every step (wrap in :class:`~mfllm_env.wrappers.FixedSlots`)."""
    check_count("copies", copies, 1)
    check_count("num_cpus", num_cpus, 0)
    seed = check_seed(seed)
    if seed is None:
        raise ValueError("seed must be an integer >= 0, got None")
    if base_class not in BASE_CLASSES:
        raise ValueError(f"base_class must be one of {BASE_CLASSES}, got {base_class!r}")
    envs = [envs] if isinstance(envs, ParallelEnv) else list(envs)
    if not envs:
        raise ValueError("to_vec_env needs at least one env")
    checked = [_check_env(env, seed) for env in envs]
    if any(pair != checked[0] for pair in checked[1:]):
        raise ValueError("the envs have different observation or action spaces")
    import supersuit as ss
    from supersuit.vector import MakeCPUAsyncConstructor

    # concat_vec_envs_v1 copies one env; the same constructor joins several different ones.
    markov = [ss.pettingzoo_env_to_vec_env_v1(env) for env in envs]
    vector_env_fns = [_Copy(env) for env in markov for _ in range(copies)]
    observation, action = checked[0]
    vector = MakeCPUAsyncConstructor(min(num_cpus, len(vector_env_fns)))(
        vector_env_fns, observation, action
    )
    vector.reset(seed=seed)
    if base_class == "gymnasium":
        return vector
    return _stable_baselines3(vector)


def _stable_baselines3(vector: Any) -> Any:
    """SuperSuit's Stable-Baselines3 wrapper of ``vector``, with the ``seed`` SB3 calls
    (``PPO(seed=...)``: SuperSuit's wrapper passes it to a vector env that has none) and
    boolean ``dones`` (SuperSuit's are 0/1 integers, which SB3's ``VecNormalize`` takes
    for indices), and the ``render_mode`` SB3's wrappers ask every sub-environment for."""
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SeededSB3VecEnv(SB3VecEnvWrapper):
        """``seed(s)``: the next ``reset`` resets sub-environment ``i`` with ``s + i``."""

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            if attr_name == "render_mode":
                return [self.render_mode] * self.num_envs
            return super().get_attr(attr_name, indices)

        def step_wait(self) -> Any:
            observations, rewards, dones, infos = super().step_wait()
            return observations, rewards, dones.astype(bool), infos

        _next_seed: int | None = None

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._next_seed = check_seed(seed)
            return [None if seed is None else seed + i for i in range(self.num_envs)]

        def reset(self, seed: int | None = None, options: dict | None = None) -> Any:
            if seed is not None:
                self.seed(seed)
            seed, self._next_seed = self._next_seed, None
            observations, self.reset_infos = self.venv.reset(seed=seed, options=options)
            return observations

    return SeededSB3VecEnv(vector)


class _Copy:
    """A picklable factory of one copy of ``env`` (for SuperSuit's worker processes)."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def __call__(self) -> Any:
        import cloudpickle

        return cloudpickle.loads(cloudpickle.dumps(self.env))
