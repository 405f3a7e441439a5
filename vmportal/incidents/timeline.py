"""An incident's timeline and the VM's security state that follows from its incidents.

Every step of the workflow adds one timeline row through :func:`add_event`, which is where the step's
e-mail is queued (in the same transaction; sent after the commit by the mail outbox)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from policies.power import SecurityState
from vmportal.audit.service import Who
from vmportal.incidents import mails as notification
from vmportal.incidents.lifecycle import S
from vmportal.incidents.models import Incident, IncidentEvent
from vmportal.incidents.repository import holding_incidents
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM


def add_event(
    session: Session,
    incident: Incident,
    kind: str,
    *,
    actor: str,
    en: str,
    zh: str,
    data: dict[str, Any] | None = None,
) -> IncidentEvent:
    """One line of the incident's timeline, and the mail the step calls for."""
    assert incident.id is not None
    event = IncidentEvent(
        incident_id=incident.id,
        kind=kind,
        actor=actor[:100],
        message_en=en[:2000],
        message_zh=zh[:2000],
        data=data or {},
    )
    session.add(event)
    notification.on_event(session, incident, event)
    return event


def sync_vm_security_state(
    session: Session, vm_id: int, who: Who, *, released_to: SecurityState | None = None, reason: str = ""
) -> str:
    """Set the VM's security state from its incidents: suspended while any contained incident holds it,
    rectification_submitted when every holding incident waits for the center's review, ``released_to``
    (restored, normal) once none holds it and a restore was confirmed; else unchanged."""
    vm = session.get(VM, vm_id)
    if vm is None:
        return ""
    holders = [i for i in holding_incidents(session, vm_id) if i.containment_state == "confirmed"]
    states = {i.state for i in holders}
    target: SecurityState | None
    if S.CONTAINED in states:
        target = SecurityState.SUSPENDED
    elif S.RECTIFICATION_SUBMITTED in states:
        target = SecurityState.RECTIFICATION_SUBMITTED
    elif holders:
        target = None  # restoring: stays as it is until the hypervisor confirmed
    else:
        target = released_to
    if target is not None and vm.security_state != target.value:
        vm_service.set_security_state(session, vm_id, target, who=who, reason=reason)
    return vm.security_state
