"""The data model: a :class:`Scenario` is one event and the population's reactions to it.

A scenario holds the *source post* (the event every reaction responds to) and the
reactions in time order. Each :class:`Reaction` carries its author (id and profile), its
text, a timestamp, the post it replies to, its language and, where humans annotated it,
one label per label dimension (``{"stance": "support", "certainty": "uncertain"}``).

Loaders (:mod:`mfllm_env.loaders`) build scenarios from real data sets; the synthetic
generator (:mod:`mfllm_env.synthetic`) builds them with known ground truth. Everything
downstream (the environment, metrics, training data builders) reads only this model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from math import inf, isfinite
from numbers import Real
from typing import Any

from mfllm_env.checks import is_text
from mfllm_env.labels import SCHEMES


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a post.

    ``profile`` holds whatever the source data knows about the user, with these keys
    normalised where present: ``followers`` (int), ``friends`` (int), ``statuses`` (int),
    ``verified`` (bool), ``description`` (str), ``location`` (str), ``name`` (str),
    ``gender`` (str), ``created_at`` (str). Other keys are kept as given.
    """

    author_id: str
    profile: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.author_id, str):
            raise TypeError(f"author_id must be a str, got {self.author_id!r:.80}")
        if not isinstance(self.profile, Mapping):
            raise TypeError(
                f"author {self.author_id!r}: profile must be a mapping, got "
                f"{type(self.profile).__name__}"
            )

    @property
    def followers(self) -> int:
        """Follower count: 0 where unknown, or where the profile's value is not a finite
        number >= 0 (text, ``NaN``: data no ranking can trust)."""
        value = self.profile.get("followers")
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < inf:
            return 0
        return int(value)


@dataclass(frozen=True, slots=True)
class Reaction:
    """One post: the source post of an event or one reaction to it.

    ``timestamp`` is in unix seconds (float). ``parent_id`` is the id of the post this one
    replies to or reposts (``None`` for a source post). ``labels`` maps a label dimension
    (``"stance"``, ``"certainty"``, ...) to a label name of that dimension's scheme; a
    dimension absent from the mapping means "not annotated". Construction checks the type of
    every field (``TypeError`` naming the reaction and the field).
    """

    reaction_id: str
    author: Author
    text: str
    timestamp: float
    parent_id: str | None = None
    language: str = "en"
    labels: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wrong = _wrong_field(self)
        if wrong:
            raise TypeError(f"reaction {self.reaction_id!r:.80}: {wrong}")


def _wrong_field(reaction: Reaction) -> str | None:
    """What is of the wrong type in ``reaction`` (``None`` if nothing is)."""
    expected: tuple[tuple[str, type | tuple[type, ...], str], ...] = (
        ("reaction_id", str, "a str"),
        ("author", Author, "an Author"),
        ("text", str, "a str"),
        ("timestamp", Real, "a number (unix seconds)"),
        ("parent_id", (str, type(None)), "a str or None"),
        ("language", str, "a str"),
        ("labels", Mapping, "a mapping"),
        ("metadata", Mapping, "a mapping"),
    )
    for name, kind, what in expected:
        value = getattr(reaction, name)
        if not isinstance(value, kind) or (name == "timestamp" and isinstance(value, bool)):
            return f"{name} must be {what}, got {value!r:.80}"
        if isinstance(value, str) and not is_text(value):  # a lone surrogate: no file holds it
            return f"{name} has characters that cannot be written as UTF-8: {value!r:.80}"
    return None


