"""FastAPI dependencies: the database session (one transaction per request), the current user,
and the unit-scoping guard every unit-owned record goes through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from policies.roles import CENTER_ROLES, UNIT_ROLES, Actor, Role
from vmportal.audit.service import Who
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import db, errors


def get_session() -> Iterator[Session]:
    """The request's unit of work: committed when the route returns, rolled back on any error,
    so a failed request never leaves anything half-written."""
    with db.transaction() as session:
        yield session


# scope="function": commit (and dispatch the outbox) when the route returns, *before* the answer is
# sent. With FastAPI's default scope the exit code of a yield dependency runs after the response has
# gone out: a client would hold a 200/202 for a change not yet committed (lost if the process dies
# in between, or if the commit fails), and could read the old state right after it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="Token from POST /api/v1/auth/login")


def bearer_from_header(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None for any other."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def request_bearer_token(request: Request) -> str | None:
    """The request's bearer token, read without HTTPBearer's dependency (see vmportal.vm.api)."""
    return bearer_from_header(request.headers.get("authorization", ""))


#: The OpenAPI security of an endpoint that reads the token with request_bearer_token.
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


def user_from_token(session: Session, token: str | None, request: Request) -> User:
    if token is None:
        raise errors.Unauthorized("a bearer token is required", message_zh="需要登录令牌（Bearer）")
    user = identity.user_for_token(session, token)
    request.state.user = user
    return user


def get_current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    request: Request,
) -> User:
    token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else None
    return user_from_token(session, token, request)


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_actor(user: CurrentUser) -> Actor:
    return identity.actor_of(user)


CurrentActor = Annotated[Actor, Depends(get_actor)]


def get_who(user: CurrentUser) -> Who:
    return identity.who(user)


CurrentWho = Annotated[Who, Depends(get_who)]


def require(*roles: Role) -> Any:
    """A dependency refusing (403) anyone whose role is not listed."""

    def check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise errors.Forbidden(
                f"role '{actor.role}' may not do this (allowed: {allowed})",
                message_zh=f"角色“{actor.role}”无权执行此操作（允许：{allowed}）",
                role=actor.role.value,
            )
        return actor

    return Depends(check)


CENTER = (Role.CENTER_ADMIN, Role.CENTER_OPERATOR)
CENTER_READ = (Role.CENTER_ADMIN, Role.CENTER_OPERATOR, Role.AUDITOR)


def can_see_unit(actor: Actor, unit_id: int | None) -> bool:
    if actor.role in UNIT_ROLES:
        return unit_id is not None and actor.unit_id == unit_id
    return True


def ensure_unit_visible(actor: Actor, unit_id: int | None, what: str, ident: object) -> None:
    """Unit scoping answers 404, not 403: a unit's users cannot even learn that another unit's
    record exists (docs/decisions.md)."""
    if not can_see_unit(actor, unit_id):
        raise errors.NotFound(what, ident)


def shows_personal_data(actor: Actor) -> bool:
    """National ID and mobile numbers are shown in clear to center_admin only."""
    return actor.role == Role.CENTER_ADMIN


__all__ = [
    "BEARER_SECURITY",
    "CENTER",
    "CENTER_READ",
    "CENTER_ROLES",
    "CurrentActor",
    "CurrentUser",
    "CurrentWho",
    "SessionDep",
    "can_see_unit",
    "ensure_unit_visible",
    "require",
    "shows_personal_data",
]
