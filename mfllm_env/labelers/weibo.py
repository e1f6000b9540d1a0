"""A transparent rule/lexicon labeller for the Weibo scheme.

Labels (:data:`~mfllm_env.labels.WEIBO`): ``repost_support``, ``repost_doubt``,
``comment_support``, ``comment_doubt``. The rules, applied to one reaction text:

1. **Own words.** A Weibo repost carries the forwarded chain after its own words, as
   ``own words//@user1: their words//@user2: ...``. The reaction's *own words* are the
   part before the first ``//@`` (the whole text if there is none), stripped of
   whitespace.
2. **Repost or comment.** The reaction is a *repost* if the text has a forwarding chain
   (contains ``//@``), or its own words are empty (CED stores a plain repost as ``""``),
   or its own words are only a repost placeholder (:data:`REPOST_PLACEHOLDERS`: 转发微博,
   轉發微博, 转发, Repost, ... compared without whitespace, case and trailing
   punctuation). Otherwise it is a *comment*.
3. **Doubt or support.** The *judged words* are the own words; for a repost whose own
   words are empty or a placeholder, they are the words of the first forwarded link (the
   post it forwards verbatim), since forwarding a doubt spreads it. The reaction *doubts*
   if the judged words contain a cue of :data:`DOUBT_CUES` (谣言, 辟谣, 假的, 不信, 真的吗,
   求证, 是真的吗, 造谣, 骗, ... and traditional-script forms) or a question mark
   (``?`` or ``？``) or the Weibo emoticon ``[疑问]``. Otherwise it *supports* (accepts or
   spreads the post).

Known limits (it is a lexicon): negated cues ("不是谣言") still count as doubt; rhetorical
questions count as doubt; doubt phrased without a cue word counts as support. Every text
gets a label (``-1`` is never returned): the empty text is a plain repost. Deterministic;
total on any ``str``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from mfllm_env.labels import WEIBO, LabelScheme

CHAIN_MARK = "//@"
"""Where a repost's forwarded chain starts."""

REPOST_PLACEHOLDERS = frozenset(
    {"转发微博", "轉發微博", "转发", "轉發", "转", "转载", "repost", "reposted", "rt"}
)
"""Own words that mean "plain repost" (compared after :func:`_placeholder_key`)."""

DOUBT_CUES = (
    # rumour / debunk vocabulary
    "谣言",
    "谣传",
    "传谣",
    "造谣",
    "辟谣",
    "求辟谣",
    "不实",
    "虚假",
    "假消息",
    "假新闻",
    "标题党",
    "炒作",
    "谣",
    # "it is false" / disbelief
    "假的",
    "是假",
    "不信",
    "别信",
    "不相信",
    "不可能",
    "不靠谱",
    "扯淡",
    "胡说",
    "瞎说",
    "胡扯",
    "乱说",
    "编的",
    "忽悠",
    "骗",
    "不会吧",
    # asking whether it is true
    "真的吗",
    "真的么",
    "真的假的",
    "是真的吗",
    "是真的么",
    "是不是真的",
    "真假",
    "求证",
    "求真相",
    "属实",
    "靠谱吗",
    "可信吗",
    "确定吗",
    "质疑",
    "怀疑",
    # traditional-script forms
    "謠言",
    "謠傳",
    "造謠",
    "闢謠",
    "辟謠",
    "不實",
    "騙",
    "真的嗎",
    "是真的嗎",
    "求證",
    "懷疑",
    # question marks and the "question" emoticon
    "?",
    "？",
    "[疑问]",
)
"""Substrings whose presence in the judged words marks doubt."""

_DOUBT = re.compile("|".join(re.escape(cue) for cue in sorted(set(DOUBT_CUES), key=len)[::-1]))
_CHAIN_LINK = re.compile(r"//@[^:：]{1,40}[:：]")
_PLACEHOLDER_STRIP = re.compile(r"[\s。.!！~～…]+")


def _placeholder_key(words: str) -> str:
    return _PLACEHOLDER_STRIP.sub("", words).lower()


def split_repost(text: str) -> tuple[str, str | None]:
    """``(own_words, first_forwarded_words)``: the text before the first ``//@`` (stripped),
    and the words of the first forwarded link without its ``//@user:`` head (``None``
    where the text has no chain)."""
    own, mark, chain = text.partition(CHAIN_MARK)
    if not mark:
        return own.strip(), None
    first = (CHAIN_MARK + chain).split(CHAIN_MARK, 2)[1]
    head = _CHAIN_LINK.match(CHAIN_MARK + first)
    forwarded = (CHAIN_MARK + first)[head.end() :] if head else first
    return own.strip(), forwarded.strip()


def weibo_label(text: str) -> str:
    """The WEIBO label name of one reaction text, by the rules of the module docstring."""
    own, forwarded = split_repost(text)
    placeholder = not own or _placeholder_key(own) in REPOST_PLACEHOLDERS
    repost = forwarded is not None or placeholder
    judged = (forwarded or "") if placeholder else own
    doubt = _DOUBT.search(judged) is not None
    if repost:
        return "repost_doubt" if doubt else "repost_support"
    return "comment_doubt" if doubt else "comment_support"


class WeiboRuleLabeler:
    """The WEIBO :class:`~mfllm_env.labels.ActionLabeler`: :func:`weibo_label` per text.

    Returns one label id per text, never ``-1``.
    """

    def __init__(self, scheme: LabelScheme = WEIBO) -> None:
        if set(scheme.labels) != set(WEIBO.labels):
            raise ValueError(f"scheme {scheme.name!r} does not have the WEIBO labels")
        self.scheme = scheme
        self._ids = {name: scheme.index(name) for name in scheme.labels}

    def label(self, texts: Sequence[str]) -> np.ndarray:
        """WEIBO label ids of ``texts`` (int64, same length)."""
        ids = self._ids
        return np.array([ids[weibo_label(text)] for text in texts], dtype=np.int64)
