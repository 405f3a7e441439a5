"""Center settings: read by every signed-in user (units need to know whether requests need
endorsement), changed by center_admin only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from policies.roles import Role
from vmportal.center import robots, service
from vmportal.identity.deps import CurrentUser, CurrentWho, require
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER, CENTER_READ
from vmportal.mail import robots as robot_sender
from vmportal.mail.models import GroupRobot, NotificationState, RobotKind
from vmportal.mail.service import MailEvent

router = APIRouter(tags=["center"])


class CenterSettingsOut(BaseModel):
    endorsement_required: bool
    unmatched_alert_mail: str = Field(
        description="How the center hears of alerts that match no VM: each, digest (hourly) or off"
    )
    maintenance_notice_hours: int = Field(
        description="Hours ahead a planned outage must be announced (rule maintenance_notice)"
    )


class CenterSettingsUpdate(BaseModel):
    """Only the keys given change; an unknown key is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    endorsement_required: StrictBool | None = None
    unmatched_alert_mail: StrictStr | None = Field(None, description="each, digest or off")
    maintenance_notice_hours: StrictInt | None = Field(None, description="1 to 720 hours")


@router.get("/settings", response_model=CenterSettingsOut)
def read_settings(session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    return service.all_settings(session)


@router.put("/settings", response_model=CenterSettingsOut, dependencies=[require(Role.CENTER_ADMIN)])
def put_settings(body: CenterSettingsUpdate, session: SessionDep, who: CurrentWho) -> dict[str, Any]:
    for key, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            service.set_setting(session, who, key, value)
    return service.all_settings(session)


# ---- group robots (DingTalk / WeCom): configuration and delivery status ---------------------------

MAX_ID = 2**31 - 1
RobotUnitId = Annotated[int, Path(ge=1, le=MAX_ID)]
OptUnitId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


class RobotIn(BaseModel):
    """A robot's configuration. Keys not given keep what is stored; a new robot needs kind and
    webhook_url. ``secret``: DingTalk's 加签 secret ("" removes it; WeCom robots have none)."""

    model_config = ConfigDict(extra="forbid")

    kind: RobotKind | None = Field(None, description="dingtalk or wecom")
    webhook_url: StrictStr | None = Field(
        None,
        max_length=1000,
        description="https://oapi.dingtalk.com/robot/send?access_token=… or "
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…",
    )
    secret: StrictStr | None = Field(None, max_length=200, description="DingTalk 加签 secret (SEC…)")
    enabled: StrictBool | None = None
    kinds: list[MailEvent] | None = Field(None, max_length=100, description="Notice kinds sent; empty: all")


class RobotOut(BaseModel):
    scope: str = Field(description="center, or unit:<id>")
    unit_id: int | None
    kind: RobotKind
    webhook_url: str = Field(description="The webhook with its token masked")
    secret_set: bool
    secret_hint: str = Field(description="The secret masked (never shown in full)")
    enabled: bool
    kinds: list[str] = Field(description="Notice kinds sent; empty: all")
    updated_at: datetime


class RobotList(BaseModel):
    items: list[RobotOut]


class RobotMessageOut(BaseModel):
    id: int
    robot_id: int
    notification_id: int | None
    unit_id: int | None
    kind: str
    related_type: str
    related_id: str
    title: str
    content: str
    state: NotificationState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    created_at: datetime
    sent_at: datetime | None


class RobotMessageList(BaseModel):
    items: list[RobotMessageOut]
    total: int
    limit: int
    offset: int


def _robot_out(robot: GroupRobot) -> RobotOut:
    return RobotOut.model_validate(robots.shown(robot))


def _change(body: RobotIn) -> robots.RobotChange:
    given = body.model_fields_set
    return robots.RobotChange(
        kind=body.kind.value if body.kind is not None else None,
        webhook_url=body.webhook_url if "webhook_url" in given else None,
        secret=body.secret if "secret" in given else None,
        enabled=body.enabled,
        kinds=[k.value for k in body.kinds] if body.kinds is not None else None,
    )


@router.get(
    "/group-robots",
    response_model=RobotList,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="The group robots configured: the center's, then each unit's",
)
def list_robots(session: SessionDep) -> RobotList:
    return RobotList(items=[_robot_out(r) for r in robots.robots(session)])


@router.get("/group-robots/center", response_model=RobotOut, dependencies=[require(Role.CENTER_ADMIN)])
def get_center_robot(session: SessionDep) -> RobotOut:
    return _robot_out(robots.robot_of(session, None))


@router.put(
    "/group-robots/center",
    response_model=RobotOut,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="Set up or change the center's own group robot (it hears the center's notices)",
)
def put_center_robot(body: RobotIn, session: SessionDep, who: CurrentWho) -> RobotOut:
    return _robot_out(robots.configure(session, who, None, _change(body)))


@router.get(
    "/group-robots/units/{unit_id}", response_model=RobotOut, dependencies=[require(Role.CENTER_ADMIN)]
)
def get_unit_robot(unit_id: RobotUnitId, session: SessionDep) -> RobotOut:
    return _robot_out(robots.robot_of(session, unit_id))


@router.put(
    "/group-robots/units/{unit_id}",
    response_model=RobotOut,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="Set up or change a unit's group robot (it hears the notices mailed to the unit)",
)
def put_unit_robot(unit_id: RobotUnitId, body: RobotIn, session: SessionDep, who: CurrentWho) -> RobotOut:
    return _robot_out(robots.configure(session, who, unit_id, _change(body)))


@router.get(
    "/robot-messages",
    response_model=RobotMessageList,
    dependencies=[require(*CENTER_READ)],
    summary="Group-robot messages queued, sent, waiting for a retry or failed, newest first",
)
def list_robot_messages(
    session: SessionDep,
    state: NotificationState | None = None,
    unit_id: OptUnitId = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    notification_id: OptUnitId = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RobotMessageList:
    rows, total = robot_sender.list_messages(
        session,
        state=state,
        unit_id=unit_id,
        kind=kind,
        notification_id=notification_id,
        limit=limit,
        offset=offset,
    )
    return RobotMessageList(
        items=[RobotMessageOut.model_validate(m.model_dump()) for m in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/robot-messages/{message_id}/resend",
    response_model=RobotMessageOut,
    status_code=202,
    dependencies=[require(*CENTER)],
    summary="Post a failed (or waiting) group-robot message again now, with a fresh count of attempts",
)
def resend_robot_message(message_id: RobotUnitId, session: SessionDep) -> RobotMessageOut:
    return RobotMessageOut.model_validate(robot_sender.resend(session, message_id).model_dump())
