"""Log-in, the current user, and account management (center_admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from policies.roles import UNIT_ROLES, Role
from vmportal.identity import service
from vmportal.identity.deps import CurrentActor, CurrentUser, CurrentWho, require
from vmportal.identity.models import User
from vmportal.identity.schemas import (
    CreatedAccountOut,
    LoginIn,
    PasswordChange,
    TokenOut,
    UnitAccountsIn,
    UnitAccountsOut,
    UserBrief,
    UserCreate,
    UserOut,
    UserPatch,
)
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.http import SessionDep, request_bearer_token
from vmportal.kit.scope import can_see_unit, ensure_visible
from vmportal.unit.models import Unit

router = APIRouter(tags=["identity"])

CENTER_ADMIN = require(Role.CENTER_ADMIN)


def user_out(user: User) -> UserOut:
    assert user.id is not None
    locked = user.locked_until is not None and user.locked_until > utcnow()
    return UserOut(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        unit_id=user.unit_id,
        display_name=user.display_name,
        email=user.email,
        contact_id=user.contact_id,
        active=user.active,
        locked=locked,
        locked_until=user.locked_until if locked else None,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
    )


def _visible_user(session: SessionDep, actor: CurrentActor, user_id: int) -> User:
    """Unit users see their own unit's accounts only; any other account answers 404."""
    user = session.get(User, user_id)
    if user is None or (actor.role in UNIT_ROLES and not can_see_unit(actor, user.unit_id)):
        raise errors.NotFound("user", user_id)
    return user


# ---- log-in ----------------------------------------------------------------------------------------


@router.post("/auth/login", response_model=TokenOut, summary="Log in; answers a bearer token")
def login(body: LoginIn, session: SessionDep, response: Response) -> TokenOut:
    response.headers["Cache-Control"] = "no-store"
    issued = service.login(session, body.username, body.password)
    user = issued.user
    assert user.id is not None
    return TokenOut(
        access_token=issued.token,
        expires_in=issued.expires_in,
        user=UserBrief(
            id=user.id,
            username=user.username,
            role=Role(user.role),
            unit_id=user.unit_id,
            display_name=user.display_name,
        ),
    )


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
    if actor.role in UNIT_ROLES:
        if unit_id is not None and unit_id != actor.unit_id:
            return []  # another unit's accounts do not exist for this user
        unit_id = actor.unit_id
    users = service.list_users(session, unit_id=unit_id, role=role, active=active, limit=limit, offset=offset)
    return [user_out(u) for u in users]


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: int, session: SessionDep, actor: CurrentActor) -> UserOut:
    return user_out(_visible_user(session, actor, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Edit an account (center_admin); users may edit their own name and e-mail",
)
def update_user(
    user_id: int, body: UserPatch, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> UserOut:
    user = _visible_user(session, actor, user_id)
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
    user = _visible_user(session, actor, user_id)
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


@router.post(
    "/units/{unit_id}/accounts",
    response_model=UnitAccountsOut,
    status_code=201,
    dependencies=[CENTER_ADMIN],
    summary="Create the unit's unit_admin / unit_lead accounts from its contact registry",
)
def create_unit_accounts(
    unit_id: int,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
    response: Response,
    body: UnitAccountsIn | None = None,
) -> UnitAccountsOut:
    response.headers["Cache-Control"] = "no-store"  # the answer carries initial passwords
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise errors.NotFound("unit", unit_id)
    ensure_visible(actor, unit_id, "unit", unit_id)
    wanted = (body or UnitAccountsIn()).accounts
    created = service.create_unit_accounts(session, who, unit, [(a.contact, a.username) for a in wanted])
    return UnitAccountsOut(
        accounts=[
            CreatedAccountOut(
                contact=c.contact_role, user=user_out(c.user), initial_password=c.initial_password
            )
            for c in created
        ]
    )
