from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.power import (
    ALLOWED_WHILE_LOCKED,
    LOCKED_STATES,
    SecurityState,
    VMAction,
    check_power,
    check_power_ops,
    check_suspended_lock,
)
from policies.roles import Actor, Role
from tests.policies._verdicts import assert_allowed, assert_denied

UNIT = 7
OWN_ADMIN = Actor(1, Role.UNIT_ADMIN, UNIT)
OWN_LEAD = Actor(2, Role.UNIT_LEAD, UNIT)
OTHER_ADMIN = Actor(3, Role.UNIT_ADMIN, 8)
OTHER_LEAD = Actor(4, Role.UNIT_LEAD, 8)
CENTER_ADMIN = Actor(5, Role.CENTER_ADMIN, None)
OPERATOR = Actor(6, Role.CENTER_OPERATOR, None)
AUDITOR = Actor(7, Role.AUDITOR, None)


@pytest.mark.parametrize("actor", [OWN_ADMIN, CENTER_ADMIN, OPERATOR])
def test_the_units_admins_and_the_center_operate_the_vm(actor: Actor) -> None:
    assert_allowed(check_power_ops(actor, UNIT), "power_ops")


def test_the_unit_lead_views_but_does_not_operate() -> None:
    assert_denied(
        check_power_ops(OWN_LEAD, UNIT),
        "power_ops",
        zh=["网络安全管理员统一负责", "二（二）4", "请联系本单位的网络安全管理员"],
        en=["security administrator", "二(二)4"],
    )


def test_the_auditor_changes_nothing() -> None:
    assert_denied(check_power_ops(AUDITOR, UNIT), "power_ops", zh=["检查人员"], en=["Auditors"])


@pytest.mark.parametrize("actor", [OTHER_ADMIN, OTHER_LEAD])
def test_another_units_people_cannot_touch_the_vm(actor: Actor) -> None:
    assert_denied(
        check_power_ops(actor, UNIT), "power_ops", zh=["不属于您的单位"], en=["does not belong to your unit"]
    )


@pytest.mark.parametrize("state", [SecurityState.NORMAL, SecurityState.RESTORED, "normal"])
@pytest.mark.parametrize("action", list(VMAction))
def test_the_lock_is_open_when_the_vm_is_not_suspended(state: SecurityState | str, action: VMAction) -> None:
    assert_allowed(check_suspended_lock(OWN_ADMIN, state, action), "suspended_lock")


LOCKED_FOR_UNITS = sorted(set(VMAction) - ALLOWED_WHILE_LOCKED)


@pytest.mark.parametrize("action", LOCKED_FOR_UNITS)
def test_a_unit_cannot_bring_a_suspended_vm_back(action: VMAction) -> None:
    assert_denied(
        check_suspended_lock(OWN_ADMIN, SecurityState.SUSPENDED, action),
        "suspended_lock",
        zh=["已被信息中心暂停", "提交整改报告", "第8条", "仍可关机"],
        en=["suspended", "rectification report", "§8", "power it down"],
    )


def test_while_the_report_is_checked_the_vm_stays_locked() -> None:
    assert_denied(
        check_suspended_lock(OWN_ADMIN, "rectification_submitted", "start"),
        "suspended_lock",
        zh=["整改报告已提交", "等待信息中心核实", "开机"],
        en=["waiting for the center to verify", "cannot start"],
    )


@pytest.mark.parametrize("state", sorted(LOCKED_STATES))
@pytest.mark.parametrize("action", sorted(ALLOWED_WHILE_LOCKED))
def test_a_unit_may_still_power_a_suspended_vm_down(state: SecurityState, action: VMAction) -> None:
    assert_allowed(check_suspended_lock(OWN_ADMIN, state, action), "suspended_lock", en=["powered down"])


@pytest.mark.parametrize("actor", [CENTER_ADMIN, OPERATOR])
@pytest.mark.parametrize("action", list(VMAction))
def test_the_center_acts_on_a_suspended_vm(actor: Actor, action: VMAction) -> None:
    assert_allowed(
        check_suspended_lock(actor, SecurityState.SUSPENDED, action),
        "suspended_lock",
        en=["rectification report"],
    )


def test_an_unknown_action_is_refused_by_name() -> None:
    assert_denied(
        check_suspended_lock(OWN_ADMIN, "normal", "hibernate"),
        "suspended_lock",
        field="action",
        zh=["hibernate", "start"],
        en=["hibernate", "unblock_web"],
    )


def test_an_unknown_security_state_is_refused_by_name() -> None:
    assert_denied(
        check_suspended_lock(OWN_ADMIN, "quarantined", "start"),
        "suspended_lock",
        field="security_state",
        zh=["quarantined"],
        en=["quarantined"],
    )


def test_check_power_allows_the_units_admin_on_a_normal_vm() -> None:
    decision = check_power(OWN_ADMIN, UNIT, "normal", "restart")
    assert decision.allowed
    assert decision.rules == ("power_ops", "suspended_lock")


def test_check_power_names_the_lock_when_only_the_lock_refuses() -> None:
    decision = check_power(OWN_ADMIN, UNIT, SecurityState.SUSPENDED, VMAction.START)
    assert not decision.allowed
    assert decision.rules == ("suspended_lock",)


def test_check_power_names_both_rules_when_both_refuse() -> None:
    decision = check_power(OTHER_ADMIN, UNIT, SecurityState.SUSPENDED, VMAction.RELEASE)
    assert not decision.allowed
    assert decision.rules == ("power_ops", "suspended_lock")


def test_the_auditor_cannot_even_power_a_suspended_vm_down() -> None:
    decision = check_power(AUDITOR, UNIT, SecurityState.SUSPENDED, VMAction.STOP)
    assert not decision.allowed
    assert decision.rules == ("power_ops",)


_actors = st.sampled_from([OWN_ADMIN, OWN_LEAD, OTHER_ADMIN, OTHER_LEAD, CENTER_ADMIN, OPERATOR, AUDITOR])


@given(_actors, st.sampled_from(list(SecurityState)), st.sampled_from(list(VMAction)))
def test_only_the_center_ever_brings_a_locked_vm_back(
    actor: Actor, state: SecurityState, action: VMAction
) -> None:
    decision = check_power(actor, UNIT, state, action)
    if state in LOCKED_STATES and action not in ALLOWED_WHILE_LOCKED:
        assert decision.allowed is (actor in (CENTER_ADMIN, OPERATOR))
    else:
        assert decision.allowed is (actor in (OWN_ADMIN, CENTER_ADMIN, OPERATOR))
