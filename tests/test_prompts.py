"""The one prompt builder and the one action cleaner."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.prompts import (
    chain_summary_messages,
    clean_action,
    detect_language,
    format_shares,
    mean_field_messages,
    policy_messages,
)

ROOT = Path(__file__).resolve().parents[1]


def _user(messages):
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def test_policy_prompt_puts_shared_parts_before_the_agent():
    text = _user(
        policy_messages(
            "Hostages freed",
            "User ann, 12 followers.",
            context_kind="mean_field",
            context="Most users doubt it.",
            shares_text="support 10%, deny 90%",
        )
    )
    event, context, shares, state = (
        text.index("Hostages freed"),
        text.index("Most users doubt it."),
        text.index("support 10%, deny 90%"),
        text.index("User ann"),
    )
    assert event < context < shares < state < text.index("Your reply:")


@pytest.mark.parametrize(
    ("kind", "header"),
    [("recent", "most recent replies"), ("popular", "most-followed users"), ("mean_field", "")],
)
def test_each_context_kind_has_its_header(kind, header):
    text = _user(policy_messages("E", "S", context_kind=kind, context="CTX"))
    assert "CTX" in text and header in text


def test_state_prompt_has_no_context():
    text = _user(policy_messages("E", "S", context_kind="none", context="SECRET"))
    assert "SECRET" not in text
    with pytest.raises(ValueError, match="context_kind"):
        policy_messages("E", "S", context_kind="gossip")


def test_chinese_wording_for_chinese_scenarios():
    text = _user(
        policy_messages("地铁停运", "用户甲", context_kind="recent", context="x", language="zh")
    )
    assert "原微博" in text and "你的回复" in text and "Your reply" not in text
    summary = _user(mean_field_messages("地铁停运", "", ["用户甲"], ["不信"], language="zh"))
    assert "目前的概括：暂无" in summary and "- 用户甲: 不信" in summary


def test_mean_field_prompt_lists_the_batch_and_clips_long_posts():
    text = _user(mean_field_messages("E", "Old summary.", ["ann", "bob"], ["yes", "x" * 500]))
    assert "Old summary." in text and "- ann: yes" in text
    assert "x" * 200 not in text and "x" * 150 in text
    frames = _user(chain_summary_messages("E", ["f1", "f2"]))
    assert "1. f1\n2. f2" in frames


def test_detect_language_and_format_shares():
    assert detect_language("官方辟谣：地铁没有停运") == "zh"
    assert detect_language("The metro is closed, 地铁") == "en"
    assert detect_language("") == "en"
    assert format_shares(["support", "deny"], [0.254, 0.746]) == "support 25%, deny 75%"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  I don't buy it.\nExplanation: the model rambles", "I don't buy it."),
        ('\n\nReply: "Fake news!"', "Fake news!"),
        ("回复：真的吗？", "真的吗？"),
        ("bell\x07 and \x1b[31mcolour", "bell and [31mcolour"),
        ("", ""),
        ("   \n  ", ""),
    ],
)
def test_clean_action(raw, clean):
    assert clean_action(raw) == clean


def test_clean_action_caps_length():
    assert clean_action("a" * 1000, max_chars=280) == "a" * 280


def test_prompt_wording_lives_only_in_the_prompt_builder():
    """No second copy of a prompt anywhere in the packages (the reference code's
    simulation and training prompts drifted apart)."""
    phrases = ["Your reply:", "Rewrite the summary", "你的回复", "You are a social media user"]
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("agents", "training", "mfllm_cli", "mfllm_env")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "prompts.py" and any(p in path.read_text("utf-8") for p in phrases)
    ]
    assert offenders == []


def test_a_complete_first_line_fixes_the_action():
    """Backends may stop once ``first_line_complete`` holds (``until_first_line``): no text
    added after that point may change what ``clean_action`` makes of it, and before it the
    action is not yet decided in general."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from agents.backends.base import first_line_complete

    pieces = st.sampled_from(
        ["\n", "\u2028", "\u2029", "\r", " ", "\t", "\u200b", "\x1b", "Reply:", "ok", "é", '"']
    )
    texts = st.lists(pieces | st.text(max_size=3), max_size=12).map("".join)

    @settings(max_examples=300)
    @given(texts, texts)
    def check(text: str, more: str) -> None:
        cut = next(
            (i for i in range(len(text) + 1) if first_line_complete(text[:i])), None
        )
        if cut is not None:
            assert clean_action(text[:cut] + more) == clean_action(text)

    check()
    assert first_line_complete("BREAKING: hostages freed.\nMore")
    assert not first_line_complete("\n\n  \u200b\nBREAKING")  # no content before the breaks
    assert not first_line_complete("no line break yet")
