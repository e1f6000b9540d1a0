"""PlannerEnv: an intervention planner (the leader) steering a simulated population.

## Description
A Stackelberg game (a leader that moves first, followers that respond) as a PettingZoo
parallel game with one agent, ``"planner"``: the core's
:class:`~mfllm_env.core.leader.LeaderEnv` over the population's env, the planner playing
the leader's role. An episode replays one event in a
:class:`~mfllm_env.population_env.PopulationEnv`: the first ``warmup`` reactions are the
real ones (the planner does not act during warm-up), then, every ``every`` population
steps, the planner acts first -- it intervenes or waits -- and the population responds for
the next ``every`` steps. The population is a frozen policy passed in (an LLM population,
say an MF-LLM :class:`~agents.policies.LLMPolicy`) or ``"synthetic"``: the synthetic
scenario's ground-truth response model (:class:`~mfllm_env.synthetic.SyntheticResponse`),
part of the population env's transition (no policy acts; it is seeded as one would be).

| Import            | ``pettingzoo.make("parallel", "mfllm/Planner-v0", scenario=...)``   |
|-------------------|-----------------------------------------------------------------------|
| Agents            | ``["planner"]``                                                      |
| Action space      | ``Discrete(len(menu))`` (``action_mode="menu"``, option 0 = wait) or  |
|                   | ``FreeText(max_message_length)`` (``action_mode="text"``)             |
| Observation space | ``Dict(event: FreeText, step_shares: Box(0, 1, (history_length, K)),  |
|                   | shares: Box(K), mean_field: FreeText, steps_left: Discrete,           |
|                   | budget_left: Discrete)``                                              |

## Observation space
``event``: the source post. ``step_shares``: the label shares of the population's
reactions in each of the last ``history_length`` population steps, oldest first (rows
before the first step are zeros). ``shares``/``mean_field``: the population's mean field
(numbers and text). ``steps_left``: the planner's decisions left, this one included.
``budget_left``: interventions left.

## Interventions
A menu option (:class:`InterventionOption`) posts its ``messages`` from the ``official``
account into the reaction stream (:meth:`PopulationEnv.inject`: the mean-field model and
every later agent see them) and adds its ``note`` to the population signal: the agents
acting in the next ``every`` steps see it under their mean-field text. An option with a
``target`` posts nothing publicly: its note reaches only agents whose profile ``group``
is the target (the synthetic population's groups). In text mode the planner's string is
the message (posted and shown as the note); an empty string waits. The message's stance
label (the option's ``label``; in text mode the labeller's, with the scheme's fallback
counted in ``stats["fallback"]``) is what the synthetic population responds to
(:data:`~mfllm_env.synthetic.LABEL_EFFECTS`: a deny-labelled message acts as a debunk).

Each intervention costs ``cost`` (or the option's own ``cost``) and uses one unit of
``budget``; once the budget is spent an intervention is ignored (no cost), counted in
``stats["over_budget"]``. In menu mode ``infos["planner"]["action_mask"]`` marks the
options the budget still allows.

## Bad input: what raises, what falls back
The rule of :class:`~mfllm_env.population_env.PopulationEnv`. The call is wrong, it
raises: ``actions`` not a mapping (``TypeError``), a key other than ``"planner"``
(``ValueError``), ``step`` before ``reset`` or after the end (``RuntimeError``), a seed
other than ``None`` or an integer >= 0 (``ValueError``); nothing changes, the env keeps
working. The planner's action is wrong, it waits, counted: a missing action, a value of
the wrong type (a float, a bool, an array...), an option id out of range (menu mode) or a
string that cannot be written as UTF-8 (text mode) is invalid, ``infos["planner"]
["invalid_action"]`` says so and ``stats["invalid_action"]`` counts it.

## Reward
``reward = -distance(target, window shares) - cost`` where the window shares are the label
shares of the population's reactions in the ``every`` steps after the decision, and
``distance`` is total variation (``"tv"``, default), ``"js"`` or ``"kl"``
(KL(target || shares), smoothed). Only reactions after the warm-up are scored. The
return is minus the sum of the windows' distances (every window counts once, a shorter
last one too) minus the costs. ``target`` gives a weight >= 0 per label (a mapping, labels
left out weigh 0, or one weight per label), scaled to sum to 1 (``{"deny": 3, "query": 1}``
is 75% deny, 25% query); it defaults, for SDQC stance, to :data:`DEBUNK_TARGET` (a false
rumour: little support, more deny and query).

## Episode end
After ``horizon`` reactions past warm-up (all of the scenario's by default): the planner
terminates. :meth:`PlannerEnv.summary` then gives the return, the interventions and the
final shares; :attr:`PlannerEnv.trajectory` the shares of every population step.

## Arguments
``scenario``, ``population="synthetic"``, ``every=1``, ``budget=3``, ``cost=0.05``,
``horizon=None``, ``target=None``, ``distance="tv"``, ``action_mode="menu"``,
``menu=None`` (:data:`DEFAULT_MENU`, less its targeted options whose group no author of
the scenario belongs to), ``official=OFFICIAL_ACCOUNT``,
``history_length=8`` (at most :data:`MAX_HISTORY_LENGTH`), ``agents_per_step=8``,
``warmup=16``, ``mean_field=None``,
``labeler=None``, ``max_message_length=280``, ``render_mode=None``; further keyword
arguments go to :class:`PopulationEnv`.

>>> import pettingzoo, mfllm_env
>>> env = pettingzoo.make("parallel", "mfllm/Planner-v0",
...                       scenario=mfllm_env.synthetic_scenario(seed=0, n_reactions=64))
>>> observations, infos = env.reset(seed=0)
>>> while env.agents:
...     observations, rewards, terminations, truncations, infos = env.step({"planner": 1})
>>> env.summary()["interventions"]
3
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from gymnasium import spaces

from mfllm_env.checks import (
    check_count,
    check_seed,
    is_finite_number,
    is_integer,
    is_text,
)
from mfllm_env.core.leader import LeaderEnv
from mfllm_env.labels import UNLABELLED, ActionLabeler
from mfllm_env.mean_field import MeanFieldModel
from mfllm_env.metrics import js_divergence, kl_divergence, total_variation
from mfllm_env.population_env import PopulationEnv
from mfllm_env.scenario import Author, Scenario
from mfllm_env.simulation import Policy
from mfllm_env.spaces import FreeText
from mfllm_env.synthetic import LABEL_EFFECTS, Intervention, SyntheticResponse

PLANNER = "planner"

OFFICIAL_ACCOUNT = Author(
    "official_factcheck",
    {
        "name": "Official Fact Check",
        "followers": 1_000_000,
        "verified": True,
        "description": "The official fact-checking account.",
    },
)

DEBUNK_TARGET: dict[str, float] = {"support": 0.1, "deny": 0.4, "query": 0.3, "comment": 0.2}
"""The default target for SDQC stance: the response to a false rumour one would want."""

DISTANCES = {"tv": total_variation, "js": js_divergence, "kl": kl_divergence}

MAX_HISTORY_LENGTH = 1024
"""Most population steps the planner's ``step_shares`` observation can hold."""


