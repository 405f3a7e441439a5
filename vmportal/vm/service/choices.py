"""What a user may do to a VM *before* trying: each power action with the reason it would be refused.

The same checks as :func:`vmportal.vm.service.power.request_power`, in its order, asked without
writing anything: the policy (``power_ops``, ``suspended_lock``), the VM's lifecycle, a
containment holding the VM (the incident named), the power state, the connection's guest power
capability. A page shows the refused actions with their rule and reason instead of letting the user
find out by pressing the button; the request itself still checks everything again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from hypervisors.base import PowerAction
from policies.base import Deny
from policies.power import check_power_ops
from policies.roles import Actor
from vmportal.kit import errors
from vmportal.vm.models import VM, Lifecycle
from vmportal.vm.service import power

#: The actions a user asks for on a VM's page, in the order the page shows them.
USER_ACTIONS: tuple[PowerAction, ...] = (
    PowerAction.START,
    PowerAction.SHUTDOWN,
    PowerAction.REBOOT,
    PowerAction.STOP,
    PowerAction.RESTART,
)


@dataclass(frozen=True)
class Refusal:
    """Why an action would be refused: the rule's id and its reason in both languages."""

    rule: str
    message_en: str
    message_zh: str
    incident_id: int | None = None


@dataclass(frozen=True)
class Choice:
    action: PowerAction
    refusal: Refusal | None  # None: the action may be asked for now

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _refusal(exc: errors.PortalError, rule: str) -> Refusal:
    incident = exc.extra.get("incident_id")
    en, zh = exc.message, exc.message_zh
    fields = exc.extra.get("fields")
    if isinstance(exc, errors.InvalidField) and fields:  # without the "field: " prefix
        en, zh = str(fields[0]["message"]), zh.split("：", 1)[-1]
    return Refusal(str(exc.extra.get("rule", rule)), en, zh, incident if isinstance(incident, int) else None)


def power_barred(actor: Actor, vm: VM) -> Refusal | None:
    """Why ``actor`` may not operate ``vm`` at all (rule ``power_ops``: a lead, the auditor), or None.

    Asked per row of a list, where the other checks wait until the user opens the VM's actions: it
    depends on the role and the VM's unit only (no query), and it is the first check of every
    action, so a barred VM's every action would be refused with this reason."""
    return power_barred_in(actor, vm.unit_id)


def power_barred_in(actor: Actor, unit_id: int | None) -> Refusal | None:
    """:func:`power_barred` for a VM of ``unit_id`` (the VM list's page lane has the VM's document,
    not its row)."""
    # As power._policy_decision: an unregistered VM (no unit yet) is nobody's but the center's.
    verdict = check_power_ops(actor, unit_id if unit_id is not None else -1)
    if isinstance(verdict, Deny):
        return Refusal(verdict.rule, verdict.message_en, verdict.message_zh)
    return None


def power_choices(session: Session, actor: Actor, vm: VM) -> list[Choice]:
    """Each of :data:`USER_ACTIONS` on ``vm`` (already visible to ``actor``) with its refusal, if any.

    Asked for one VM at a time (its page, or its "Actions" opened on the list): a list row shows
    only :func:`power_barred`, so no page asks this for many VMs at once."""
    out: list[Choice] = []
    held: errors.StateConflict | None = None
    held_checked = False
    capable: bool | None = None  # the connection's guest power, asked once for both guest actions
    for action in USER_ACTIONS:
        decision = power._policy_decision(actor, vm, action)
        if not decision.allowed:
            denial = decision.denials[0]
            if denial.rule == "suspended_lock":  # names the incident holding the VM, as the API does
                out.append(Choice(action, _refusal(power.policy_denied(session, vm, decision), denial.rule)))
            else:
                out.append(Choice(action, Refusal(denial.rule, denial.message_en, denial.message_zh)))
            continue
        try:
            power._ensure_active(vm, action.value)
            if action in power._UNDOING_ACTIONS:
                if not held_checked:
                    held_checked = True
                    try:
                        power.ensure_not_held(session, vm, action.value, power._ACTION_ZH[action])
                    except errors.StateConflict as exc:
                        held = exc
                if held is not None:
                    raise held
            power._ensure_power_state_allows(vm, action)
            if action in power._GUEST_ACTIONS:
                if capable is None:
                    try:
                        power._ensure_capable(session, vm, action)
                        capable = True
                    except errors.InvalidField:
                        capable = False
                if not capable:
                    power._ensure_capable(session, vm, action)
        except errors.InvalidField as exc:
            out.append(Choice(action, _refusal(exc, "guest_power")))
            continue
        except errors.StateConflict as exc:
            rule = "incident_hold" if "incident_id" in exc.extra else "power_state"
            if vm.lifecycle != Lifecycle.ACTIVE:
                rule = "lifecycle"
            out.append(Choice(action, _refusal(exc, rule)))
            continue
        out.append(Choice(action, None))
    return out
