"""Who hears of a unit's mail: its security administrator and lead from the contact registry, the
center's mailbox in copy.

The outbox (:mod:`vmportal.mail`) sits below every domain and knows no unit; this look-up is registered
with it when this module is imported (by :mod:`vmportal.app.registry` and by the domains that send
mail), so :func:`vmportal.mail.service.notify` stays the one way to queue a mail.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from vmportal.kit.settings import get_settings
from vmportal.mail import service as mail
from vmportal.unit import repository
from vmportal.unit.models import ContactRole


def recipients(
    session: Session,
    unit_id: int | None,
    center_only: bool = False,
    unit_addresses: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """(to, cc): the unit's security administrator and lead from its contact registry, the center's
    mailbox in copy. With no unit address (or ``center_only``) the center's mailbox alone, as "to".
    ``unit_addresses`` replaces the registry's pair, for a mail meant for one person of the unit."""
    center = get_settings().center_mailbox.strip()
    unit: list[str] = []
    if unit_addresses is not None and not center_only:
        for raw in unit_addresses:
            address = raw.strip()
            if "@" in address and address not in unit:
                unit.append(address)
    elif unit_id is not None and not center_only:
        with session.no_autoflush:
            rows = repository.security_contact_emails(session, unit_id)
        # The administrator first: the one who acts; the lead is told as the one responsible.
        for _role, email in sorted(rows, key=lambda r: r[0] != ContactRole.SECURITY_ADMIN.value):
            address = (email or "").strip()
            if "@" in address and address not in unit:
                unit.append(address)
    if unit:
        return unit, [center] if center and center not in unit else []
    return ([center] if center else []), []


mail.use_recipients(recipients)