@dataclass(frozen=True)
class InterventionOption:
    """One menu item: ``messages`` posted publicly from the official account, a ``note``
    added to the population signal, the messages' stance ``label``, an optional profile
    group ``target`` (then nothing is posted publicly), the ``cost`` (``None``: the env's)
    and the ``strength`` of its effect on the synthetic population."""

    name: str
    messages: tuple[str, ...] = ()
    label: str | None = None
    note: str = ""
    target: str | None = None
    cost: float | None = None
    strength: float = 1.0

    @property
    def waits(self) -> bool:
        return not self.messages and not self.note


WAIT = InterventionOption("wait")

DEFAULT_MENU: tuple[InterventionOption, ...] = (
    WAIT,
    InterventionOption(
        "debunk",
        messages=(
            "Fact check: this claim is false. No official source confirms it, "
            "please do not share it.",
        ),
        label="deny",
        note="Official fact check: the claim is false.",
    ),
    InterventionOption(
        # The reference MF-LLM code's intervention: four doubtful comments at once.
        "doubt",
        messages=(
            "I doubt this is true, has anyone verified it?",
            "Is there any official source for this?",
            "Not sure this is real, where was it confirmed?",
            "Can anyone confirm this before we share it?",
        ),
        label="query",
        note="Many users doubt this claim and ask for sources.",
    ),
    InterventionOption(
        "calm",
        messages=("Please stay calm and wait for official information before sharing.",),
        label="comment",
        note="Official advice: wait for verified information before sharing.",
    ),
    InterventionOption(
        "debunk-believers",
        label="deny",
        note="A fact checker writes to you: this claim is false.",
        target="believer",
    ),
)
"""The default menu, for SDQC stance in English (option 0 waits)."""


