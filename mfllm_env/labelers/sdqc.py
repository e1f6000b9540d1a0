"""The default SDQC stance labeller: a linear model over word n-grams and stance cues.

Input is the action text alone (simulated actions have no thread context). The text is
turned into a list of string features by :func:`sdqc_features`; the same function feeds
training (scikit-learn's ``TfidfVectorizer(analyzer=sdqc_features)``, see
:mod:`mfllm_env.labelers.train_sdqc`) and inference here, so the features match exactly.

Features of one text (after normalisation, below):

* word unigrams, bigrams and trigrams of the token sequence, as the tokens joined by one
  space (tokens hold no space, so the number of spaces tells the order apart);
* ``f:`` the first token, ``f2:`` the first two tokens, ``l:`` the last token;
* ``q:`` cues: ``reply`` (the text opens with ``@user`` addressees), ``has?`` (a question
  mark), ``ends?`` (ends with one), ``neg`` (a negation), ``deny`` (a debunking word such as
  *fake*, *hoax*, *false*, *lies*), ``sup`` (a confirming word such as *confirmed*,
  *true*, *official*), ``url`` (a link), ``rt`` (a retweet/quote marker).

Normalisation: at most :data:`MAX_CHARS` characters are read; HTML entities are
unescaped, curly apostrophes made straight, text lower-cased; links become ``httpurl``;
the leading run of ``@user`` addressees (with an optional ``RT``) is dropped (it sets the
``reply`` cue) and other mentions become ``@user``. Tokens are runs of ``[a-z0-9']``, runs
of ``?``/``!``, and every other non-space character on its own.

The model (:class:`LinearTextModel`) is the exported scikit-learn fit: vocabulary, idf
weights, coefficients and intercepts, plus per-label score offsets chosen on the dev key.
A text's vector is the sublinear tf-idf (``(1 + ln tf) * idf``) of its *known* features,
L2-normalised; its label is ``argmax(x @ coef.T + intercept + offset)``. A text with no
known feature (empty, whitespace, unseen garbage) gets :data:`~mfllm_env.labels.UNLABELLED`.

The artifact is gzip-compressed JSON (no pickles), loaded with :meth:`LinearTextModel.load`.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mfllm_env.labels import SDQC, UNLABELLED, LabelScheme
from mfllm_env.runs import write_atomic

T = TypeVar("T")

MAX_CHARS = 4000
"""Only the first this-many characters of a text are read (bounds the cost of one text)."""

ARTIFACT_FORMAT = "mfllm-linear-text-model/1"
"""The ``format`` field of the artifact; :meth:`LinearTextModel.load` rejects others."""

DEFAULT_ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "sdqc_linear.json.gz"
"""Where the trained SDQC model lives (rebuilt by ``python -m mfllm_env.labelers.train_sdqc``)."""

_URL = re.compile(r"https?://\S+|www\.\S+")
_LEADING_ADDRESSEES = re.compile(r"^(?:\s*(?:rt\s+)?\.?@\w+:?)+\s*")
_MENTION = re.compile(r"@\w+")
_TOKEN = re.compile(r"[a-z0-9']+|[?!]+|[^\sa-z0-9'?!]")
_RT_PREFIXES = ("rt ", "rt@", "\u201c@", '"@')

NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "nothing",
        "nope",
        "nah",
        "cannot",
        "can't",
        "won't",
        "don't",
        "dont",
        "doesn't",
        "doesnt",
        "isn't",
        "isnt",
        "wasn't",
        "aren't",
        "didn't",
    }
)
"""Tokens that set the ``q:neg`` cue."""

DENY_WORDS = frozenset(
    {
        "fake",
        "hoax",
        "false",
        "lie",
        "lies",
        "lying",
        "liar",
        "untrue",
        "debunked",
        "rumor",
        "rumors",
        "rumour",
        "rumours",
        "wrong",
        "bs",
        "bullshit",
        "nonsense",
        "fabricated",
        "misinformation",
        "photoshopped",
        "satire",
        "retracted",
        "denies",
        "denied",
    }
)
"""Tokens that set the ``q:deny`` cue (debunking vocabulary, not tied to any event)."""

SUPPORT_WORDS = frozenset(
    {
        "confirmed",
        "confirms",
        "true",
        "indeed",
        "yes",
        "exactly",
        "agree",
        "correct",
        "right",
        "breaking",
        "reports",
        "reported",
        "according",
        "official",
        "officially",
    }
)
"""Tokens that set the ``q:sup`` cue (confirming vocabulary)."""


_SEPARATOR = "\n"  # never a token (tokens hold no whitespace)

EXTRA_PREFIXES = ("f:", "f2:", "l:", "q:")
"""Prefixes of the features that are not word n-grams (a token never holds a colon and
a letter together, so no n-gram starts with one of these)."""


def sdqc_features(text: str) -> list[str]:
    """The feature strings of one text (with repeats; order is not significant).

    Total on ``str``: never raises, returns ``[]`` for empty or whitespace-only text.
    """
    toks, extras = analyse(text)
    out = toks.copy()
    out += map(" ".join, pairwise(toks))
    out += map(" ".join, zip(toks, toks[1:], toks[2:], strict=False))
    return out + extras


def analyse(text: str) -> tuple[list[str], list[str]]:
    """The tokens of one text and its features other than the word n-grams."""
    raw = text[:MAX_CHARS]
    if "&" in raw:
        raw = html.unescape(raw)
    t = raw.replace("\u2019", "'").lower()
    if "http" in t or "www." in t:
        t = _URL.sub(" httpurl ", t)
    lead = None
    if "@" in t:
        lead = _LEADING_ADDRESSEES.match(t)
        if lead is not None:
            t = t[lead.end() :]
        t = _MENTION.sub(" @user ", t)
    toks = _TOKEN.findall(t)
    if not toks:
        return [], []
    out = ["f:" + toks[0]]
    if len(toks) > 1:
        out.append(f"f2:{toks[0]} {toks[1]}")
    out.append("l:" + toks[-1])
    words = set(toks)
    if lead is not None:
        out.append("q:reply")
    if "?" in raw:
        out.append("q:has?")
        if raw.rstrip().endswith("?"):
            out.append("q:ends?")
    if not words.isdisjoint(NEGATIONS):
        out.append("q:neg")
    if not words.isdisjoint(DENY_WORDS):
        out.append("q:deny")
    if not words.isdisjoint(SUPPORT_WORDS):
        out.append("q:sup")
    if "httpurl" in words:
        out.append("q:url")
    head = raw.lstrip()[:3].lower()
    if head.startswith(_RT_PREFIXES) or " RT @" in raw:
        out.append("q:rt")
    return toks, out


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal values begins in a non-empty 1-D array.

    (``np.unique``/``np.diff`` do the same with more per-call overhead, which dominates on
    the small arrays of one environment step.)
    """
    change = np.empty(values.size, dtype=bool)
    change[0] = True
    np.not_equal(values[1:], values[:-1], out=change[1:])
    return np.flatnonzero(change)


