"""PopulationEnv: a real event replayed as a PettingZoo parallel game.

## Description
The generic :class:`~mfllm_env.core.env.GameEnv` over the rumour family's game
(:class:`~mfllm_env.games.rumour.game.RumourGame`). One episode replays one
:class:`~mfllm_env.scenario.Scenario`: an event (a source post)
and the population's reactions to it, in time order. Each reaction is one decision of one
agent. Every step activates the authors of the next ``agents_per_step`` reactions (16 by
default, as in MF-LLM); each of them sees the event, its own state (profile and its own
earlier posts) and the population's mean field, and answers with an action. Actions are
labelled along one label scheme (SDQC stance by default), and the label histogram is the
population state that simulated and real populations are compared on.

For the first ``warmup`` reactions the *real* reactions drive the mean field (the
simulation is anchored on observed data); after that the agents' own actions do (free
rollout). Agents act in every step, warm-up included, so that their labels can be scored
against the real ones throughout.

| Import             | ``pettingzoo.make("parallel", "mfllm/Population-v0", scenario=...)`` |
|--------------------|------------------------------------------------------------------------|
| Agents             | one per reaction, ``"reaction_00000"``, ...; each acts once         |
| Active agents      | the authors of the next ``agents_per_step`` reactions                  |
| Action space       | ``FreeText(max_action_length)`` (``action_mode="text"``) or            |
|                    | ``Discrete(K)`` over the scheme's labels (``action_mode="label"``)     |
| Observation space  | ``Dict(event: FreeText, state: FreeText, mean_field: FreeText,         |
|                    | shares: Box(0, 1, (K,), float32))``                                    |
| State space        | ``Box(0, 1, (2K + 1,))``: mean-field shares, simulated cumulative      |
|                    | shares, fraction of reactions done                                     |

## Action space
Text mode accepts any string (cut to ``max_action_length`` characters). It is labelled by
the labeller; a text the labeller cannot label (it returns -1) gets the scheme's
``fallback`` label. Label mode takes an int (a Python or numpy integer, not a bool) in
``[0, K)``. Label mode has no texts: the mean-field model and the agents' histories see
label names, for real reactions (warm-up) and actions alike.

## Bad input: what raises, what falls back
One rule for both halves of the API, :meth:`PopulationEnv.step` and ``begin_step``:

* **The call is wrong: it raises.** ``actions`` that is not a mapping: ``TypeError``. A
  key that is not an agent acting this step (unknown, already terminated, not a string):
  ``ValueError`` naming the keys. ``step`` before ``reset`` or after the episode ended:
  ``RuntimeError``. ``reset(seed=...)`` with anything but ``None`` or an integer >= 0:
  ``ValueError``. Nothing of the episode changes before such an error, so the env keeps
  working with a corrected call.
* **An active agent's action is wrong: it falls back, counted.** A missing action, a
  value of the wrong type (a float, a bool, bytes, an array, ``None``...), an int out of
  range (label mode) or a string with characters that cannot be written as UTF-8 (lone
  surrogates; text mode) is an *invalid action*: the agent gets the fallback label and
  acts with an empty text. ``infos[agent]`` says so (``invalid_action``, ``fallback``;
  ``empty_action`` for an empty or whitespace-only string) and :attr:`PopulationEnv.stats`
  counts them over the episode (``invalid_action``, ``fallback``, ``empty_action``), as do
  the run's metrics.

Constructor arguments are checked at once: counts must be integers in the documented
range (at most :data:`~mfllm_env.checks.MAX_COUNT`), else ``ValueError`` naming the argument
and value; a ``labeler``, ``mean_field`` or ``reward_fn`` without the methods it needs is a
``TypeError``. What user-supplied components return is checked where it is used: a
labeller's ids must be integers in ``[-1, K)``, one per text; a ``response`` model's, integers
in ``[0, K)``, one per agent it draws for; a mean-field model must return
a :class:`~mfllm_env.mean_field.MeanField` with a text and ``K`` finite shares >= 0 summing
to 1; otherwise a ``ValueError`` names the component and what it returned. A ``response``
made for another scenario is refused at construction (``ValueError`` naming both).

## Observation space
``event``: the source post. ``state``: the agent's profile and up to ``history_length`` of
its own earlier posts in this episode (the real ones during warm-up, its own actions after).
``mean_field``: the mean-field model's text. ``shares``: the mean field's numeric label
shares (uniform before any action). Texts are cut to ``max_text_length`` characters. A
terminated agent's final observation is the one it acted on.

## Rewards
Pluggable through ``reward_fn(outcome: StepOutcome) -> array`` (one value per agent that
acted, in order, or one value for all), called in ``begin_step`` before the mean field is
updated: if it raises, or returns anything but finite numbers (``ValueError`` naming what
it returned), nothing of the episode has changed. The default, :class:`LabelMatchReward`,
gives each acting agent ``1[simulated label == real label] - kl_weight * KL(real step
shares || simulated step shares)`` (KL smoothed as in :func:`mfllm_env.metrics.kl_divergence`):
a per-agent match term and a shared population term. Newly activated agents get 0.

## Starting state
``reset`` activates the first batch; the mean field is the model's initial one.

## Episode end
An agent terminates right after its one action. The episode ends when every reaction
(up to ``max_reactions``) has been acted on; ``env.agents`` is then empty. No truncation.

## Infos
On activation: ``step``, ``reaction_index``, ``warmup``. After acting: also
``real_text``, ``real_label``/``real_label_id`` (human label where the data has one, else
the labeller's), ``real_label_source`` (``"human"``/``"labeller"``), ``sim_label``/
``sim_label_id``, ``fallback``, ``empty_action``, ``invalid_action``; and ``policy``
when the action was an :class:`~mfllm_env.spaces.AnnotatedText` (its ``info``: token
counts, likelihood, errors, as the policy reports them).

## Arguments
``scenario`` (required), ``agents_per_step=16``, ``warmup=50`` (real reactions that drive
the mean field), ``max_reactions=None`` (cut the episode), ``action_mode="text"``,
``label_dimension=None`` (the scenario's default dimension; or a
:class:`~mfllm_env.labels.LabelScheme`), ``labeler=None`` (the dimension's default
labeller; needed in text mode and for reactions without human labels),
``mean_field=None`` (a :class:`~mfllm_env.mean_field.HistogramMeanField`),
``reward_fn=None``, ``history_length=2``, ``max_text_length=2048``,
``max_action_length=1000``, ``render_mode=None`` (or ``"ansi"``), ``response=None``: the
population's own response as part of the transition (label mode; a
:class:`~mfllm_env.games.rumour.game.ResponseModel` such as the synthetic scenario's
ground truth, :class:`~mfllm_env.synthetic.SyntheticResponse`): an acting agent given no
action reacts with the label it draws, from the env's generator (seeded by ``reset``)
unless ``game.reset_response(seed)`` seeds it apart, as the planner env does.

>>> import pettingzoo, mfllm_env
>>> env = pettingzoo.make("parallel", "mfllm/Population-v0",
...                       scenario=mfllm_env.synthetic_scenario(seed=0, n_reactions=64),
...                       action_mode="label")
>>> observations, infos = env.reset(seed=0)
>>> len(env.agents)
16
>>> while env.agents:
...     actions = {agent: int(obs["shares"].argmax()) for agent, obs in observations.items()
...                if agent in env.agents}
...     observations, rewards, terminations, truncations, infos = env.step(actions)
>>> env.stats["actions"]
64

## Version history
* v0: initial release.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mfllm_env.core.env import GameEnv
from mfllm_env.games.rumour.game import ActionMode, ResponseModel, RewardFn, RumourGame
from mfllm_env.labels import ActionLabeler, LabelScheme
from mfllm_env.mean_field import MeanField, MeanFieldModel
from mfllm_env.scenario import Author, Scenario

__all__ = ["PopulationEnv"]


class PopulationEnv(GameEnv[dict[str, Any], Any]):
    """A population reacting to one event; see the module docstring.

    Bad input (the module docstring's "Bad input" section): a wrong *call* raises and
    changes nothing -- ``actions`` not a mapping (``TypeError``), keys of agents not acting
    now (``ValueError``), ``step`` before ``reset`` or after the end (``RuntimeError``), a
    seed other than ``None`` or an int >= 0 (``ValueError``); a wrong *action* of an acting
    agent (missing, wrong type, out of range, unwritable text) falls back to the scheme's
    fallback label, flagged in ``infos[agent]["invalid_action"]`` and counted in
    ``stats["invalid_action"]``.

    :meth:`begin_step` / :meth:`end_step` split a step around the mean-field update
    (``step(actions)`` is ``end_step(mean_field_model.update(begin_step(actions)))``), so
    that a runner updates the mean fields of several envs in one batched call
    (:func:`mfllm_env.core.runner.run_episodes`). The episode's state and results
    (:attr:`scenario`, :attr:`scheme`, :meth:`inject`, :attr:`last_record`,
    :attr:`world_label_ids`...) are the game's, read through the env.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/Population-v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }
    game: RumourGame

    def __init__(
        self,
        scenario: Scenario,
        *,
        agents_per_step: int = 16,
        warmup: int = 50,
        max_reactions: int | None = None,
        action_mode: ActionMode = "text",
        label_dimension: str | LabelScheme | None = None,
        labeler: ActionLabeler | None = None,
        mean_field: MeanFieldModel | None = None,
        reward_fn: RewardFn | None = None,
        history_length: int = 2,
        max_text_length: int = 2048,
        max_action_length: int = 1000,
        render_mode: str | None = None,
        response: ResponseModel | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        game = RumourGame(
            scenario,
            agents_per_step=agents_per_step,
            warmup=warmup,
            max_reactions=max_reactions,
            action_mode=action_mode,
            label_dimension=label_dimension,
            labeler=labeler,
            mean_field=mean_field,
            reward_fn=reward_fn,
            history_length=history_length,
            max_text_length=max_text_length,
            max_action_length=max_action_length,
            response=response,
        )
        super().__init__(game, render_mode=render_mode)
        self.state_space = game.state_space

    # The game's settings, as the env's.
    scenario = property(lambda self: self.game.scenario)
    scheme = property(lambda self: self.game.scheme)
    agents_per_step = property(lambda self: self.game.agents_per_step)
    warmup = property(lambda self: self.game.warmup)
    action_mode = property(lambda self: self.game.action_mode)
    history_length = property(lambda self: self.game.history_length)
    max_text_length = property(lambda self: self.game.max_text_length)
    max_action_length = property(lambda self: self.game.max_action_length)

    @property
    def labeler(self) -> ActionLabeler | None:
        return self.game.labeler

    @property
    def response(self) -> ResponseModel | None:
        """The population's own response model (``response=``), or ``None``."""
        return self.game.response

    @property
    def reward_fn(self) -> RewardFn:
        return self.game.reward_fn

    @reward_fn.setter
    def reward_fn(self, reward_fn: RewardFn) -> None:
        self.game.reward_fn = reward_fn

    @property
    def num_steps(self) -> int:
        """Steps in a full episode."""
        return self.game.num_steps

    def require_labeler(self, why: str) -> ActionLabeler:
        """The env's labeller, loading the scheme's default one if there is none yet;
        ``ValueError`` starting with ``why`` when there is no default."""
        return self.game.require_labeler(why)

    def label_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The env's labeller's ids for ``texts`` (-1: it could not label one)."""
        return self.game.label_texts(texts)

    def inject(
        self, texts: Sequence[str], label_ids: Sequence[int], author: Author
    ) -> dict[str, dict[str, Any]]:
        """See :meth:`RumourGame.inject <mfllm_env.games.rumour.game.RumourGame.inject>`."""
        return self.game.inject(texts, label_ids, author)

    def reaction_index(self, agent: str) -> int:
        """The index (in the scenario's reactions) of the reaction ``agent`` replays."""
        return self.game.reaction_index(agent)

    def reference_texts(self) -> dict[str, str]:
        """The real reactions of the active agents, by agent: for scoring their likelihood
        under a policy (NLL). A policy must not act on them."""
        return self.game.reference_texts()

    @property
    def injected(self) -> list[dict[str, Any]]:
        """The posts :meth:`inject` put into this episode's stream."""
        return self.game.injected

    @property
    def last_record(self) -> dict[str, Any] | None:
        """A JSON-ready summary of the last step (``None`` before the first step)."""
        return self.game.last_record

    def state(self) -> np.ndarray:
        """Mean-field shares, the simulated world's cumulative label shares (real labels in
        warm-up, the agents' after; the mean-field shares before any action) and the
        fraction of the episode's reactions already acted on."""
        return self.game.state()

    @property
    def mean_field(self) -> MeanField:
        return self.game.mean_field

    @property
    def real_label_ids(self) -> np.ndarray:
        """Real label id of every reaction of the episode (human where available)."""
        return self.game.real_label_ids

    @property
    def real_label_from_human(self) -> np.ndarray:
        """Whether each reaction's real label is a human one (``False``: the reaction has
        no human label and its real label is the labeller's)."""
        return self.game.real_label_from_human

    @property
    def sim_label_ids(self) -> np.ndarray:
        """The agents' label ids so far (-1 for reactions not yet acted on)."""
        return self.game.sim_label_ids

    @property
    def world_label_ids(self) -> np.ndarray:
        """Labels of the simulated world: real ones in warm-up, the agents' after it."""
        return self.game.world_label_ids

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        shares = ", ".join(
            f"{name} {share:.2f}"
            for name, share in zip(self.scheme.labels, self.mean_field.shares, strict=True)
        )
        return f"step {self._steps}/{self.num_steps}: {shares}"
