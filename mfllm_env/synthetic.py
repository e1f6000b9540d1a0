"""A synthetic event with known ground truth: the embedded default scenario.

The generator simulates a population whose stance (SDQC) depends on three things:

1. **Profile.** Each user belongs to one of four groups (believer, skeptic, curious,
   bystander) with group-specific base logits over ``support, deny, query, comment``,
   plus personal noise (``N(0, personal_noise^2)`` per label, fixed per user). The
   profile description reveals the group most of the time (``profile_clarity``), the way a
   bio hints at a stance.
2. **Mean-field feedback.** The population shares so far,
   ``s = (counts + prior_weight / K) / (n + prior_weight)``, enter the logits as
   ``feedback_strength * log(s)``: with strong feedback the crowd herds, so whichever
   labels win early keep winning, and different seeds of the same event lock into
   different mixes. An event-level framing bias ``N(0, framing_noise^2)`` per label, hidden
   from the event text, tilts the start. Queries also fade as the event ages
   (``query_decay`` per unit of episode progress): questions get answered.
3. **Interventions.** An :class:`Intervention` at reaction ``i`` adds its effect vector to
   the logits of every later reaction (of its ``target`` group only, when it names one),
   decaying with a half-life of ``half_life`` reactions (a debunk raises deny and query
   and lowers support; a doubt mostly raises query).

Each reaction's label is drawn from ``softmax(logits)``; its text is rendered from the
label by templates, so the label of every text is known (and the default SDQC labeller
recovers it from the text: text-mode simulations of this scenario are self-consistent).
The probability model is :meth:`SyntheticPopulation.label_probabilities`;
:class:`SyntheticResponse` plays it as the transition of a
:class:`~mfllm_env.population_env.PopulationEnv` (``response=``: the ground-truth population
an intervention planner is trained against, responding to interventions the way the
generator does). Each user's base logits are kept in ``metadata["user_logits"]`` for it.

With ``feedback_strength`` around 1 (the default), a policy that sees the mean field can
follow the real share trajectory while a policy that sees only profiles cannot;
``tests/test_synthetic.py``
shows exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mfllm_env.checks import check_count, check_seed
from mfllm_env.labels import SDQC
from mfllm_env.scenario import Author, Reaction, Scenario

GROUPS: dict[str, tuple[float, float, float, float]] = {
    # base logits over (support, deny, query, comment)
    "believer": (1.2, -1.0, -0.4, 0.6),
    "skeptic": (-0.8, 1.2, 0.4, 0.4),
    "curious": (-0.2, -0.4, 1.3, 0.4),
    "bystander": (0.1, -0.4, -0.2, 1.3),
}

INTERVENTION_EFFECTS: dict[str, tuple[float, float, float, float]] = {
    "debunk": (-1.5, 1.5, 0.5, 0.0),
    "confirm": (1.5, -1.5, -0.5, 0.0),
    "calm": (-0.5, -0.5, 0.0, 1.0),
    "doubt": (-0.8, 0.4, 1.2, 0.0),
}
LABEL_EFFECTS: dict[str, str] = {
    "support": "confirm",
    "deny": "debunk",
    "query": "doubt",
    "comment": "calm",
}
"""The intervention kind a message of each stance acts as (a planner's posts are labelled,
and their label decides their effect on the synthetic population)."""

_BIOS = {
    "believer": [
        "Patriot. I say it like it is.",
        "Trust your gut, not the mainstream media.",
        "Sharing the news they won't show you.",
    ],
    "skeptic": [
        "Fact-checker. Sources or it didn't happen.",
        "Journalist. Verify before you share.",
        "Science teacher, allergic to hoaxes.",
    ],
    "curious": [
        "Student. Always asking questions.",
        "Curious about everything, trying to understand.",
        "Just want to know what is really going on.",
    ],
    "bystander": [
        "Coffee, football and family.",
        "Living my best life.",
        "Music lover. Dog person.",
    ],
}
_NEUTRAL_BIOS = ["Here for the news.", "Opinions are my own.", "Twitter user since 2010."]
_LOCATIONS = ["London", "Paris", "New York", "Toronto", "Sydney", "Berlin", "", ""]
_CLAIMS = [
    "a second explosion has been reported near the city centre",
    "the suspect has been arrested by the police",
    "hostages have been released from the building",
    "the airport has been closed to all flights",
    "the minister has resigned over the scandal",
]
_OUTLETS = ["the BBC", "Reuters", "AP", "the police", "local news"]
_TEXTS = {
    "support": [
        "Confirmed, {outlet} reports the same.",
        "Official: {outlet} has confirmed this.",
        "BREAKING: {outlet} confirms this.",
        "I can confirm this is true.",
        "Exactly right, confirmed.",
    ],
    "deny": [
        "This is fake, {outlet} already debunked it.",
        "Hoax. Stop spreading false rumours.",
        "Not true. {outlet} says it never happened.",
        "False, this is fake news.",
        "This is a lie, it has been debunked.",
    ],
    "query": [
        "Is this true? Any source?",
        "Can anyone confirm this?",
        "Really? Is {outlet} reporting it?",
        "Source? Has anyone verified this?",
        "Wait, is this confirmed?",
    ],
    "comment": [
        "Thoughts with everyone there.",
        "Stay safe everyone.",
        "What a terrible day.",
        "Praying for the families.",
        "Following this closely.",
    ],
}


@dataclass(frozen=True)
class Intervention:
    """An intervention at reaction index ``at`` of kind ``kind`` (see INTERVENTION_EFFECTS),
    reaching every user, or only the users of profile group ``target``."""

    at: int
    kind: str = "debunk"
    strength: float = 1.0
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INTERVENTION_EFFECTS:
            raise ValueError(
                f"unknown intervention kind {self.kind!r}; known: {sorted(INTERVENTION_EFFECTS)}"
            )
        check_count("intervention index", self.at, 0)
        _check_parameter("intervention strength", self.strength)


MAX_PARAMETER = 1e6
"""Largest magnitude of a number of the response model (parameters, intervention
strengths): beyond it the logits overflow and the label probabilities are undefined."""

_POSITIVE_PARAMETERS = ("prior_weight", "half_life")
"""Parameters that divide: they must be at least 1 / MAX_PARAMETER."""

_NON_NEGATIVE_PARAMETERS = ("framing_noise", "personal_noise")
"""Standard deviations."""


def _check_parameter(name: str, value: object, minimum: float = -MAX_PARAMETER) -> None:
    """A clear ``ValueError`` unless ``value`` is a finite number in
    ``[minimum, MAX_PARAMETER]``."""
    number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not number or not minimum <= value <= MAX_PARAMETER:
        raise ValueError(
            f"{name} must be a number >= {minimum:g} and <= {MAX_PARAMETER:g}, got {value!r}"
        )


@dataclass(frozen=True)
class SyntheticPopulation:
    """The ground-truth response model of the synthetic scenario (see the module docstring)."""

    feedback_strength: float = 1.0
    prior_weight: float = 8.0
    framing_noise: float = 0.8
    personal_noise: float = 0.5
    query_decay: float = 1.0
    half_life: float = 60.0
    profile_clarity: float = 0.8
    interventions: tuple[Intervention, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in (
            "feedback_strength",
            "prior_weight",
            "framing_noise",
            "personal_noise",
            "query_decay",
            "half_life",
            "profile_clarity",
        ):
            minimum = (
                1 / MAX_PARAMETER
                if name in _POSITIVE_PARAMETERS
                else 0.0
                if name in _NON_NEGATIVE_PARAMETERS
                else -MAX_PARAMETER
            )
            _check_parameter(name, getattr(self, name), minimum)
        for intervention in self.interventions:
            if not isinstance(intervention, Intervention):
                raise TypeError(f"interventions must be Intervention objects, got {intervention!r}")

    def shares(self, counts: np.ndarray) -> np.ndarray:
        """The smoothed population shares the feedback term uses."""
        k = counts.shape[-1]
        return (counts + self.prior_weight / k) / (
            counts.sum(-1, keepdims=True) + self.prior_weight
        )

    def intervention_effect(self, index: int, group: str | None = None) -> np.ndarray:
        """Summed logit shift of all interventions before reaction ``index`` on a user of
        profile group ``group`` (targeted interventions reach only their group)."""
        effect = np.zeros(SDQC.size)
        for iv in self.interventions:
            if iv.at <= index and (iv.target is None or iv.target == group):
                decay = 0.5 ** ((index - iv.at) / self.half_life)
                effect += iv.strength * decay * np.asarray(INTERVENTION_EFFECTS[iv.kind])
        return effect

    def label_probabilities(
        self,
        user_logits: np.ndarray,
        counts: np.ndarray,
        progress: float,
        index: int,
        framing: np.ndarray | None = None,
        group: str | None = None,
    ) -> np.ndarray:
        """P(label) for a user with base logits ``user_logits`` acting as reaction ``index``.

        ``counts`` are the label counts of all reactions so far, ``progress`` the fraction
        of the episode done (0..1), ``framing`` the event's hidden bias (zeros if None),
        ``group`` the user's profile group (for targeted interventions).
        """
        logits = np.array(user_logits, dtype=np.float64)
        if framing is not None:
            logits += framing
        logits += self.feedback_strength * np.log(self.shares(counts))
        logits[SDQC.index("query")] -= self.query_decay * progress
        logits += self.intervention_effect(index, group)
        logits -= logits.max()
        p = np.exp(logits)
        return p / p.sum()


MAX_REACTIONS = 1_000_000
"""Most reactions (and users) of one synthetic event."""


def synthetic_scenario(
    seed: int = 0,
    *,
    n_reactions: int = 300,
    n_users: int | None = None,
    feedback_strength: float = 1.0,
    interventions: Sequence[Intervention] = (),
    **population_options: float,
) -> Scenario:
    """Generate one synthetic event (see the module docstring); same seed, same scenario.

    ``n_users`` defaults to ``0.7 * n_reactions`` (some users react more than once).
    ``population_options`` override other :class:`SyntheticPopulation` fields; every number
    must be finite and at most :data:`MAX_PARAMETER` in size (``ValueError`` otherwise).
    """
    check_seed(seed)
    if isinstance(interventions, Intervention | str) or not isinstance(interventions, Sequence):
        raise TypeError(
            f"interventions must be a sequence of Intervention objects, got {interventions!r:.80}"
        )
    check_count("n_reactions", n_reactions, 1, MAX_REACTIONS)
    if n_users is not None:
        check_count("n_users", n_users, 1, MAX_REACTIONS)
    population = SyntheticPopulation(
        feedback_strength=feedback_strength,
        interventions=tuple(interventions),
        **population_options,
    )
    rng = np.random.default_rng(seed)
    n_users = n_users if n_users is not None else max(1, int(0.7 * n_reactions))
    group_names = list(GROUPS)
    groups = rng.integers(0, len(group_names), size=n_users)
    user_logits = np.asarray([GROUPS[group_names[g]] for g in groups]) + rng.normal(
        0.0, population.personal_noise, size=(n_users, SDQC.size)
    )
    authors = [
        _make_author(rng, u, group_names[g], population.profile_clarity)
        for u, g in enumerate(groups)
    ]
    framing = rng.normal(0.0, population.framing_noise, size=SDQC.size)
    claim = _CLAIMS[int(rng.integers(len(_CLAIMS)))]

    start = 1_420_000_000.0 + float(rng.integers(0, 10_000_000))
    source = Reaction(
        reaction_id=f"synthetic-{seed}-source",
        author=Author("newsdesk", {"name": "newsdesk", "followers": 250_000, "verified": True}),
        text=f"BREAKING: Reports say {claim}.",
        timestamp=start,
        labels={"stance": "support"},
    )
    counts = np.zeros(SDQC.size)
    reactions = []
    t = start
    for i in range(n_reactions):
        t += float(rng.exponential(20.0 * (1.0 + i / 50.0)))
        user = int(rng.integers(n_users))
        p = population.label_probabilities(
            user_logits[user], counts, i / n_reactions, i, framing, group_names[groups[user]]
        )
        label = int(rng.choice(SDQC.size, p=p))
        counts[label] += 1
        name = SDQC.labels[label]
        template = _TEXTS[name][int(rng.integers(len(_TEXTS[name])))]
        text = template.format(outlet=_OUTLETS[int(rng.integers(len(_OUTLETS)))])
        reactions.append(
            Reaction(
                reaction_id=f"synthetic-{seed}-{i}",
                author=authors[user],
                text=text,
                timestamp=t,
                parent_id=source.reaction_id,
                labels={"stance": name},
            )
        )
    return Scenario(
        scenario_id=f"synthetic/{seed}",
        source=source,
        reactions=reactions,
        language="en",
        default_label_dimension="stance",
        metadata={
            "dataset": "synthetic",
            "seed": seed,
            "framing": framing.tolist(),
            "user_logits": {
                a.author_id: row.tolist() for a, row in zip(authors, user_logits, strict=True)
            },
            # JSON-ready (lists, not tuples), so the scenario round-trips through JSONL.
            "population": {
                **asdict(population),
                "interventions": [asdict(i) for i in interventions],
            },
        },
    )


def _make_author(rng: np.random.Generator, index: int, group: str, clarity: float) -> Author:
    bios = _BIOS[group] if rng.random() < clarity else _NEUTRAL_BIOS
    return Author(
        author_id=f"user{index}",
        profile={
            "name": f"user{index}",
            "followers": int(rng.lognormal(5.0, 1.5)),
            "verified": bool(rng.random() < 0.03),
            "description": bios[int(rng.integers(len(bios)))],
            "location": _LOCATIONS[int(rng.integers(len(_LOCATIONS)))],
            "group": group,
        },
    )


def _finite_logits(values: Any, what: str) -> np.ndarray:
    """``values`` as one finite logit per SDQC label; ``ValueError`` naming ``what``."""
    try:
        logits = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        logits = np.zeros(0)
    if logits.shape != (SDQC.size,) or not np.all(np.abs(logits) <= MAX_PARAMETER):
        raise ValueError(
            f"{what} must be {SDQC.size} finite numbers of size <= {MAX_PARAMETER:g}, "
            f"got {values!r}"
        )
    return logits


class SyntheticResponse:
    """The synthetic scenario's ground-truth population response: the rumour game's
    transition for the agents no policy acts for (``PopulationEnv(scenario,
    action_mode="label", response=SyntheticResponse(scenario))``; the synthetic
    population an intervention planner steers, ``PlannerEnv(population="synthetic")``).

    Each reaction's author draws a label from :meth:`SyntheticPopulation.label_probabilities`
    with the user's base logits, the event's hidden framing, the label counts of the
    simulated world so far (real reactions in warm-up, the drawn ones after; the agents of
    one step all see the counts at the step's start) and the interventions: the scenario's
    own and those passed to :meth:`observe_intervention` (a planner's). The game hands it
    what it needs (the reactions' positions and the world's labels), so no policy reads the
    env. Its draws come from its own generator (:meth:`reset`). ``scenario`` must come from
    :func:`synthetic_scenario` (its ``metadata`` holds the ground truth): ``ValueError``
    naming what is missing otherwise.
    """

    labels = SDQC.labels
    """The label scheme it answers in."""

    def __init__(self, scenario: Scenario) -> None:
        metadata = scenario.metadata
        missing = [k for k in ("population", "framing", "user_logits") if k not in metadata]
        if missing:
            raise ValueError(
                f"scenario {scenario.scenario_id!r} has no synthetic ground truth "
                f"(metadata lacks {', '.join(missing)}); SyntheticResponse needs a scenario "
                "made by synthetic_scenario()"
            )
        scenario_id = scenario.scenario_id
        try:
            options: dict[str, Any] = dict(metadata["population"])
            scripted = tuple(Intervention(**iv) for iv in options.pop("interventions", ()))
            self._base = SyntheticPopulation(**options, interventions=scripted)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"scenario {scenario_id!r}: metadata 'population' is not a synthetic "
                f"population: {error}"
            ) from None
        self._population = self._base
        self._framing = _finite_logits(metadata["framing"], f"scenario {scenario_id!r}: framing")
        self._logits = {
            author: _finite_logits(values, f"scenario {scenario_id!r}: user_logits of {author!r}")
            for author, values in dict(metadata["user_logits"]).items()
        }
        missing_authors = {r.author.author_id for r in scenario.reactions} - set(self._logits)
        if missing_authors:
            raise ValueError(
                f"scenario {scenario_id!r}: metadata 'user_logits' lacks the authors "
                f"{sorted(missing_authors)[:5]}"
            )
        self._scenario = scenario
        self._reactions = scenario.reactions
        self._n = len(scenario.reactions)
        self._rng = np.random.default_rng(0)

    def check(self, scenario: Scenario) -> None:
        """``ValueError`` naming both scenarios unless ``scenario`` is the one this
        response was made for (equal, ground truth and reactions included)."""
        own = self._scenario
        if scenario is own or scenario == own:
            return
        other = f"{scenario.scenario_id!r} ({len(scenario.reactions)} reactions)"
        mine = f"{own.scenario_id!r} ({self._n} reactions)"
        if other == mine:
            other += ", a different scenario of the same name and size"
        raise ValueError(f"{type(self).__name__} answers for scenario {mine}, not for {other}")

    def reset(self, seed: int | np.random.Generator | None = None) -> None:
        """Start an episode: the scenario's own interventions only, draws from a generator
        seeded ``seed`` (or from the generator ``seed``)."""
        self._rng = np.random.default_rng(seed)
        self._population = self._base

    def observe_intervention(self, intervention: Intervention) -> None:
        """Add an intervention (a planner's) for the rest of the episode."""
        self._population = replace(
            self._population, interventions=(*self._population.interventions, intervention)
        )

    def _probabilities(self, index: int, counts: np.ndarray) -> np.ndarray:
        author = self._reactions[index].author
        return self._population.label_probabilities(
            self._logits[author.author_id],
            counts,
            index / self._n,
            index,
            self._framing,
            author.profile.get("group"),
        )

    def respond(self, indices: Sequence[int], world_label_ids: np.ndarray) -> list[int]:
        """The label ids drawn for the reactions at ``indices`` (one step's, in order), all
        given the world's labels at the step's start."""
        counts = _label_counts(world_label_ids)
        return [
            int(self._rng.choice(SDQC.size, p=self._probabilities(index, counts)))
            for index in indices
        ]


def _label_counts(world_label_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(world_label_ids)
    return np.bincount(ids[ids >= 0], minlength=SDQC.size).astype(np.float64)
