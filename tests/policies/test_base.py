from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policies.base import Allow, Deny, Rule, Verdict, combine

RULE = Rule("example", "agreement §0", "An example.", "示例。", wording_zh="示例条款。")


def test_no_verdict_at_all_is_a_denial_by_default() -> None:
    decision = combine()
    assert not decision.allowed
    assert decision.rules == ("default",)
    assert decision.denials[0].message_en and decision.denials[0].message_zh


def test_all_allows_allow_and_name_every_rule_that_permitted() -> None:
    decision = combine(Allow("a"), Allow("b"))
    assert decision.allowed
    assert decision.rules == ("a", "b")
    assert decision.denials == ()


def test_one_deny_among_allows_decides_alone() -> None:
    deny = Deny("b", "agreement §1", "不行。", "No.")
    decision = combine(Allow("a"), deny, Allow("c"))
    assert not decision.allowed
    assert decision.deciding == (deny,)
    assert decision.rules == ("b",)


def test_rule_builds_verdicts_carrying_its_own_id_and_clause() -> None:
    deny = RULE.deny(message_zh="中文。", message_en="English.", field="purpose")
    assert deny == Deny("example", "agreement §0", "中文。", "English.", "purpose")
    assert deny.as_dict() == {
        "rule": "example",
        "clause": "agreement §0",
        "message_zh": "中文。",
        "message_en": "English.",
        "field": "purpose",
    }
    allow = RULE.allow(reason_zh="可以。", reason_en="Fine.")
    assert (allow.rule, allow.reason_zh, allow.reason_en) == ("example", "可以。", "Fine.")


_verdicts = st.lists(
    st.one_of(
        st.builds(Allow, st.sampled_from(["purpose", "quota", "power_ops"])),
        st.builds(
            Deny,
            st.sampled_from(["purpose", "quota", "power_ops"]),
            st.just("§"),
            st.just("否。"),
            st.just("No."),
        ),
    ),
    max_size=8,
)


@given(_verdicts)
def test_any_deny_wins_and_is_named(verdicts: list[Verdict]) -> None:
    decision = combine(*verdicts)
    denials = tuple(v for v in verdicts if isinstance(v, Deny))
    assert decision.allowed == (bool(verdicts) and not denials)
    if denials:
        assert decision.deciding == denials
        assert decision.rules == tuple(d.rule for d in denials)
    elif verdicts:
        assert decision.rules == tuple(v.rule for v in verdicts)
