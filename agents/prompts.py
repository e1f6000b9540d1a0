"""The one prompt builder: every policy variant, every mean-field model, and training.

Simulation and training import these functions; no prompt text exists anywhere else (the
reference implementation's training and simulation prompts drifted apart; ours cannot).

A prompt is a list of chat messages; the backend applies the model's chat template.
English and Chinese wordings are chosen by the scenario's language (``"en"``, ``"zh"``);
:func:`detect_language` guesses it from the event text when the caller does not know it.

Policy prompts have four parts: the event, the agent's state, a context and the
instruction. The context depends on the variant (the MF-LLM paper, Mi et al., 2025):

- ``"none"``: State (and SFT), no context;
- ``"mean_field"``: MF, the mean-field text, optionally with the numeric shares;
- ``"recent"``: Recent(k), the last k reactions
  (from :class:`~mfllm_env.mean_field.RecentReactions`);
- ``"popular"``: Popular(k), the reactions of the k most-followed authors
  (from :class:`~mfllm_env.mean_field.PopularReactions`).

The intervention planner's prompt (:func:`planner_messages`) shows the event, the
population's mean field and recent stance shares, the goal, the budget, and asks for one
public message (text mode) or one menu option's name (menu mode).

The macro-economy's prompts: a household's (:func:`household_messages`, from the prompt
parts of :class:`~mfllm_env.games.macro.HouseholdTextCodec`) and its LLM mean-field
model's (:func:`economy_summary_messages`), English only.

Completions become actions through :func:`clean_action` (a rumour reaction's first line) and
:func:`one_line` (a household's reply, kept whole): the places where model output is cut to
the environment's rules.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Literal

from agents.backends.base import Message

ContextKind = Literal["none", "mean_field", "recent", "popular"]
CONTEXT_KINDS: tuple[ContextKind, ...] = ("none", "mean_field", "recent", "popular")

_TEXT = {
    "en": {
        "policy_system": (
            "You are a social media user. You read a post and write your own reply to it, "
            "in your own voice. Write only the reply: one short line, no explanations."
        ),
        "event": "The post:\n{event}",
        "state": "About you: {state}",
        "context": {
            "mean_field": "How other users are reacting so far:\n{context}",
            "recent": "The most recent replies:\n{context}",
            "popular": "Replies from the most-followed users:\n{context}",
        },
        "shares": "Stance shares so far: {shares}.",
        "instruction": "Your reply:",
        "mf_system": (
            "You summarise how a population of social media users is reacting to a post. "
            "Be factual and brief."
        ),
        "mf_previous": "Summary so far:\n{previous}",
        "mf_no_previous": "Summary so far: none yet.",
        "mf_batch": "Newest replies:\n{batch}",
        "mf_instruction": (
            "Rewrite the summary in at most three sentences, covering: the mix of stances "
            "(support, deny, question, comment), the main viewpoints, the emotions, belief "
            "versus doubt, and what people intend to do (share, counter, ask). Write only "
            "the summary."
        ),
        "cos_frames": "Statistics of the last {n} steps, oldest first:\n{frames}",
        "cos_instruction": (
            "In at most two sentences, describe how the population's reaction is changing "
            "over these steps: which stances grow or fade, and where it is heading. "
            "Write only the description."
        ),
        "planner_system": (
            "You run an official fact-checking account during a breaking story. You can "
            "post a short public message to steer the discussion, or stay silent."
        ),
        "planner_reactions": "How users are reacting:\n{mean_field}",
        "planner_shares": "Stance shares of the latest replies, oldest first:\n{rows}",
        "planner_goal": "Goal: move the replies towards {target}.",
        "planner_budget": "You can post {budget} more time(s); {steps} decision(s) left.",
        "planner_text": "Write your message in one short line, or WAIT to stay silent.",
        "planner_menu": "Choose one of: {options}. Answer with the name only.",
    },
    "zh": {
        "policy_system": (
            "你是一名微博用户。阅读一条微博后，用你自己的口吻写一条回复。"
            "只写回复本身：简短的一句话，不要解释。"
        ),
        "event": "原微博：\n{event}",
        "state": "关于你：{state}",
        "context": {
            "mean_field": "其他用户目前的反应：\n{context}",
            "recent": "最新的回复：\n{context}",
            "popular": "粉丝最多的用户的回复：\n{context}",
        },
        "shares": "目前的立场占比：{shares}。",
        "instruction": "你的回复：",
        "mf_system": "你负责概括一群微博用户对一条微博的反应。请客观、简洁。",
        "mf_previous": "目前的概括：\n{previous}",
        "mf_no_previous": "目前的概括：暂无。",
        "mf_batch": "最新的回复：\n{batch}",
        "mf_instruction": (
            "用不超过三句话重写概括，包括：立场构成（支持、否认、质疑、评论）、主要观点、"
            "情绪、相信还是怀疑，以及大家的意图（转发、反驳、提问）。只写概括。"
        ),
        "cos_frames": "最近{n}步的统计（从早到晚）：\n{frames}",
        "cos_instruction": (
            "用不超过两句话描述群体反应在这几步中如何变化：哪些立场在增加或减少，趋势如何。"
            "只写描述。"
        ),
        "planner_system": (
            "你运营一个官方辟谣账号。你可以发一条简短的公开消息引导讨论，也可以保持沉默。"
        ),
        "planner_reactions": "用户的反应：\n{mean_field}",
        "planner_shares": "最新回复的立场占比（从早到晚）：\n{rows}",
        "planner_goal": "目标：让回复接近{target}。",
        "planner_budget": "你还可以发{budget}次；还剩{steps}次决策。",
        "planner_text": "用一句话写出你的消息，或写WAIT保持沉默。",
        "planner_menu": "从以下选项中选一个：{options}。只回答名称。",
    },
}

_CJK = re.compile(r"[\u3400-\u9fff]")
ACTION_CHARS = 280
"""Default cap on an action's length (a tweet)."""
BATCH_POST_CHARS = 200
BATCH_STATE_CHARS = 120


