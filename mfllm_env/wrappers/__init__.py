"""PettingZoo-level wrappers that let outside RL libraries train on this package's envs.

Stable-Baselines3 (through SuperSuit's vector-env conversion) and RLlib expect what our
envs do not always give: the same agents acting at every step, and ``Box`` observations.
Two wrappers close the gap, and one adapter turns the result into a vector env:

- :class:`FixedSlots`: a fixed set of ``n_slots`` agents (``slot_0``, ...) over an env
  whose acting agents change (the rumour population's agents each act once). Each step,
  slot ``i`` plays the env's ``i``-th acting agent; a slot with no agent to play is idle:
  it sees a blank observation with ``active`` 0 and its action is ignored.
- :class:`FlattenObservations`: observations as one ``float32`` ``Box`` -- the numeric
  parts of a ``Dict`` observation flattened (``Discrete`` one-hot), text parts left out.
- :func:`to_vec_env` (:mod:`mfllm_env.wrappers.vector`): SuperSuit's
  ``pettingzoo_env_to_vec_env_v1`` and ``concat_vec_envs_v1``, seeded; the only module
  that imports SuperSuit (lazily, when it is called), so moving to ``pettingzoo.wrappers``
  is a change to that one file.

This package imports neither torch, SuperSuit, Stable-Baselines3 nor Ray.
"""

from mfllm_env.wrappers.flatten import FlattenObservations
from mfllm_env.wrappers.slots import FixedSlots
from mfllm_env.wrappers.vector import to_vec_env

__all__ = ["FixedSlots", "FlattenObservations", "to_vec_env"]
