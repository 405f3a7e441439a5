"""Reading and verifying the audit log: center_admin and auditor only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, func, select

from policies.roles import Role
from vmportal.audit.models import AuditEntry
from vmportal.audit.service import verify
from vmportal.identity.deps import require
from vmportal.kit.http import SessionDep

router = APIRouter(tags=["audit"], dependencies=[require(Role.CENTER_ADMIN, Role.AUDITOR)])


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor: str
    actor_role: str
    unit_id: int | None
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    result: str
    detail: str
    request_id: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    broken_at: int | None
    reason: str


def _aware(moment: datetime | None) -> datetime | None:
    # A time given without a zone is read as UTC, the zone the log is written in.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get("/audit", response_model=AuditPage, summary="The audit log, newest first, filtered and paged")
def list_audit(
    session: SessionDep,
    action: Annotated[
        str | None, Query(max_length=64, description="Exact action, or a prefix ending in '.*'")
    ] = None,
    target_type: Annotated[str | None, Query(max_length=40)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    unit_id: Annotated[int | None, Query(ge=1)] = None,
    actor: Annotated[str | None, Query(max_length=100, description="Username (or system actor)")] = None,
    result: Annotated[str | None, Query(max_length=20)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    query = select(AuditEntry)
    if action:
        if action.endswith(".*"):
            query = query.where(col(AuditEntry.action).startswith(action[:-1], autoescape=True))
        else:
            query = query.where(AuditEntry.action == action)
    if target_type:
        query = query.where(AuditEntry.target_type == target_type)
    if target_id:
        query = query.where(AuditEntry.target_id == target_id)
    if unit_id is not None:
        query = query.where(AuditEntry.unit_id == unit_id)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if result:
        query = query.where(AuditEntry.result == result)
    if (start := _aware(since)) is not None:
        query = query.where(col(AuditEntry.at) >= start)
    if (end := _aware(until)) is not None:
        query = query.where(col(AuditEntry.at) < end)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(AuditEntry.id).desc()).offset(offset).limit(limit)).all()
    return AuditPage(
        items=[AuditEntryOut.model_validate(r, from_attributes=True) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/audit/verify", response_model=VerifyOut, summary="Walk the hash chain; name the first broken link"
)
def verify_audit(session: SessionDep) -> VerifyOut:
    result = verify(session)
    return VerifyOut(ok=result.ok, checked=result.checked, broken_at=result.broken_at, reason=result.reason)
