"""The queries of the notification outbox the center reads (the sender's own claims and updates stay
beside the SMTP code in :mod:`vmportal.mail.service`, each in its short transaction)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, func, select

from vmportal.mail.models import Notification, NotificationState


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