def _is_amount(value: object) -> bool:
    """A finite number >= 0 (a cost, a strength, a target weight)."""
    return is_finite_number(value) and value >= 0  # type: ignore[operator]


def _target_vector(
    target: Mapping[str, float] | Sequence[float], labels: Sequence[str]
) -> np.ndarray:
    """The target as shares over ``labels``: weights (a mapping label -> weight, missing
    labels 0, or one weight per label) scaled to sum to 1."""
    if isinstance(target, Mapping):
        unknown = sorted(str(name) for name in set(target) - set(labels))
        if unknown:
            raise ValueError(f"target names unknown labels {unknown}; labels are {list(labels)}")
        values = [target.get(label, 0.0) for label in labels]
    elif isinstance(target, Sequence) and not isinstance(target, (str, bytes)):
        values = list(target)
        if len(values) != len(labels):
            raise ValueError(
                f"target needs {len(labels)} shares ({list(labels)}), got {len(values)}"
            )
    else:
        raise TypeError(
            f"target must map labels to shares or list one share per label, got {target!r}"
        )
    if not all(_is_amount(value) for value in values) or not any(values):
        raise ValueError(
            "target shares must be finite numbers >= 0 and not all 0, got "
            + ", ".join(f"{label} {value!r}" for label, value in zip(labels, values, strict=True))
        )
    vector = np.asarray(values, dtype=np.float64)
    vector /= vector.max()  # first, so that a sum of huge weights cannot overflow
    return vector / vector.sum()


