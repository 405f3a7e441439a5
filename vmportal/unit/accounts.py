"""The accounts made from a unit's contact registry (plan 二(二)4: "信息中心依据单位上报的
《网络安全联络通讯录》为网络安全管理员分配账号"): the security admin's account is the unit's unit_admin,
the security lead's its unit_lead.

Here in unit, above identity: identity knows accounts, not registries; this module asks identity's
service to create, find and deactivate them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session

from policies.roles import Role
from vmportal.audit.service import Who
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.unit import repository
from vmportal.unit.models import Contact, ContactRole, Unit
from vmportal.unit.service import lock_unit

#: plan 二(二)4: "信息中心依据单位上报的《网络安全联络通讯录》为网络安全管理员分配账号".
CONTACT_ACCOUNT_ROLE: dict[ContactRole, Role] = {
    ContactRole.SECURITY_ADMIN: Role.UNIT_ADMIN,
    ContactRole.SECURITY_LEAD: Role.UNIT_LEAD,
}
_CONTACT_NAMES_ZH = {
    ContactRole.SECURITY_ADMIN: "网络安全管理员",
    ContactRole.SECURITY_LEAD: "网络安全负责人",
}


@dataclass(frozen=True)
class CreatedAccount:
    contact_role: ContactRole
    user: User
    initial_password: str  # shown once in the answer, never stored in clear


def _username_candidates(unit: Unit, contact: Contact, role: ContactRole) -> list[str]:
    """Staff number first (it is what the university's other systems log people in with), then the
    e-mail's local part, then ``<unit code>-admin`` / ``<unit code>-lead``."""
    found: list[str] = []
    for raw in (contact.staff_no, contact.email.partition("@")[0] if contact.email else ""):
        name = re.sub(r"[^a-z0-9._-]", "", (raw or "").lower()).lstrip("._-")
        if len(name) >= 2:
            found.append(name[:64])
    found.append(f"{unit.code.lower()}-{'admin' if role == ContactRole.SECURITY_ADMIN else 'lead'}"[:64])
    return found


def _free_username(session: Session, candidates: list[str]) -> str:
    def taken(name: str) -> bool:
        return identity.username_taken(session, name)

    for name in candidates:
        if not taken(name):
            return name
    base = candidates[-1][:60]
    n = 2
    while taken(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def create_unit_accounts(
    session: Session, by: Who, unit: Unit, wanted: list[tuple[ContactRole, str | None]]
) -> list[CreatedAccount]:
    """Create the unit_admin / unit_lead accounts of ``unit`` from its contact registry.

    Every requested contact must be in the registry (422 naming it otherwise) and must not
    already have an active account (409 naming it). Each account gets a random initial password
    the caller shows once.
    """
    assert unit.id is not None
    lock_unit(session, unit.id)  # two clicks on "create accounts" must not make two pairs
    created: list[CreatedAccount] = []
    seen: set[ContactRole] = set()
    for contact_role, username in wanted:
        if contact_role in seen:
            raise errors.InvalidField(
                "accounts", "duplicate", f"{contact_role} is listed twice", message_zh=f"{contact_role} 重复"
            )
        seen.add(contact_role)
        contact = repository.get_contact(session, unit.id, contact_role)
        if contact is None:
            raise errors.InvalidField(
                f"contacts.{contact_role.value}",
                "missing_contact",
                f"the unit's contact registry has no {contact_role.value.replace('_', ' ')}; "
                "record it (PUT /units/{id}/contacts/" + contact_role.value + ") first",
                message_zh=f"该单位的《网络安全联络通讯录》中没有{_CONTACT_NAMES_ZH[contact_role]}，请先登记",
            )
        assert contact.id is not None
        existing = identity.active_user_of_contact(session, contact.id)
        if existing is not None:
            raise errors.Conflict(
                f"the {contact_role.value} already has the active account '{existing.username}'",
                message_zh=f"{_CONTACT_NAMES_ZH[contact_role]}已有有效账号“{existing.username}”",
                field=f"contacts.{contact_role.value}",
                username=existing.username,
            )
        if username is None:
            username = _free_username(session, _username_candidates(unit, contact, contact_role))
        password = identity.generate_password()
        user = identity.create_user(
            session,
            by,
            username=username,
            password=password,
            role=CONTACT_ACCOUNT_ROLE[contact_role],
            unit_id=unit.id,
            display_name=contact.name,
            email=contact.email,
            contact_id=contact.id,
            detail=f"from the contact registry ({contact_role.value})",
        )
        created.append(CreatedAccount(contact_role, user, password))
    return created
