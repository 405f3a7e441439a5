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
from vmportal.audit.service import Who, record
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.unit import repository
from vmportal.unit.models import Contact, ContactRole, Unit

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


def lock_unit(session: Session, unit_id: int) -> Unit:
    # The unit's row lock (as unit.service.lock_unit): two clicks must not make two pairs.
    unit = repository.lock_unit(session, unit_id)
    if unit is None:
        raise errors.NotFound("unit", unit_id)
    return unit


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


@dataclass(frozen=True)
class Handover:
    """A registry row now naming another person: the old account retired, the new one made."""

    retired: User
    created: User


@dataclass(frozen=True)
class Holder:
    """Who holds a registry row's account before the row is rewritten."""

    user: User
    staff_no: str
    name: str


def holder_of(session: Session, unit_id: int, role: ContactRole) -> Holder | None:
    existing = repository.get_contact(session, unit_id, role)
    if existing is None or existing.id is None:
        return None
    user = identity.active_user_of_contact(session, existing.id)
    return None if user is None else Holder(user, existing.staff_no, existing.name)


def _same_person(holder: Holder, contact: Contact) -> bool:
    # The staff number (工号) is the person's key (it is also their campus log-in); a row without
    # one falls back to the name.
    if holder.staff_no or contact.staff_no:
        return holder.staff_no == contact.staff_no
    return holder.name == contact.name


def hand_over(
    session: Session, who: Who, role: ContactRole, holder: Holder | None, contact: Contact
) -> Handover | None:
    """After a registry row was rewritten: when it now names another person than the one holding the
    row's account, that account is deactivated (its sessions and tokens revoked) and the new person's
    account is created from the new row, in the same transaction, with one audit row naming both
    (plan 二(二)1: 网站安全责任人如有变更，需更新人员相关信息).

    The new account gets a random password nobody is shown: its person logs in through the campus
    CAS (their staff number), or the center resets the password for them.
    """
    if holder is None or _same_person(holder, contact):
        return None
    unit = lock_unit(session, contact.unit_id)
    old = holder.user
    identity.retire_account(session, who, old, detail=f"replaced in the contact registry ({role.value})")
    user = identity.create_user(
        session,
        who,
        username=_free_username(session, _username_candidates(unit, contact, role)),
        password=identity.generate_password(),
        role=CONTACT_ACCOUNT_ROLE[role],
        unit_id=contact.unit_id,
        display_name=contact.name,
        email=contact.email,
        contact_id=contact.id,
        detail=f"from the contact registry ({role.value}), replacing '{old.username}'",
    )
    record(
        session,
        who,
        "account.replace",
        "contact",
        contact.id,
        before={"user_id": old.id, "username": old.username},
        after={"user_id": user.id, "username": user.username},
        unit_id=contact.unit_id,
        detail=f"{_CONTACT_NAMES_ZH[role]} {old.username} -> {user.username}",
    )
    return Handover(retired=old, created=user)