def _run_lengths(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted 1-D array and how often each occurs."""
    if values.size == 0:
        return values, values
    starts = _run_starts(values)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = values.size
    return values[starts], ends - starts


@dataclass(frozen=True)
class LinearTextModel:
    """An exported linear text classifier over :func:`sdqc_features`.

    ``vocabulary[i]`` is the feature of column ``i``; ``idf`` has shape ``(n_features,)``,
    ``coef`` ``(n_labels, n_features)``, ``intercept`` and ``offset`` ``(n_labels,)``.
    ``labels`` are label names in the order of the rows of ``coef``; they must be labels
    of the scheme the model is used with. ``metadata`` records how it was trained.
    """

    labels: tuple[str, ...]
    vocabulary: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    offset: np.ndarray
    metadata: dict[str, Any]

    def __post_init__(self) -> None:
        n, k = len(self.vocabulary), len(self.labels)
        if self.idf.shape != (n,) or self.coef.shape != (k, n):
            raise ValueError(
                f"model arrays do not match: {n} features, {k} labels, idf {self.idf.shape}, "
                f"coef {self.coef.shape}"
            )
        if self.intercept.shape != (k,) or self.offset.shape != (k,):
            raise ValueError("intercept and offset must have one entry per label")
        if len(set(self.vocabulary)) != n:
            raise ValueError("model vocabulary has repeated features")
        # Column ids are stored off by one, so that 0 means "unknown feature".
        index1 = {feature: i + 1 for i, feature in enumerate(self.vocabulary)}
        # Word n-grams are looked up by integer keys built from the ids of their parts:
        # bigram "a b" by id(a) * width + id(b), trigram "a b c" by id("a b") * width + id(c).
        # Inference only tries an n-gram whose parts are known; that is exact because a
        # vocabulary cut by document frequency holds every sub-n-gram of its n-grams (a post
        # holding "a b c" holds "a b" and "b c"), which is checked here.
        width = n + 1
        ngrams: dict[int, int] = {}
        for feature, column in index1.items():
            parts = feature.split(" ")
            if len(parts) == 1 or parts[0].startswith(EXTRA_PREFIXES):
                continue
            head, tail = " ".join(parts[:-1]), parts[-1]
            if head not in index1 or tail not in index1 or " ".join(parts[1:]) not in index1:
                raise ValueError(f"model vocabulary lacks the sub-n-grams of {feature!r}")
            ngrams[index1[head] * width + index1[tail]] = column
        object.__setattr__(self, "_index1", index1)
        object.__setattr__(self, "_ngrams", ngrams)
        # (n_features, n_labels + 1) table: idf-scaled weights and idf, one gather per batch.
        table = np.column_stack([self.coef.T * self.idf[:, None], self.idf])
        object.__setattr__(self, "_table", table)

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, known)``: decision scores ``(len(texts), n_labels)`` (offset included)
        and a boolean mask of the texts that have at least one known feature (the score rows
        of the others are meaningless)."""
        n, k = len(texts), len(self.labels)
        lookup = self._index1.get  # type: ignore[attr-defined]
        ngram = self._ngrams.get  # type: ignore[attr-defined]
        width = len(self.vocabulary) + 1
        # The tokens of the whole batch in one sequence, each text followed by a separator
        # (which no vocabulary holds), so that n-grams never cross texts.
        tokens: list[str] = []
        extras: list[str] = []
        token_counts = np.empty(n, dtype=np.int64)
        extra_counts = np.empty(n, dtype=np.int64)
        for i, text in enumerate(texts):
            toks, more = analyse(text)
            tokens += toks
            tokens.append(_SEPARATOR)
            extras += more
            token_counts[i] = len(toks) + 1
            extra_counts[i] = len(more)
        # Column ids (off by one; 0 = unknown). An n-gram is only looked up where its parts
        # are known (see __post_init__), by an integer key made of their ids.
        uni = np.fromiter(map(lookup, tokens, repeat(0)), np.int64, len(tokens))
        bi_keys = uni[:-1] * width + uni[1:]
        bi_keys[(uni[:-1] == 0) | (uni[1:] == 0)] = -1
        bi = np.fromiter(map(ngram, bi_keys.tolist(), repeat(0)), np.int64, len(bi_keys))
        tri_keys = bi[:-1] * width + uni[2:]
        tri_keys[(bi[:-1] == 0) | (uni[2:] == 0)] = -1
        tri = np.fromiter(map(ngram, tri_keys.tolist(), repeat(0)), np.int64, len(tri_keys))
        cues = np.fromiter(map(lookup, extras, repeat(0)), np.int64, len(extras))
        text_ids = np.arange(n)
        at = np.repeat(text_ids, token_counts)
        cols = np.concatenate([uni, bi, tri, cues])
        rows = np.concatenate([at, at[:-1], at[:-2], np.repeat(text_ids, extra_counts)])
        keep = cols > 0
        # One entry per (text, feature) with its term frequency, sorted by text.
        keys, tf = _run_lengths(np.sort(rows[keep] * width + cols[keep]))
        text_of, col = np.divmod(keys, width)
        known = np.zeros(n, dtype=bool)
        known[text_of] = True
        out = np.empty((n, k))
        out[:] = self.intercept + self.offset
        if keys.size:
            # Rows of ``_table`` are [idf * coef[:, j], idf]: scale by the sublinear tf
            # 1 + ln(tf), sum per text (squaring the idf column first), then L2-normalise.
            terms = self._table[col - 1] * (1.0 + np.log(tf))[:, None]  # type: ignore[attr-defined]
            terms[:, k] **= 2
            sums = np.add.reduceat(terms, _run_starts(text_of), axis=0)
            out[known] += sums[:, :k] / np.sqrt(sums[:, k : k + 1])
        return out, known

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Row indices into ``labels`` (int64), ``UNLABELLED`` where no feature is known."""
        scores, known = self.scores(texts)
        return np.where(known, scores.argmax(axis=1), UNLABELLED).astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        """The artifact as plain JSON data (floats as exact ``repr`` round-trips)."""
        return {
            "format": ARTIFACT_FORMAT,
            "labels": list(self.labels),
            "metadata": self.metadata,
            "intercept": self.intercept.tolist(),
            "offset": self.offset.tolist(),
            "vocabulary": list(self.vocabulary),
            "idf": self.idf.tolist(),
            "coef": self.coef.tolist(),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact as gzip JSON; the same model always gives the same bytes.
        The file is replaced whole (a kill leaves the old artifact or the new one)."""
        write_json_artifact(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinearTextModel:
        """Read an artifact written by :meth:`save`; ``FileNotFoundError`` if there is none,
        ``ValueError`` naming the file if it is not one (not gzip JSON, another format, a
        missing or malformed field)."""

        def build(data: dict[str, Any]) -> LinearTextModel:
            return cls(
                labels=tuple(data["labels"]),
                vocabulary=tuple(data["vocabulary"]),
                idf=np.asarray(data["idf"], dtype=np.float64),
                coef=np.asarray(data["coef"], dtype=np.float64).reshape(len(data["labels"]), -1),
                intercept=np.asarray(data["intercept"], dtype=np.float64),
                offset=np.asarray(data["offset"], dtype=np.float64),
                metadata=dict(data.get("metadata", {})),
            )

        return read_json_artifact(path, ARTIFACT_FORMAT, build)


def write_json_artifact(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as gzip JSON, the same data always as the same bytes, replacing the
    file whole (a kill leaves the old artifact or the new one)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as stream:
        stream.write(text.encode("utf-8"))
    write_atomic(path, buffer.getvalue())


def read_json_artifact(
    path: str | os.PathLike[str], artifact_format: str, build: Callable[[dict[str, Any]], T]
) -> T:
    """``build(data)`` of the gzip-JSON artifact at ``path`` whose ``format`` field is
    ``artifact_format``. ``FileNotFoundError`` if there is no file; ``ValueError`` naming the
    file if it is not gzip JSON, is of another format, or ``build`` finds a field missing or
    malformed (``KeyError``, ``TypeError``, ``ValueError``)."""
    try:
        with gzip.open(path, "rb") as stream:
            data = json.loads(stream.read().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, RecursionError) as error:
        raise ValueError(
            f"{path}: not a readable {artifact_format} artifact ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != artifact_format:
        raise ValueError(f"{path}: not a {artifact_format} artifact")
    try:
        return build(data)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: a malformed {artifact_format} artifact ({type(error).__name__}: {error})"
        ) from None


class SDQCLabeler:
    """The SDQC :class:`~mfllm_env.labels.ActionLabeler` backed by a :class:`LinearTextModel`.

    ``label(texts)`` returns SDQC label ids (``scheme.index(name)``), ``-1`` for a text with
    no known feature. Deterministic, and total on any sequence of ``str``.
    """

    def __init__(self, model: LinearTextModel, scheme: LabelScheme = SDQC) -> None:
        missing = [name for name in model.labels if name not in scheme.labels]
        if missing:
            raise ValueError(f"model labels {missing} are not labels of scheme {scheme.name!r}")
        self.scheme = scheme
        self.model = model
        self._to_scheme = np.array([scheme.index(name) for name in model.labels] + [UNLABELLED])

    @classmethod
    def from_artifact(cls, path: str | os.PathLike[str] = DEFAULT_ARTIFACT) -> SDQCLabeler:
        """Load the labeller from an artifact file (the shipped one by default)."""
        if not Path(path).exists():
            raise FileNotFoundError(
                f"SDQC model artifact not found at {path}; rebuild it with "
                "`python -m mfllm_env.labelers.train_sdqc --data PATH`"
            )
        return cls(LinearTextModel.load(path))

    def label(self, texts: Sequence[str]) -> np.ndarray:
        """SDQC ids of ``texts`` (int64, same length), ``-1`` where nothing is known."""
        # -1 indexes the appended UNLABELLED entry of the lookup table.
        return self._to_scheme[self.model.predict(texts)]
