from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.compromise import (
    DEFAULT_TABLE,
    SEVERITY_ORDER,
    Category,
    Confidence,
    Containment,
    ContainmentRule,
    Severity,
    decide_containment,
)

ACTIVE_THREATS = [Category.VIRUS, Category.TROJAN, Category.WEBSHELL, Category.BACKDOOR, Category.ATTACK]


def test_severity_orders_by_gravity_not_by_spelling() -> None:
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert sorted([Severity.CRITICAL, Severity.LOW, Severity.HIGH, Severity.MEDIUM]) == list(SEVERITY_ORDER)
    assert Severity.LOW < Severity.HIGH  # "low" > "high" as plain strings
    assert Severity.HIGH >= "high"
    assert Severity.CRITICAL > "medium"
    with pytest.raises(ValueError):
        assert Severity.LOW < "urgent"


@pytest.mark.parametrize("category", ACTIVE_THREATS)
@pytest.mark.parametrize("severity", [Severity.HIGH, Severity.CRITICAL])
def test_malware_and_attacks_at_high_or_critical_cut_the_network(
    category: Category, severity: Severity
) -> None:
    decision = decide_containment(category, severity, Confidence.HIGH)
    assert decision.action is Containment.ISOLATE_NETWORK
    assert decision.rule == ContainmentRule(
        category, Severity.HIGH, Confidence.HIGH, Containment.ISOLATE_NETWORK
    )
    assert not decision.fallback
    assert "断开网络" in decision.reasons_zh[0] and "第8条" in decision.reasons_zh[0]
    assert f"'{category} ≥ high → isolate_network'" in decision.reasons_en[0]


@pytest.mark.parametrize("category", ACTIVE_THREATS)
@pytest.mark.parametrize("severity", [Severity.LOW, Severity.MEDIUM])
def test_lesser_malware_alerts_only_notify(category: Category, severity: Severity) -> None:
    decision = decide_containment(category, severity, Confidence.HIGH)
    assert decision.action is Containment.NOTIFY_ONLY
    assert decision.rule is None
    assert "no containment rule" in decision.reasons_en[0]
    assert "人工" in decision.reasons_zh[0]


@pytest.mark.parametrize("severity", list(Severity))
def test_dark_links_block_the_web_service(severity: Severity) -> None:
    decision = decide_containment(Category.DARK_LINK, severity, Confidence.HIGH)
    assert decision.action is Containment.BLOCK_WEB
    assert not decision.fallback


def test_without_web_blocking_a_dark_link_cuts_the_network_and_says_so() -> None:
    decision = decide_containment("dark_link", "medium", "high", web_block_supported=False)
    assert decision.action is Containment.ISOLATE_NETWORK
    assert decision.fallback
    assert decision.rule is not None and decision.rule.action is Containment.BLOCK_WEB
    assert "not supported" in decision.reasons_en[-1] and "isolated instead" in decision.reasons_en[-1]
    assert "改为断开网络" in decision.reasons_zh[-1]


@pytest.mark.parametrize("category", list(Category))
def test_a_weak_signal_never_acts_on_its_own(category: Category) -> None:
    decision = decide_containment(category, Severity.CRITICAL, Confidence.LOW)
    assert decision.action is Containment.NOTIFY_ONLY
    assert "weak signal" in decision.reasons_en[0]
    assert "弱信号" in decision.reasons_zh[0] and "人工研判" in decision.reasons_zh[0]


@pytest.mark.parametrize(
    "category", [Category.WEAK_PASSWORD, Category.VULNERABILITY, Category.FORBIDDEN_SERVICE, Category.OTHER]
)
def test_findings_only_notify_by_default(category: Category) -> None:
    assert decide_containment(category, Severity.CRITICAL, Confidence.HIGH).action is Containment.NOTIFY_ONLY


def test_a_table_cannot_make_a_weak_signal_act() -> None:
    with pytest.raises(ValueError, match="low-confidence"):
        ContainmentRule(Category.VIRUS, Severity.LOW, Confidence.LOW, Containment.POWER_OFF)
    # Notifying on a weak signal is allowed, and named as the deciding row.
    row = ContainmentRule(Category.VIRUS, Severity.LOW, Confidence.LOW, Containment.NOTIFY_ONLY)
    assert decide_containment("virus", "high", "low", table=(row,)).rule == row


CENTER_TABLE = (
    ContainmentRule(Category.VIRUS, Severity.HIGH, Confidence.HIGH, Containment.ISOLATE_NETWORK),
    ContainmentRule(Category.VIRUS, Severity.CRITICAL, Confidence.HIGH, Containment.POWER_OFF),
)


@pytest.mark.parametrize("table", [CENTER_TABLE, tuple(reversed(CENTER_TABLE))])
def test_the_most_specific_row_wins_in_any_order(table: tuple[ContainmentRule, ...]) -> None:
    assert decide_containment("virus", "critical", "high", table=table).action is Containment.POWER_OFF
    assert decide_containment("virus", "high", "high", table=table).action is Containment.ISOLATE_NETWORK
    assert decide_containment("virus", "medium", "high", table=table).action is Containment.NOTIFY_ONLY


def test_equally_specific_rows_go_to_the_first() -> None:
    first = ContainmentRule(Category.ATTACK, Severity.HIGH, Confidence.HIGH, Containment.POWER_OFF)
    second = ContainmentRule(Category.ATTACK, Severity.HIGH, Confidence.HIGH, Containment.ISOLATE_NETWORK)
    assert decide_containment("attack", "critical", "high", table=(first, second)).rule is first


def test_rows_loaded_from_settings_as_strings_are_typed() -> None:
    row = ContainmentRule("virus", "high", "high", "isolate_network")  # type: ignore[arg-type]
    assert row == CENTER_TABLE[0]
    assert row.category is Category.VIRUS and row.min_severity is Severity.HIGH
    assert row.confidence is Confidence.HIGH and row.action is Containment.ISOLATE_NETWORK
    with pytest.raises(ValueError):
        ContainmentRule("virus", "urgent", "high", "isolate_network")  # type: ignore[arg-type]


_STRENGTH = [
    Containment.NOTIFY_ONLY,
    Containment.BLOCK_WEB,
    Containment.ISOLATE_NETWORK,
    Containment.POWER_OFF,
]


@given(st.sampled_from(list(Category)), st.sampled_from(list(Confidence)), st.booleans())
def test_by_default_a_graver_alert_never_gets_a_milder_containment(
    category: Category, confidence: Confidence, web_block_supported: bool
) -> None:
    strengths = [
        _STRENGTH.index(
            decide_containment(category, s, confidence, web_block_supported=web_block_supported).action
        )
        for s in SEVERITY_ORDER
    ]
    assert strengths == sorted(strengths)


def test_the_default_table_holds_only_confident_rows() -> None:
    assert all(row.confidence is Confidence.HIGH for row in DEFAULT_TABLE)
