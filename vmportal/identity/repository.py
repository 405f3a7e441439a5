"""Every query of accounts and bearer tokens; a unit's users see their own unit's accounts only
(:func:`vmportal.kit.scope.visible`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from policies.roles import Actor, Role
from vmportal.identity.models import AuthToken, CasSession, User
from vmportal.kit import paging
from vmportal.kit.scope import visible

#: The unit table as the account's foreign key names it; identity sits below unit and does not
#: import its model, but may ask whether the row its key points to exists.
_UNIT = sa.table("unit", sa.column("id"))


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def user_by_name(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def username_taken(session: Session, username: str) -> bool:
    return session.exec(select(User.id).where(User.username == username)).first() is not None


def unit_exists(session: Session, unit_id: int) -> bool:
    return session.execute(sa.select(_UNIT.c.id).where(_UNIT.c.id == unit_id)).first() is not None


def active_user_of_contact(session: Session, contact_id: int) -> User | None:
    return session.exec(
        select(User).where(User.contact_id == contact_id, col(User.active).is_(True)).order_by(col(User.id))
    ).first()


def users_of_contact(session: Session, contact_id: int) -> list[User]:
    return list(session.exec(select(User).where(User.contact_id == contact_id).order_by(col(User.id))))


def list_users(
    session: Session,
    actor: Actor | None,
    *,
    unit_id: int | None = None,
    role: Role | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[User]:
    """Accounts by filter, in id order; limited to what ``actor`` may see (None: everything)."""
    query = select(User)
    if actor is not None:
        query = visible(query, actor, col(User.unit_id))
    if unit_id is not None:
        query = query.where(User.unit_id == unit_id)
    if role is not None:
        query = query.where(User.role == role.value)
    if active is not None:
        query = query.where(User.active == active)
    return list(session.exec(query.order_by(col(User.id)).offset(offset).limit(limit)))


_USER_ID = sa.inspect(User).c.id

#: The columns the accounts page sorts by (kit.paging.order keys).
USER_SORTS: dict[str, Any] = {
    "username": col(User.username),
    "display_name": col(User.display_name),
    "role": col(User.role),
    "unit_id": col(User.unit_id),
    "active": col(User.active),
    "last_login_at": col(User.last_login_at),
    "created_at": col(User.created_at),
}


def page_users(
    session: Session,
    actor: Actor | None,
    *,
    unit_id: int | None,
    role: Role | None,
    active: bool | None,
    q: str | None,
    request: paging.PageRequest,
) -> tuple[list[User], int]:
    """One page of accounts by filter and the total, sorted by a key of :data:`USER_SORTS`."""
    query = select(User)
    if actor is not None:
        query = visible(query, actor, col(User.unit_id))
    if unit_id is not None:
        query = query.where(User.unit_id == unit_id)
    if role is not None:
        query = query.where(User.role == role.value)
    if active is not None:
        query = query.where(User.active == active)
    if q:
        query = query.where(
            sa.or_(
                col(User.username).icontains(q, autoescape=True),
                col(User.display_name).icontains(q, autoescape=True),
                col(User.email).icontains(q, autoescape=True),
            )
        )
    ordered = paging.order(query, request.sort, USER_SORTS, default="username", tiebreak=_USER_ID)
    rows, total = paging.page(session, ordered, request)
    return [row[0] for row in rows], total


def active_center_admins(session: Session) -> int:
    return session.exec(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.CENTER_ADMIN.value, col(User.active).is_(True))
    ).one()


def token_by_digest(session: Session, digest: str) -> AuthToken | None:
    return session.exec(select(AuthToken).where(AuthToken.token_sha256 == digest)).first()


def live_token_rule(now: Any) -> list[Any]:
    """What makes a bearer token (or a page session) good for a request: not revoked, not expired
    at ``now``, its account active. Stated once: the ORM look-up below uses it with the process's
    clock, and the VM read path's single SQL statement (:mod:`vmportal.vm.repository.sql`) compiles
    it with the database's ``now()``."""
    return [col(AuthToken.revoked_at).is_(None), col(AuthToken.expires_at) > now, col(User.active).is_(True)]


def caller_of_token(digest: Any, now: Any) -> Any:
    """The statement that finds the role and unit of a live token's account (``digest`` and ``now``
    may be values or SQL expressions such as a bound parameter)."""
    return (
        select(User.role, User.unit_id)
        .select_from(AuthToken)
        .join(User, col(User.id) == col(AuthToken.user_id))
        .where(col(AuthToken.token_sha256) == digest, *live_token_rule(now))
    )


def page_caller_of_token(digest: Any, now: Any) -> Any:
    """As :func:`caller_of_token`, with what a page's layout shows of the account beside its role
    and unit (its id, username and display name): the VM list's page lane reads them in the same
    statement as the rows (:mod:`vmportal.vm.repository.sql`)."""
    return (
        # sqlalchemy's select: sqlmodel's is typed for at most four columns
        sa.select(col(User.role), col(User.unit_id), col(User.id), col(User.username), col(User.display_name))
        .select_from(AuthToken)
        .join(User, col(User.id) == col(AuthToken.user_id))
        .where(col(AuthToken.token_sha256) == digest, *live_token_rule(now))
    )


def live_token_user(session: Session, digest: str, now: datetime) -> User | None:
    """The account of a live token (:func:`live_token_rule`), None when there is none."""
    return session.exec(
        select(User)
        .join(AuthToken, col(AuthToken.user_id) == col(User.id))
        .where(col(AuthToken.token_sha256) == digest, *live_token_rule(now))
    ).first()


def live_tokens(session: Session, user_id: int) -> list[AuthToken]:
    return list(
        session.exec(
            select(AuthToken).where(AuthToken.user_id == user_id, col(AuthToken.revoked_at).is_(None))
        )
    )


#: The contact-registry table as the account's foreign key names it (identity sits below unit and
#: does not import its model): a CAS user's staff number (工号) finds the row, the row its account.
_CONTACT = sa.table("contact", sa.column("id"), sa.column("staff_no"))


def active_users_of_staff_number(session: Session, staff_no: str) -> list[User]:
    if not staff_no:
        return []
    return list(
        session.exec(
            select(User)
            .join(_CONTACT, _CONTACT.c.id == col(User.contact_id))
            .where(_CONTACT.c.staff_no == staff_no, col(User.active).is_(True))
            .order_by(col(User.id))
        )
    )


def users_by_source(session: Session, source: str, *, active: bool = True) -> list[User]:
    return list(
        session.exec(
            select(User).where(User.auth_source == source, User.active == active).order_by(col(User.id))
        )
    )


def cas_ticket_used(session: Session, ticket_sha256: str) -> bool:
    return (
        session.exec(select(CasSession.id).where(CasSession.ticket_sha256 == ticket_sha256)).first()
        is not None
    )


def cas_session_token(session: Session, ticket_sha256: str) -> AuthToken | None:
    return session.exec(
        select(AuthToken)
        .join(CasSession, col(CasSession.token_id) == col(AuthToken.id))
        .where(CasSession.ticket_sha256 == ticket_sha256)
    ).first()