@dataclass(frozen=True, slots=True)
class Scenario:
    """One event: its source post and its reactions, in time order.

    ``scenario_id`` is unique within a loader's output (for example
    ``"rumoureval/twitter/charliehebdo/552783667052167168"``). ``language`` is the main
    language of the event (``"en"`` or ``"zh"``) and chooses prompt templates and default
    label schemes. Construction checks the types of every field (``TypeError`` naming the
    scenario or reaction and the field), that post ids are unique (the source's and the
    reactions'), that timestamps are finite and in time order, and that labels of a
    built-in dimension (``stance``, ``certainty``, ``weibo``) are labels of its scheme; it
    raises ``ValueError`` naming the scenario and the reaction otherwise.
    ``default_label_dimension`` names the label dimension the environment scores on by
    default. ``metadata`` holds event-level facts (the data set, the split, the event name,
    a veracity label, generator parameters, ...).
    """

    scenario_id: str
    source: Reaction
    reactions: Sequence[Reaction]
    language: str = "en"
    default_label_dimension: str = "stance"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Always a tuple, so that scenarios compare equal however they were built.
        # Loaders name an id from a file name that is not UTF-8 themselves (a format error).
        for name in ("scenario_id", "language", "default_label_dimension"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"scenario {name} must be a str, got {getattr(self, name)!r:.80}")
        if not isinstance(self.metadata, Mapping):
            raise TypeError(
                f"scenario {self.scenario_id!r}: metadata must be a mapping, got "
                f"{type(self.metadata).__name__}"
            )
        if not isinstance(self.source, Reaction):
            raise TypeError(
                f"scenario {self.scenario_id!r}: source must be a Reaction, got "
                f"{type(self.source).__name__}"
            )
        if isinstance(self.reactions, (str, bytes, Mapping)) or not isinstance(
            self.reactions, Iterable
        ):
            raise TypeError(
                f"scenario {self.scenario_id!r}: reactions must be a sequence of Reactions, got "
                f"{type(self.reactions).__name__}"
            )
        object.__setattr__(self, "reactions", tuple(self.reactions))
        stranger = next(
            (i for i, r in enumerate(self.reactions) if not isinstance(r, Reaction)), None
        )
        if stranger is not None:
            raise TypeError(
                f"scenario {self.scenario_id!r}: reaction {stranger} is not a Reaction: "
                f"{self.reactions[stranger]!r:.80}"
            )
        positions: dict[str, int] = {self.source.reaction_id: -1}
        for position, reaction in enumerate(self.reactions):
            earlier = positions.setdefault(reaction.reaction_id, position)
            if earlier != position:
                first = "the source post" if earlier < 0 else f"reaction {earlier}"
                raise ValueError(
                    f"scenario {self.scenario_id!r}: reaction {position} has id "
                    f"{reaction.reaction_id!r}, as {first} does; post ids must be unique"
                )
        times = [r.timestamp for r in self.reactions]
        bad_time = next(
            (r for r in (self.source, *self.reactions) if not isfinite(r.timestamp)), None
        )
        if bad_time is not None:
            raise ValueError(
                f"scenario {self.scenario_id!r}: reaction {bad_time.reaction_id!r} has "
                f"timestamp {bad_time.timestamp!r}; timestamps must be finite unix seconds"
            )
        if any(b < a for a, b in pairwise(times)):
            raise ValueError(
                f"scenario {self.scenario_id!r}: reactions must be in time order; "
                "sort them by timestamp before building the Scenario"
            )
        for reaction in (self.source, *self.reactions):
            for dimension, label in reaction.labels.items():
                scheme = SCHEMES.get(dimension)
                if scheme is not None and label not in scheme.labels:
                    raise ValueError(
                        f"scenario {self.scenario_id!r}: reaction {reaction.reaction_id!r} has "
                        f"{dimension} label {label!r}; valid: {', '.join(scheme.labels)}"
                    )

    @property
    def event_text(self) -> str:
        """The text every reaction responds to (the source post)."""
        return self.source.text

    def __len__(self) -> int:
        return len(self.reactions)

    def labelled_count(self, dimension: str) -> int:
        """How many reactions carry a human label on ``dimension``."""
        return sum(1 for r in self.reactions if dimension in r.labels)

    def label_counts(self, dimension: str) -> dict[str, int]:
        """Counts of each human label on ``dimension`` among the reactions."""
        counts: dict[str, int] = {}
        for r in self.reactions:
            name = r.labels.get(dimension)
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
        return counts
