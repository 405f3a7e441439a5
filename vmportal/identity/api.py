"""Log-in, the current user, and account management (center_admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from policies.roles import Role
from vmportal.identity import ldap, service
from vmportal.identity.deps import CurrentActor, CurrentUser, CurrentWho, require
from vmportal.identity.schemas import (
    LoginIn,
    PasswordChange,
    TokenOut,
    UserCreate,
    UserOut,
    UserPatch,
    user_brief,
    user_out,
)
from vmportal.kit import errors
from vmportal.kit.http import SessionDep, request_bearer_token

router = APIRouter(tags=["identity"])

CENTER_ADMIN = require(Role.CENTER_ADMIN)


# ---- log-in ----------------------------------------------------------------------------------------


@router.post("/auth/login", response_model=TokenOut, summary="Log in; answers a bearer token")
def login(body: LoginIn, session: SessionDep, request: Request, response: Response) -> TokenOut:
    response.headers["Cache-Control"] = "no-store"
    address = request.client.host if request.client else None
    if body.method == "ldap":
        issued = ldap.login(session, body.username, body.password, address=address)
    else:
        issued = service.login(session, body.username, body.password, address=address)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in, user=user_brief(issued.user))


@router.post("/auth/logout", status_code=204, summary="Revoke the token of this request")
def logout(request: Request, session: SessionDep, who: CurrentWho) -> Response:
    service.logout(session, request_bearer_token(request) or "", by=who)
    return Response(status_code=204)


@router.get("/auth/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return user_out(user)


# ---- accounts --------------------------------------------------------------------------------------


@router.post("/users", response_model=UserOut, status_code=201, dependencies=[CENTER_ADMIN])
def create_user(body: UserCreate, session: SessionDep, who: CurrentWho) -> UserOut:
    user = service.create_user(
        session,
        who,
        username=body.username,
        password=body.password,
        role=body.role,
        unit_id=body.unit_id,
        display_name=body.display_name,
        email=body.email or "",
    )
    return user_out(user)


@router.get("/users", response_model=list[UserOut])
def list_users(
    session: SessionDep,
    actor: CurrentActor,
    role: Role | None = None,
    unit_id: Annotated[int | None, Query(ge=1)] = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[UserOut]:
    # A unit's users see their own unit's accounts only: another unit's filter answers an empty list.
    users = service.list_users(
        session, actor, unit_id=unit_id, role=role, active=active, limit=limit, offset=offset
    )
    return [user_out(u) for u in users]


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: int, session: SessionDep, actor: CurrentActor) -> UserOut:
    return user_out(service.visible_user(session, actor, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Edit an account (center_admin); users may edit their own name and e-mail",
)
def update_user(
    user_id: int, body: UserPatch, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> UserOut:
    user = service.visible_user(session, actor, user_id)
    own_profile = user.id == actor.user_id and body.active is None
    if actor.role != Role.CENTER_ADMIN and not own_profile:
        raise errors.Forbidden(
            "only a center_admin may edit other accounts or (de)activate accounts",
            message_zh="只有信息中心管理员可以修改他人账号或启用/停用账号",
            role=actor.role.value,
        )
    service.update_user(
        session, who, user, display_name=body.display_name, email=body.email, active=body.active
    )
    return user_out(user)


@router.post(
    "/users/{user_id}/password",
    status_code=204,
    summary="Change your own password (old one required) or, as center_admin, reset another's",
)
def set_password(
    user_id: int,
    body: PasswordChange,
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
) -> Response:
    user = service.visible_user(session, actor, user_id)
    if user.id == actor.user_id:
        if body.old_password is None:
            raise errors.InvalidField(
                "old_password",
                "required",
                "is required to change your own password",
                message_zh="修改本人密码须提供当前密码",
            )
        service.change_own_password(
            session, user, body.old_password, body.new_password, keep_token=request_bearer_token(request)
        )
    elif actor.role == Role.CENTER_ADMIN:
        service.reset_password(session, who, user, body.new_password)
    else:
        raise errors.Forbidden(
            "only a center_admin may reset another user's password",
            message_zh="只有信息中心管理员可以重置他人密码",
            role=actor.role.value,
        )
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/unlock",
    response_model=UserOut,
    dependencies=[CENTER_ADMIN],
    summary="Lift a lock-out after failed log-ins",
)
def unlock(user_id: int, session: SessionDep, who: CurrentWho) -> UserOut:
    return user_out(service.unlock(session, who, service.get_user(session, user_id)))
