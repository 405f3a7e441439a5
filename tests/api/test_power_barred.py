"""What the VM list says per row without asking anything (vm.service.choices.power_barred): rule
power_ops for a lead, the auditor and another unit's admin, with the reason every power action of
the VM would be refused with; nothing for the unit's own admin and for the center's staff, whose
buttons come when they open the VM's actions."""

from __future__ import annotations

from typing import cast

import pytest
from sqlmodel import Session

from policies.roles import Actor, Role
from vmportal.vm.models import VM
from vmportal.vm.service.choices import power_barred, power_choices


def _vm() -> VM:
    return VM(id=7, name="cs-lab-web", unit_id=1, security_state="normal", power_state="running")


@pytest.mark.parametrize(
    "actor",
    [Actor(1, Role.UNIT_LEAD, 1), Actor(2, Role.AUDITOR, None), Actor(3, Role.UNIT_ADMIN, 2)],
    ids=["lead", "auditor", "other unit's admin"],
)
def test_who_may_not_operate_is_told_the_rule_the_buttons_would_say(actor: Actor) -> None:
    barred = power_barred(actor, _vm())
    assert barred is not None and barred.rule == "power_ops" and barred.message_zh and barred.message_en
    # The policy answers before any query: the session is never used for such an actor.
    every = power_choices(cast(Session, None), actor, _vm())
    assert {c.refusal for c in every} == {barred}


@pytest.mark.parametrize(
    "actor",
    [Actor(4, Role.UNIT_ADMIN, 1), Actor(5, Role.CENTER_OPERATOR, None), Actor(6, Role.CENTER_ADMIN, None)],
    ids=["own unit's admin", "operator", "center admin"],
)
def test_who_may_operate_opens_the_actions(actor: Actor) -> None:
    assert power_barred(actor, _vm()) is None


def test_an_unregistered_vm_is_the_centers_only() -> None:
    vm = _vm()
    vm.unit_id = None
    assert power_barred(Actor(4, Role.UNIT_ADMIN, 1), vm) is not None
    assert power_barred(Actor(5, Role.CENTER_OPERATOR, None), vm) is None