class PlannerEnv(LeaderEnv):
    """An intervention planner against a frozen population; see the module docstring.

    The core's :class:`~mfllm_env.core.leader.LeaderEnv` over the population env, the
    planner playing the leader's role itself (:meth:`lead`, :meth:`settle`,
    :meth:`leader_observation`, :meth:`leader_waits`: it sits out the warm-up) and
    recording every population step (:meth:`_follower_step`).

    Bad input (the module docstring's "Bad input" section): a wrong *call* raises and
    changes nothing (``actions`` not a mapping: ``TypeError``; a key other than
    ``"planner"``: ``ValueError``; ``step`` before ``reset`` or after the end:
    ``RuntimeError``; a bad seed: ``ValueError``); a wrong *action* waits, flagged in
    ``infos["planner"]["invalid_action"]`` and counted in ``stats["invalid_action"]``.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "mfllm/Planner-v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        scenario: Scenario,
        population: Policy | Literal["synthetic"] = "synthetic",
        *,
        every: int = 1,
        budget: int = 3,
        cost: float = 0.05,
        horizon: int | None = None,
        target: Mapping[str, float] | Sequence[float] | None = None,
        distance: str = "tv",
        action_mode: Literal["menu", "text"] = "menu",
        menu: Sequence[InterventionOption] | None = None,
        official: Author = OFFICIAL_ACCOUNT,
        history_length: int = 8,
        agents_per_step: int = 8,
        warmup: int = 16,
        mean_field: MeanFieldModel | None = None,
        labeler: ActionLabeler | None = None,
        max_message_length: int = 280,
        render_mode: str | None = None,
        **population_options: Any,
    ) -> None:
        check_count("every", every, 1)
        check_count("budget", budget, 0)
        check_count("history_length", history_length, 1, MAX_HISTORY_LENGTH)
        check_count("max_message_length", max_message_length, 1)
        check_count("warmup", warmup, 0)
        check_count("agents_per_step", agents_per_step, 1)
        if horizon is not None:
            check_count("horizon", horizon, 1)
        if not _is_amount(cost):
            raise ValueError(f"cost must be a finite number >= 0, got {cost!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
        if action_mode not in ("menu", "text"):
            raise ValueError(f"action_mode must be 'menu' or 'text', got {action_mode!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if not isinstance(scenario, Scenario):
            raise TypeError(f"scenario must be a mfllm_env.Scenario, got {type(scenario).__name__}")
        synthetic = isinstance(population, str)
        if synthetic and population != "synthetic":
            raise ValueError(f"population must be a policy or 'synthetic', got {population!r}")
        if not synthetic and not (hasattr(population, "act") and hasattr(population, "reset")):
            raise TypeError("population must have reset(seed) and act(observations)")
        if warmup >= len(scenario.reactions):  # checked as a count above
            raise ValueError(
                f"scenario {scenario.scenario_id!r} has {len(scenario.reactions)} reactions: "
                f"none left to plan for after a warm-up of {warmup}"
            )
        self.population_env = PopulationEnv(
            scenario,
            agents_per_step=agents_per_step,
            warmup=warmup,
            max_reactions=None if horizon is None else min(warmup + horizon, len(scenario)),
            action_mode="label" if synthetic else getattr(population, "action_mode", "text"),
            mean_field=mean_field,
            labeler=labeler,
            response=SyntheticResponse(scenario) if synthetic else None,
            **population_options,
        )
        pop = self.population_env
        self.scheme = pop.scheme
        labels = self.scheme.labels
        if target is None:
            if set(labels) != set(DEBUNK_TARGET):
                raise ValueError(f"give a target for the label scheme {labels}")
            target = DEBUNK_TARGET
        self.target = _target_vector(target, labels)
        groups = {r.author.profile.get("group") for r in pop.scenario.reactions}
        if menu is None:  # the default menu's targeted options, where their group exists
            menu = [o for o in DEFAULT_MENU if o.target is None or o.target in groups]
        self.menu = tuple(menu)
        self._check_menu(groups)
        self.every = every
        self.budget = budget
        self.cost = float(cost)
        self.distance = distance
        self._distance = DISTANCES[distance]
        self.action_mode = action_mode
        self.official = official
        self.history_length = history_length
        self.max_message_length = max_message_length
        self.warmup = warmup
        self._first_step = warmup // agents_per_step  # the first step with a reaction to plan for
        self.num_decisions = math.ceil((pop.num_steps - self._first_step) / every)
        if action_mode == "text":
            pop.require_labeler("a text-mode planner's messages must be labelled")
        k = self.scheme.size
        self.leader_observation_space = spaces.Dict(
            {
                "event": FreeText(pop.max_text_length),
                "step_shares": spaces.Box(0.0, 1.0, (history_length, k), np.float32),
                "shares": spaces.Box(0.0, 1.0, (k,), np.float32),
                "mean_field": FreeText(pop.max_text_length),
                "steps_left": spaces.Discrete(self.num_decisions + 1),
                "budget_left": spaces.Discrete(budget + 1),
            }
        )
        self.leader_action_space: spaces.Space[Any] = (
            spaces.Discrete(len(self.menu))
            if action_mode == "menu"
            else FreeText(max_message_length)
        )
        self._reset_episode_state()
        followers = None if synthetic else population  # None: the response draws them
        super().__init__(pop, followers, every=every, render_mode=render_mode, role=self)

    def _check_menu(self, groups: set[Any]) -> None:
        strangers = [o for o in self.menu if not isinstance(o, InterventionOption)]
        if strangers:
            raise TypeError(
                f"menu options must be InterventionOption objects, got {strangers[0]!r}"
            )
        if not self.menu or not self.menu[0].waits:
            raise ValueError("the menu's option 0 must wait (no messages, no note)")
        names = [option.name for option in self.menu]
        if len(set(names)) != len(names):
            raise ValueError(f"menu option names must be unique, got {names}")
        for option in self.menu[1:]:
            if option.waits:
                raise ValueError(f"menu option {option.name!r} does nothing; only option 0 waits")
            if option.label not in self.scheme.labels:
                raise ValueError(
                    f"menu option {option.name!r} has label {option.label!r}, not one of "
                    f"{self.scheme.labels}"
                )
            if option.target is not None and option.target not in groups:
                raise ValueError(
                    f"menu option {option.name!r} targets group {option.target!r}, which no "
                    "author of this scenario belongs to (profile 'group')"
                )
            if option.cost is not None and not _is_amount(option.cost):
                raise ValueError(
                    f"menu option {option.name!r}: cost must be a finite number >= 0, "
                    f"got {option.cost!r}"
                )
            if not _is_amount(option.strength):
                raise ValueError(
                    f"menu option {option.name!r}: strength must be a finite number >= 0, "
                    f"got {option.strength!r}"
                )

    def _reset_episode_state(self) -> None:
        k = self.scheme.size
        self._history = np.zeros((self.history_length, k), dtype=np.float32)
        self._budget_left = self.budget
        self._decision = 0
        self._return = 0.0
        self._note: tuple[str, str | None] | None = None
        self._pending_intervention: str | None = None
        self._window: list[np.ndarray] = []  # the decision's reactions after warm-up
        self._cost = 0.0  # the decision's intervention cost
        self.trajectory: list[dict[str, Any]] = []
        self.interventions: list[dict[str, Any]] = []
        self.stats = {"interventions": 0, "over_budget": 0, "invalid_action": 0, "fallback": 0}

    # -- PettingZoo API and the leader's role ---------------------------------------------

    leader_id = PLANNER

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        check_seed(seed)
        self._reset_episode_state()
        observations, _ = super().reset(seed=seed, options=options)
        return observations, {PLANNER: self._info()}

    def leader_waits(self) -> bool:
        """True during the warm-up's population steps (no reaction to plan for)."""
        return self._population_step_index() < self._first_step

    def leader_observation(self) -> dict[str, Any]:
        return self._observe()

    def _population_step_index(self) -> int:
        return self.population_env.reaction_index(self.population_env.agents[0]) // (
            self.population_env.agents_per_step
        )

    def _observe(self) -> dict[str, Any]:
        mean_field = self.population_env.mean_field
        return {
            "event": self.population_env.scenario.event_text[: self.population_env.max_text_length],
            "step_shares": self._history.copy(),
            "shares": mean_field.shares.astype(np.float32),
            "mean_field": mean_field.text[: self.population_env.max_text_length],
            "steps_left": self.num_decisions - self._decision,
            "budget_left": self._budget_left,
        }

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"decision": self._decision}
        if self.action_mode == "menu":
            mask = np.ones(len(self.menu), dtype=np.int8)
            if not self._budget_left:
                mask[1:] = 0
            info["action_mask"] = mask
        return info

    def _follower_step(self) -> tuple[dict[str, bool], dict[str, bool]]:
        """One population step, recorded: the label ids of the reactions it made after
        the warm-up join the decision's window (a step can straddle the end of the
        warm-up; its real reactions are not the planner's doing and are not scored)."""
        pop = self.population_env
        acting = {agent: self._follower_observations[agent] for agent in pop.agents}
        if self._note is not None:
            note, target = self._note
            for agent, observation in acting.items():
                author = pop.scenario.reactions[pop.reaction_index(agent)].author
                if target is None or author.profile.get("group") == target:
                    text = observation["mean_field"]
                    acting[agent] = {**observation, "mean_field": f"{text}\n{note}".strip()}
        start = pop.reaction_index(pop.agents[0])
        observations, _, terminations, truncations, _ = pop.step(self.follower_actions(acting))
        self._follower_observations = {a: observations[a] for a in pop.agents}
        stop = start + len(acting)
        ids = pop.world_label_ids[start:stop]
        planned = pop.world_label_ids[max(start, self.warmup) : stop]
        k = self.scheme.size
        shares = np.bincount(ids, minlength=k) / ids.size
        self._history = np.roll(self._history, -1, axis=0)
        self._history[-1] = shares
        world = pop.world_label_ids[:stop]
        self.trajectory.append(
            {
                "reactions": [start, stop],
                "warmup": start < self.warmup,
                "shares": shares.tolist(),
                "cumulative": (np.bincount(world, minlength=k) / world.size).tolist(),
                "intervention": self._pending_intervention,
            }
        )
        self._pending_intervention = None
        self._window.append(planned)
        return terminations, truncations

    def _parse(self, action: Any) -> tuple[InterventionOption | None, bool]:
        """The intervention an action asks for (``None``: wait) and whether it was invalid."""
        if self.action_mode == "menu":
            if not is_integer(action) or not 0 <= action < len(self.menu):
                return None, True
            option = self.menu[int(action)]
            return (None if option.waits else option), False
        if not is_text(action):
            return None, True
        text = " ".join(action.split())[: self.max_message_length]
        if not text:
            return None, False
        if not self._budget_left:  # ignored anyway (step counts it): not labelled
            return InterventionOption("message", messages=(text,)), False
        label_id = int(self.population_env.label_texts([text])[0])
        if label_id == UNLABELLED:
            label_id = self.scheme.fallback_id
            self.stats["fallback"] += 1
        name = self.official.profile.get("name", self.official.author_id)
        return (
            InterventionOption(
                "message",
                messages=(text,),
                label=self.scheme.labels[label_id],
                note=f"{name}: {text}",
            ),
            False,
        )

    def _intervene(self, option: InterventionOption) -> float:
        pop = self.population_env
        at = pop.reaction_index(pop.agents[0])
        label_id = self.scheme.labels.index(option.label)
        if option.messages and option.target is None:
            pop.inject(option.messages, [label_id] * len(option.messages), self.official)
        self._note = (option.note, option.target) if option.note else None
        kind = LABEL_EFFECTS.get(option.label or "")
        if kind is not None:  # told to whatever models the population's response to it
            intervention = Intervention(
                at=at, kind=kind, strength=option.strength, target=option.target
            )
            for responder in (self.followers, pop.response):
                if hasattr(responder, "observe_intervention"):
                    responder.observe_intervention(intervention)
        cost = self.cost if option.cost is None else option.cost
        self._budget_left -= 1
        self.stats["interventions"] += 1
        self._pending_intervention = option.name
        self.interventions.append(
            {
                "decision": self._decision,
                "at": at,
                "option": option.name,
                "label": option.label,
                "target": option.target,
                "messages": list(option.messages),
                "cost": cost,
            }
        )
        return cost

    def lead(self, action: Any) -> dict[str, Any]:
        """The planner's move (:class:`~mfllm_env.core.leader.LeaderEnv` calls it before
        the population responds): intervene or wait; an invalid action waits, counted."""
        option, invalid = self._parse(action)
        self.stats["invalid_action"] += invalid
        over_budget = option is not None and self._budget_left == 0
        if over_budget:
            self.stats["over_budget"] += 1
            option = None
        self._cost = self._intervene(option) if option is not None else 0.0
        self._window = []
        return {
            "decision": self._decision,
            "intervention": option.name if option else None,
            "label": option.label if option else None,
            "invalid_action": invalid,
            "over_budget": over_budget,
            "cost": self._cost,
        }

    def settle(self) -> tuple[float, dict[str, Any]]:
        """The reward for the population's response to the decision: minus the distance
        of its window's shares to the target, minus the intervention's cost."""
        self._note = None
        ids = np.concatenate(self._window)
        shares = np.bincount(ids, minlength=self.scheme.size) / ids.size
        distance = float(self._distance(self.target, shares))
        reward = -distance - self._cost
        self._return += reward
        self._decision += 1
        info: dict[str, Any] = {"window_shares": shares.tolist(), "distance": distance}
        if self.population_env.agents:  # the next decision's number and action mask
            info.update(self._info())
        return reward, info

    def summary(self) -> dict[str, Any]:
        """The episode so far: return, interventions, cost, and the label shares of the
        simulated and the real reactions after warm-up, with their distance to the target."""
        pop = self.population_env
        k = self.scheme.size
        sim = pop.world_label_ids[self.warmup :]
        sim = sim[sim >= 0]
        real = pop.real_label_ids[self.warmup : self.warmup + sim.size]
        summary: dict[str, Any] = {
            "return": self._return,
            "decisions": self._decision,
            "interventions": self.stats["interventions"],
            "cost": sum(i["cost"] for i in self.interventions),
            "stats": dict(self.stats),
        }
        if sim.size:
            final = np.bincount(sim, minlength=k) / sim.size
            real_shares = np.bincount(real, minlength=k) / real.size
            summary["final_shares"] = final.tolist()
            summary["real_shares"] = real_shares.tolist()
            summary["final_distance"] = float(self._distance(self.target, final))
        return summary

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        shares = ", ".join(
            f"{name} {share:.2f}"
            for name, share in zip(self.scheme.labels, self._history[-1], strict=True)
        )
        return (
            f"decision {self._decision}/{self.num_decisions}, budget {self._budget_left}: {shares}"
        )


