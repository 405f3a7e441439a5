"""The notification outbox's queries: the list the center reads, and the sender's look-ups and
compare-and-set claims (the sender in :mod:`vmportal.mail.service` runs each in a short transaction
of its own, so none stays open while an SMTP server is talked to)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, func, select, update

from vmportal.mail.models import GroupRobot, Notification, NotificationState, RobotMessage


def notifications(
    session: Session,
    *,
    state: NotificationState | None = None,
    unit_id: int | None = None,
    kind: str | None = None,
    related_type: str | None = None,
    related_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Notification], int]:
    conditions: list[Any] = []
    if state is not None:
        conditions.append(col(Notification.state) == state.value)
    if unit_id is not None:
        conditions.append(col(Notification.unit_id) == unit_id)
    if kind:
        conditions.append(col(Notification.kind) == kind)
    if related_type:
        conditions.append(col(Notification.related_type) == related_type)
    if related_id:
        conditions.append(col(Notification.related_id) == related_id)
    rows = session.exec(
        select(Notification)
        .where(*conditions)
        .order_by(col(Notification.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(Notification).where(*conditions)).one())
    return list(rows), total


#: The states a notification can still be sent from (``sending`` whose lease ran out is taken again).
_SENDABLE = (NotificationState.PENDING.value, NotificationState.SENDING.value)


def has_dedup_key(session: Session, dedup_key: str) -> bool:
    """Whether a notification with this de-duplication key was already queued (it is unique)."""
    return (
        session.exec(select(Notification.id).where(col(Notification.dedup_key) == dedup_key)).first()
        is not None
    )


def due_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Ids of the notifications due for an attempt, the longest waiting first."""
    rows = session.exec(
        select(Notification.id)
        .where(col(Notification.state).in_(_SENDABLE), col(Notification.next_attempt_at) <= now)
        .order_by(col(Notification.next_attempt_at), col(Notification.id))
        .limit(limit)
    ).all()
    return [int(r) for r in rows if r is not None]


def claim(session: Session, notification_id: int, now: datetime, until: datetime) -> Notification | None:
    """Take the notification for one attempt, leased until ``until`` (compare-and-set: of two senders
    one gets it, the other None)."""
    result = session.exec(
        update(Notification)
        .where(
            col(Notification.id) == notification_id,
            col(Notification.state).in_(_SENDABLE),
            col(Notification.next_attempt_at) <= now,
        )
        .values(state=NotificationState.SENDING.value, next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    return session.get(Notification, notification_id)


def lock(session: Session, notification_id: int) -> Notification | None:
    """Re-read the notification with its row locked until the transaction ends."""
    return session.exec(
        select(Notification)
        .where(col(Notification.id) == notification_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


# ---- group robots and their outbox ---------------------------------------------------------------


def robot_by_scope(session: Session, scope: str) -> GroupRobot | None:
    """The robot of ``scope`` (``center`` or ``unit:<id>``), if the center configured one."""
    return session.exec(select(GroupRobot).where(col(GroupRobot.scope) == scope)).first()


def lock_robot_by_scope(session: Session, scope: str) -> GroupRobot | None:
    """The robot of ``scope``, locked (FOR UPDATE) so two changes of it follow one another."""
    return session.exec(
        select(GroupRobot)
        .where(col(GroupRobot.scope) == scope)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def robots(session: Session) -> list[GroupRobot]:
    """Every configured robot, the center's first, then by unit."""
    rows = session.exec(
        select(GroupRobot).order_by(col(GroupRobot.unit_id).is_not(None), col(GroupRobot.unit_id))
    )
    return list(rows.all())


def robot(session: Session, robot_id: int) -> GroupRobot | None:
    """One robot by id (the sender reads its webhook and secret at each attempt)."""
    return session.get(GroupRobot, robot_id)


def robot_messages(
    session: Session,
    *,
    state: NotificationState | None = None,
    unit_id: int | None = None,
    kind: str | None = None,
    notification_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[RobotMessage], int]:
    """The robot messages the center reads, newest first, and how many match."""
    conditions: list[Any] = []
    if state is not None:
        conditions.append(col(RobotMessage.state) == state.value)
    if unit_id is not None:
        conditions.append(col(RobotMessage.unit_id) == unit_id)
    if kind:
        conditions.append(col(RobotMessage.kind) == kind)
    if notification_id is not None:
        conditions.append(col(RobotMessage.notification_id) == notification_id)
    rows = session.exec(
        select(RobotMessage)
        .where(*conditions)
        .order_by(col(RobotMessage.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(RobotMessage).where(*conditions)).one())
    return list(rows), total


def robot_message(session: Session, message_id: int) -> RobotMessage | None:
    return session.get(RobotMessage, message_id)


def due_robot_message_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Ids of the robot messages due for an attempt, the longest waiting first."""
    rows = session.exec(
        select(RobotMessage.id)
        .where(col(RobotMessage.state).in_(_SENDABLE), col(RobotMessage.next_attempt_at) <= now)
        .order_by(col(RobotMessage.next_attempt_at), col(RobotMessage.id))
        .limit(limit)
    ).all()
    return [int(r) for r in rows if r is not None]


def claim_robot_message(
    session: Session, message_id: int, now: datetime, until: datetime
) -> RobotMessage | None:
    """Take the message for one attempt, leased until ``until`` (compare-and-set, as for mails)."""
    result = session.exec(
        update(RobotMessage)
        .where(
            col(RobotMessage.id) == message_id,
            col(RobotMessage.state).in_(_SENDABLE),
            col(RobotMessage.next_attempt_at) <= now,
        )
        .values(state=NotificationState.SENDING.value, next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    return session.get(RobotMessage, message_id)


def lock_robot_message(session: Session, message_id: int) -> RobotMessage | None:
    """Re-read the robot message with its row locked until the transaction ends."""
    return session.exec(
        select(RobotMessage)
        .where(col(RobotMessage.id) == message_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