def detect_language(text: str) -> str:
    """``"zh"`` when at least a fifth of the letters are CJK ideographs, else ``"en"``."""
    letters = sum(1 for ch in text if ch.isalpha())
    cjk = len(_CJK.findall(text))
    return "zh" if letters and cjk / letters >= 0.2 else "en"


def _wording(language: str) -> dict:
    return _TEXT.get(language, _TEXT["en"])


def format_shares(labels: Sequence[str], shares: Sequence[float]) -> str:
    """``"support 20%, deny 5%, ..."``: numeric shares as text."""
    return ", ".join(
        f"{name} {round(100 * float(s))}%" for name, s in zip(labels, shares, strict=True)
    )


def policy_messages(
    event: str,
    state: str,
    *,
    context_kind: ContextKind = "none",
    context: str = "",
    shares_text: str = "",
    language: str = "en",
) -> list[Message]:
    """The policy prompt: event, context, the agent's state, the instruction.

    ``context`` is the observation's ``mean_field`` text (ignored when ``context_kind`` is
    ``"none"``); ``shares_text`` (see :func:`format_shares`) is appended to it when given.
    """
    if context_kind not in CONTEXT_KINDS:
        raise ValueError(f"context_kind must be one of {CONTEXT_KINDS}, got {context_kind!r}")
    w = _wording(language)
    # What all agents of a step share comes first (event, context), the agent's own state
    # last: a backend can then compute the shared prefix once for the whole step.
    parts = [w["event"].format(event=event.strip())]
    if context_kind != "none":
        body = context.strip()
        if shares_text:
            body = (body + "\n" if body else "") + w["shares"].format(shares=shares_text)
        parts.append(w["context"][context_kind].format(context=body))
    parts += [w["state"].format(state=state.strip()), w["instruction"]]
    return [
        {"role": "system", "content": w["policy_system"]},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mean_field_messages(
    event: str,
    previous: str,
    states: Sequence[str],
    actions: Sequence[str],
    *,
    language: str = "en",
) -> list[Message]:
    """The mean-field model's prompt: rewrite ``previous`` (empty at the start) given the
    newest batch of (state, action) pairs. Each state and action is clipped so that one
    batch of 16 stays within about a thousand tokens."""
    w = _wording(language)
    batch = "\n".join(
        f"- {_clip(state, BATCH_STATE_CHARS)}: {_clip(action, BATCH_POST_CHARS)}"
        for state, action in zip(states, actions, strict=True)
    )
    previous = previous.strip()
    parts = [
        w["event"].format(event=event.strip()),
        w["mf_previous"].format(previous=previous) if previous else w["mf_no_previous"],
        w["mf_batch"].format(batch=batch),
        w["mf_instruction"],
    ]
    return [
        {"role": "system", "content": w["mf_system"]},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def mean_field_prior_messages(event: str, *, language: str = "en") -> list[Message]:
    """The mean-field prompt without the history (no summary so far, no replies): IB-Tune's
    prior r(m), against which the compression term measures how much a summary depends on
    the history it was written from."""
    w = _wording(language)
    parts = [w["event"].format(event=event.strip()), w["mf_instruction"]]
    return [
        {"role": "system", "content": w["mf_system"]},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def chain_summary_messages(
    event: str, frames: Sequence[str], *, language: str = "en"
) -> list[Message]:
    """Chain of Summarization's multi-frame prompt over the last rule-rendered frames."""
    w = _wording(language)
    listed = "\n".join(f"{i + 1}. {frame}" for i, frame in enumerate(frames))
    parts = [
        w["event"].format(event=event.strip()),
        w["cos_frames"].format(n=len(frames), frames=listed),
        w["cos_instruction"],
    ]
    return [
        {"role": "system", "content": w["mf_system"]},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def planner_messages(
    event: str,
    mean_field: str,
    step_shares: Sequence[Sequence[float]],
    labels: Sequence[str],
    target: Sequence[float],
    *,
    budget_left: int,
    steps_left: int,
    options: Sequence[str] | None = None,
    language: str = "en",
) -> list[Message]:
    """The intervention planner's prompt. ``step_shares`` are the observation's rows
    (all-zero rows, steps not yet played, are left out); ``options`` are the menu's names
    (menu mode) or ``None`` (text mode: one free message, or WAIT)."""
    w = _wording(language)
    rows = [format_shares(labels, row) for row in step_shares if sum(row) > 0]
    parts = [
        w["event"].format(event=event.strip()),
        w["planner_reactions"].format(mean_field=mean_field.strip()),
    ]
    if rows:
        parts.append(w["planner_shares"].format(rows="\n".join(rows)))
    parts += [
        w["planner_goal"].format(target=format_shares(labels, target)),
        w["planner_budget"].format(budget=budget_left, steps=steps_left),
        w["planner_menu"].format(options=", ".join(options))
        if options is not None
        else w["planner_text"],
    ]
    return [
        {"role": "system", "content": w["planner_system"]},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


_PREFIX = re.compile(r"^(?:reply|your reply|response|answer|回复|你的回复)\s*[:：]\s*", re.I)
_QUOTES = "\"'“”‘’「」"


def printable(text: str) -> str:
    """``text`` without control and format characters (``\\n`` and ``\\t`` kept) and
    without lone surrogates (which no UTF-8 file can hold)."""
    return "".join(
        ch for ch in text if ch in "\n\t" or not unicodedata.category(ch).startswith("C")
    )


def clean_action(text: str, max_chars: int = ACTION_CHARS) -> str:
    """Model output -> an action: the single place where completions are cut to the rules.

    1. Control and format characters are dropped (the environment takes any printable
       string; a stray escape code would corrupt logs).
    2. The first non-empty line is kept (models often add explanations after it).
    3. A leading ``Reply:``-style label and wrapping quotes are removed.
    4. The text is cut to ``max_chars`` characters.

    An empty result stays empty: the environment counts it as an empty action.
    """
    text = printable(text)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip()
    if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    return line[:max_chars]


def one_line(text: str, max_chars: int) -> str:
    """Model output kept whole on one line: control and format characters dropped,
    whitespace runs (line breaks included) collapsed to single spaces, cut to
    ``max_chars`` characters (a household's reply, an economy summary)."""
    return " ".join(printable(text).split())[:max_chars]


# -- the macro-economy's households and its mean-field model ----------------------------

_ECONOMY_TEXT = {
    "household_system": (
        "You head a household in an economy. Each year you decide how many hours a week "
        "to work and what share of your after-tax income to save. Working more earns more "
        "but tires you; saving more means consuming less now and owning more later."
    ),
    "household_mean_field": "The economy last year:\n{mean_field}",
    "household_policy": "The government's policy:\n{policy}",
    "household_state": "About you: {state}",
    "household_answer": (
        "{question} Answer in one sentence of the form: I will work N hours a week and "
        "save P% of my income."
    ),
    "economy_system": "You summarise how the households of an economy are doing. Be factual "
    "and brief.",
    "economy_previous": "Summary so far:\n{previous}",
    "economy_no_previous": "Summary so far: none yet.",
    "economy_statistics": "This year's statistics:\n{statistics}",
    "economy_rows": (
        "Some households this year (after-tax income, wealth, hours a week worked, share of "
        "income saved):\n{rows}"
    ),
    "economy_instruction": (
        "Rewrite the summary in at most three sentences: how much people work and save, "
        "how unequal incomes and wealth are, and where the economy is heading. Write only "
        "the summary."
    ),
}


def household_messages(parts: Mapping[str, str]) -> list[Message]:
    """A macro-economy household's prompt from its observation's prompt parts
    (:meth:`mfllm_env.games.macro.HouseholdTextCodec.prompt_parts`: ``mean_field``,
    ``policy``, ``state``, ``question``). What every household of a year shares (the mean
    field, the policy) comes first, its own state last, as in :func:`policy_messages`."""
    w = _ECONOMY_TEXT
    body = [
        w["household_mean_field"].format(mean_field=parts["mean_field"].strip()),
        w["household_policy"].format(policy=parts["policy"].strip()),
        w["household_state"].format(state=parts["state"].strip()),
        w["household_answer"].format(question=parts["question"].strip()),
    ]
    return [
        {"role": "system", "content": w["household_system"]},
        {"role": "user", "content": "\n\n".join(body)},
    ]


def economy_summary_messages(previous: str, statistics: str, rows: Sequence[str]) -> list[Message]:
    """The economy's LLM mean-field prompt: rewrite ``previous`` (empty at the start) from
    the year's ``statistics`` sentence and a sample of households' ``rows``."""
    w = _ECONOMY_TEXT
    previous = previous.strip()
    body = [
        w["economy_previous"].format(previous=previous) if previous else w["economy_no_previous"],
        w["economy_statistics"].format(statistics=statistics.strip()),
        w["economy_rows"].format(rows="\n".join(f"- {row}" for row in rows)),
        w["economy_instruction"],
    ]
    return [
        {"role": "system", "content": w["economy_system"]},
        {"role": "user", "content": "\n\n".join(body)},
    ]
