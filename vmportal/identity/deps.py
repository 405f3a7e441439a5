"""FastAPI dependencies of the JSON API: the current user (from the bearer token), the actor and the
audit identity the services take as plain values, and role gates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from policies.roles import Actor, Role
from vmportal.audit.service import Who
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep

_bearer = HTTPBearer(auto_error=False, description="Token from POST /api/v1/auth/login")


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
        identity.ensure_role(actor, roles)
        return actor

    return Depends(check)
