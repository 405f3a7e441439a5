"""The notification outbox: an e-mail rendered by the domain that reports the event, waiting to be sent.

Mail knows no domain: ``related_type``/``related_id`` and ``kind`` are the reporter's words, kept for
the center's view and for the hooks a domain registers on delivery (``mail.service.on_delivered``).
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt


class Notification(SQLModel, table=True):
    """An e-mail waiting to be sent (an outbox of its own: delivery retries never delay containment)."""

    __tablename__ = "notification"

    id: int | None = Field(default=None, primary_key=True)
    to: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    cc: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    subject: str = Field(max_length=500)
    body: str = Field(sa_type=sa.Text)
    kind: str = Field(default="", max_length=40)  # containment | rectification_decision | finding | …
    related_type: str = Field(default="", max_length=40)
    related_id: str = Field(default="", max_length=64)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    dedup_key: str | None = Field(default=None, max_length=200, sa_column_kwargs={"unique": True})
    state: str = Field(default=NotificationState.PENDING, max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    last_error: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RobotKind(enum.StrEnum):
    DINGTALK = "dingtalk"  # 钉钉自定义机器人: access_token in the URL, optional 加签 (timestamp + sign)
    WECOM = "wecom"  # 企业微信群机器人: the key in the URL, no signature


class GroupRobot(SQLModel, table=True):
    """A unit's (or the center's) chat-group robot that hears the same notices as its mailbox.

    ``scope`` is ``center`` or ``unit:<id>``: one robot per unit and one for the center (a NULL
    ``unit_id`` could not be unique). The webhook URL carries the robot's token (DingTalk's
    access_token, WeCom's key): whoever has it may post to the group, so it is stored encrypted like
    the secret, and only its masked form is ever shown.
    """

    __tablename__ = "group_robot"

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=40, sa_column_kwargs={"unique": True})
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    kind: str = Field(max_length=20)
    webhook_encrypted: str = Field(sa_type=sa.Text)
    webhook_shown: str = Field(default="", max_length=600)  # the URL with its token masked
    secret_encrypted: str = Field(default="", sa_type=sa.Text)  # DingTalk 加签; empty: not signed
    secret_shown: str = Field(default="", max_length=40)
    enabled: bool = True
    kinds: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # notice kinds sent; empty: all
    updated_by: int | None = Field(default=None, foreign_key="user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RobotMessage(SQLModel, table=True):
    """A notice waiting to be posted to a group robot: the robots' outbox, beside the mails'.

    Queued by ``mail.service.notify`` in the transaction of the mail it repeats; the webhook and
    secret are read from the robot when it is sent, so a corrected secret helps the retries.
    ``notification_id`` is not a foreign key: the retention pruning of sent mails must not depend on
    their robot copies.
    """

    __tablename__ = "robot_message"

    id: int | None = Field(default=None, primary_key=True)
    robot_id: int = Field(foreign_key="group_robot.id", index=True)
    notification_id: int | None = Field(default=None, index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    kind: str = Field(default="", max_length=40)
    related_type: str = Field(default="", max_length=40)
    related_id: str = Field(default="", max_length=64)
    title: str = Field(max_length=500)
    content: str = Field(sa_type=sa.Text)  # markdown, Chinese first
    state: str = Field(default=NotificationState.PENDING, max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    last_error: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