# -- baseline planners (menu mode) --------------------------------------------------------


def _option_index(env: PlannerEnv, name: str) -> int:
    names = [option.name for option in env.menu]
    if name not in names:
        raise ValueError(f"no menu option {name!r}; the menu has {names}")
    return names.index(name)


class NoIntervention:
    """Always waits."""

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        return dict.fromkeys(observations, 0)


class ScriptedPlanner:
    """The reference code's intervention: ``option`` (four doubtful comments by default)
    at the fixed decisions ``at`` (the first one after warm-up by default), never else."""

    def __init__(self, env: PlannerEnv, option: str = "doubt", at: Sequence[int] = (0,)) -> None:
        self.index = _option_index(env, option)
        self.at = frozenset(at)
        self._decision = 0

    def reset(self, seed: int | None = None) -> None:
        self._decision = 0

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        action = self.index if self._decision in self.at else 0
        self._decision += 1
        return dict.fromkeys(observations, action)


class ThresholdPlanner:
    """Rule-based: ``option`` (debunk) whenever the share of ``label`` (support) among the
    last step's reactions is above ``threshold``, while the budget lasts."""

    def __init__(
        self,
        env: PlannerEnv,
        option: str = "debunk",
        label: str = "support",
        threshold: float = 0.3,
    ) -> None:
        self.index = _option_index(env, option)
        if label not in env.scheme.labels:
            raise ValueError(f"label {label!r} is not one of {env.scheme.labels}")
        self.label = env.scheme.labels.index(label)
        self.threshold = threshold

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        actions = {}
        for agent, observation in observations.items():
            last = observation["step_shares"][-1]
            fire = observation["budget_left"] > 0 and last[self.label] > self.threshold
            actions[agent] = self.index if fire else 0
        return actions


class RandomPlanner:
    """A uniformly random menu option at every decision."""

    def __init__(self, env: PlannerEnv, seed: int | None = None) -> None:
        self.size = len(env.menu)
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        return {agent: int(self._rng.integers(self.size)) for agent in observations}


BASELINE_PLANNERS = {
    "none": lambda env: NoIntervention(),
    "scripted": ScriptedPlanner,
    "threshold": ThresholdPlanner,
    "random": RandomPlanner,
}


def run_planner_episode(env: PlannerEnv, planner: Policy, seed: int) -> dict[str, Any]:
    """One episode of ``planner`` in ``env`` (both reset with ``seed``): the summary, the
    decisions' infos and the share trajectory, JSON-ready."""
    observations, _ = env.reset(seed=seed)
    planner.reset(seed=seed)
    decisions = []
    while env.agents:
        actions = planner.act(observations)
        observations, rewards, _, _, infos = env.step(actions)
        info = {k: v for k, v in infos[PLANNER].items() if k != "action_mask"}
        decisions.append({**info, "reward": rewards[PLANNER]})
    return {
        **env.summary(),
        "decision_log": decisions,
        "trajectory": env.trajectory,
        "injected": env.population_env.injected,
    }
